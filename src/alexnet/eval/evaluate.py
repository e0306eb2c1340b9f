"""Evaluation passes: one centre crop, or the paper's ten crops (section 4.1).

Ten-crop testing "extracts five 224x224 patches (the four corner patches and the center patch)
as well as their horizontal reflections (hence ten patches in all), and averages the
predictions made by the network's softmax layer on the ten patches". The loss reported with ten
crops is the negative log of that averaged probability.

Under torch.distributed every rank evaluates its own shard (the loader's evaluation sharding has
no padding and drops nothing) and the sums are all-reduced, so each sample counts exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.eval.metrics import Meter
from alexnet.runtime import autocast


def ten_crop_scores(model: nn.Module, crops: torch.Tensor) -> torch.Tensor:
    """(N, 10, C, h, w) crops -> (N, classes) softmax averaged over the ten crops."""
    n, k = crops.shape[:2]
    logits = model(crops.flatten(0, 1)).float()  # (N*10, classes)
    return logits.softmax(dim=1).view(n, k, -1).mean(dim=1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    num_classes: int,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    ten_crop: bool = False,
) -> dict[str, Any]:
    """Loss, top-1/top-5 accuracy and error, count and per-class accuracy over `batches`.

    `batches` yields (images, labels): images (N, C, h, w), or (N, 10, C, h, w) with `ten_crop`.
    """
    device = torch.device(device)
    model.eval()
    meter = Meter(num_classes)
    for images, labels in batches:
        images, labels = images.to(device), labels.to(device)
        with autocast(device, precision):
            if ten_crop:
                if images.dim() != 5:
                    raise ValueError(f"ten-crop batches are (N, 10, C, h, w), not {images.shape}")
                scores = ten_crop_scores(model, images)
                loss = F.nll_loss(scores.clamp_min(1e-12).log(), labels, reduction="sum")
            else:
                scores = model(images).float()
                loss = F.cross_entropy(scores, labels, reduction="sum")
        meter.update(scores, labels, float(loss))
    meter.all_reduce()
    return meter.result()
