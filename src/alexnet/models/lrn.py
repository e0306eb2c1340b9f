"""Local response normalisation across channels (paper section 3.3).

b_c = a_c / (k + alpha/n * sum_{c' in window(c)} a_{c'}^2) ** beta, window of n maps centred on c.
`alpha` is in PyTorch's / cuda-convnet's convention (divided by n inside).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LocalResponseNorm(nn.Module):
    """Drop-in for `nn.LocalResponseNorm` (same arguments, same convention)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
