"""Layers PyTorch lacks: cuda-convnet's locally connected layer and per-tower application.

Also `out_size`, the output side of a convolution or pooling window, so that each net computes
its fully connected input from `input_size` without a dummy forward (it works on the meta device).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.models.lrn import LocalResponseNorm, local_response_norm


def out_size(size: int, kernel: int, stride: int = 1, padding: int = 0, ceil: bool = False) -> int:
    """Output side of a conv / pool window over `size` pixels (PyTorch's rule, incl. ceil_mode).

    Returns 0 (or less) when the window does not fit, so callers can report a too-small input.
    """
    span = size + 2 * padding - kernel
    if span < 0:
        return 0
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + padding:
        out -= 1  # the last window must start inside the input (PyTorch's ceil_mode rule)
    return out


class LocallyConnected2d(nn.Module):
    """A convolution with unshared weights: one filter bank per output position.

    cuda-convnet's "local" layer, used by the conv-local CIFAR-10 nets behind section 3.3's
    claim. Weight (L, out_channels, in_channels * k * k) with L = out_h * out_w positions in
    row-major order; bias (out_channels, out_h, out_w), also per position. Computed as unfold
    then one batched matrix product per position (einsum), never a Python loop.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: int | tuple[int, int],
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
        self.in_channels, self.out_channels = in_channels, out_channels
        self.input_size = (h, w)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.output_size = (
            out_size(h, kernel_size, stride, padding),
            out_size(w, kernel_size, stride, padding),
        )
        if min(self.output_size) < 1:
            raise ValueError(
                f"LocallyConnected2d: input_size={input_size} is smaller than kernel_size="
                f"{kernel_size} with padding={padding}"
            )
        positions = self.output_size[0] * self.output_size[1]
        fan_in = in_channels * kernel_size * kernel_size
        self.weight = nn.Parameter(torch.empty(positions, out_channels, fan_in))
        self.bias = nn.Parameter(torch.empty(out_channels, *self.output_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), what nn.Conv2d's default init amounts to."""
        bound = 1 / math.sqrt(self.weight.shape[-1])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-3:]) != (self.in_channels, *self.input_size):
            raise ValueError(
                f"LocallyConnected2d expects (N, {self.in_channels}, {self.input_size[0]}, "
                f"{self.input_size[1]}) input, got {tuple(x.shape)}"
            )
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        out = torch.einsum("nkl,lok->nol", cols, self.weight)  # (N, out_channels, L)
        out = out.reshape(x.shape[0], self.out_channels, *self.output_size)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"bias={self.bias is not None}"
        )


class PerTower(nn.Module):
    """Apply a channel-mixing `module` to each tower's maps on their own (paper section 3.2).

    On two GPUs each tower normalised only its own maps; with the towers stacked along the
    channel axis of one tensor, tower t is channels [t*C/T, (t+1)*C/T). A reshape (a view for
    contiguous input) folds the towers into the batch, so `module` never mixes them.
    """

    def __init__(self, module: nn.Module, towers: int) -> None:
        super().__init__()
        self.module, self.towers = module, towers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        if isinstance(m, LocalResponseNorm):  # the kernel keeps windows in each block itself:
            groups = m.groups * self.towers  # no reshape, so no copies of channels_last input
            return local_response_norm(x, m.size, m.alpha, m.beta, m.k, groups)
        _, c, h, w = x.shape
        return m(x.reshape(-1, c // self.towers, h, w)).reshape_as(x)

    def extra_repr(self) -> str:
        return f"towers={self.towers}"
