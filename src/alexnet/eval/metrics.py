"""Top-k counts and a meter that sums them exactly, across batches and across ranks.

The paper reports top-1 and top-5 error rates (section 4); error = 1 - accuracy. The meter keeps
integer-valued sums (correct counts, sample counts, per-class counts) rather than averages, so
that summing over data-parallel ranks (`all_reduce`) counts every sample exactly once, whatever
the shard sizes (the pytorch/examples imagenet habit).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...]) -> list[int]:
    """How many rows have their label among the k highest scores, for each k in `ks`."""
    k_max = min(max(ks), logits.shape[1])
    top = logits.topk(k_max, dim=1).indices  # (N, k_max)
    hits = top.eq(labels.view(-1, 1))
    return [int(hits[:, : min(k, k_max)].any(dim=1).sum()) for k in ks]


class Meter:
    """Running sums of loss, top-1/top-5 hits and per-class hits over a pass."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        # float64 sums: loss summed over 10^6 samples keeps its digits
        self.sums = torch.zeros(4, dtype=torch.float64)  # loss, top1, top5, count
        self.class_correct = torch.zeros(num_classes, dtype=torch.float64)
        self.class_count = torch.zeros(num_classes, dtype=torch.float64)

    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss_sum: float) -> None:
        """Add a batch: `loss_sum` is the summed (not mean) loss of its samples."""
        logits, labels = logits.detach().float().cpu(), labels.cpu()
        top1, top5 = topk_correct(logits, labels, (1, 5))
        n = labels.numel()
        self.sums += torch.tensor([loss_sum, top1, top5, n], dtype=torch.float64)
        hit = logits.argmax(dim=1).eq(labels).double()
        self.class_correct.index_add_(0, labels, hit)
        self.class_count.index_add_(0, labels, torch.ones_like(hit))

    def all_sums(self) -> torch.Tensor:
        """Every sum in one float64 vector (checkpointed mid-epoch)."""
        return torch.cat([self.sums, self.class_correct, self.class_count])

    def load_sums(self, flat: torch.Tensor) -> None:
        """Set the sums from `all_sums()`'s vector."""
        c = self.num_classes
        if flat.numel() != 4 + 2 * c:
            raise ValueError(f"saved meter has {flat.numel()} sums, expected {4 + 2 * c}")
        flat = flat.to(torch.float64)
        self.sums, self.class_correct, self.class_count = flat[:4], flat[4 : 4 + c], flat[4 + c :]

    def all_reduce(self) -> None:
        """Sum over all ranks (no-op outside torch.distributed)."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        flat = self.all_sums()
        if dist.get_backend() == "nccl":
            flat = flat.cuda()
        dist.all_reduce(flat)
        self.load_sums(flat.cpu())

    @property
    def count(self) -> int:
        return int(self.sums[3])

    def result(self) -> dict[str, Any]:
        """loss, top1/top5 accuracy and error, count, and per-class accuracy (None if absent)."""
        n = max(self.count, 1)
        loss, top1, top5 = (float(v) / n for v in self.sums[:3])
        per_class = [
            float(c / t) if t > 0 else None
            for c, t in zip(self.class_correct, self.class_count, strict=True)
        ]
        return {
            "loss": loss,
            "top1_acc": top1,
            "top5_acc": top5,
            "top1_err": 1.0 - top1,
            "top5_err": 1.0 - top5,
            "count": self.count,
            "per_class_acc": per_class,
        }
