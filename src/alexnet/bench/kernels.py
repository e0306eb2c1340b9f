"""Kernel-level benchmark: the fused LRN against its floor and nn's LRN."""

from __future__ import annotations

import torch

from alexnet.bench.timing import median_seconds
from alexnet.models.lrn import ReferenceLRN, local_response_norm

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# The two LRN inputs of the paper's net (section 3.3): after conv1 and after conv2.
LRN_SHAPES = {"conv1": (96, 55, 55), "conv2": (256, 27, 27)}
LRN_ARGS = (5, 1e-4, 0.75, 2.0)  # section 3.3, alpha in PyTorch's convention


def lrn_seconds(
    shape: tuple[int, ...], precision: str, repeats: int, *, groups: int = 1
) -> dict[str, float]:
    """Forward + backward seconds of the fused LRN, of nn's LRN, and of the floor, at `shape`.

    The floor is two passes over the activation (`x * x` and `x.clone()`): the forward reads x
    and writes y, the backward reads x and the gradient and writes dx; no LRN does less.
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).relu_().to(DTYPES[precision])
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    grad = (
        torch.randn(shape, generator=gen).to(x.dtype).contiguous(memory_format=torch.channels_last)
    )

    def fused() -> None:
        local_response_norm(x, *LRN_ARGS, groups=groups).backward(grad)

    reference_lrn = ReferenceLRN(*LRN_ARGS, groups=groups)

    def reference() -> None:
        reference_lrn(x).backward(grad)

    def floor() -> None:
        (x.detach() * x.detach(), x.detach().clone())

    result = {
        "fused": median_seconds(fused, repeats=repeats),
        "floor": median_seconds(floor, repeats=repeats),
        "nn": median_seconds(reference, repeats=max(1, repeats // 2)),
    }
    x.grad = None
    return result


def lrn_table(batch: int, repeats: int, precisions: tuple[str, ...] = tuple(DTYPES)) -> list[dict]:
    """LRN forward + backward at the paper net's two LRN inputs, in `precisions`, channels_last.

    No LRN is faster than its floor, so a fused time below the floor's is timing noise: the row
    is measured again with more repeats, and marked `below_resolution` if it stays below."""
    rows = []
    for layer, chw in LRN_SHAPES.items():
        for precision in precisions:
            t = lrn_seconds((batch, *chw), precision, repeats)
            for more in (4, 16):
                if t["fused"] >= t["floor"]:
                    break
                t = lrn_seconds((batch, *chw), precision, max(5, repeats * more))
            rows.append(
                {
                    "layer": layer,
                    "precision": precision,
                    "shape": [batch, *chw],
                    "fused_ms": 1e3 * t["fused"],
                    "nn_ms": 1e3 * t["nn"],
                    "floor_ms": 1e3 * t["floor"],
                    "x_floor": t["fused"] / t["floor"],
                    "speedup_vs_nn": t["nn"] / t["fused"],
                    "below_resolution": t["fused"] < t["floor"],
                }
            )
    return rows
