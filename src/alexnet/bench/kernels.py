"""Kernel-level benchmarks: the matmul ceiling and the LRN against its floor and nn's LRN."""

from __future__ import annotations

import torch

from alexnet.bench.timing import median_seconds
from alexnet.bench.workloads import NNLocalResponseNorm
from alexnet.models.lrn import local_response_norm

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# The two LRN inputs of the paper's net (section 3.3): after conv1 and after conv2.
LRN_SHAPES = {"conv1": (96, 55, 55), "conv2": (256, 27, 27)}
LRN_ARGS = (5, 1e-4, 0.75, 2.0)  # section 3.3, alpha in PyTorch's convention


def matmul_gflops(device: torch.device, precision: str, n: int, repeats: int) -> float:
    """GFLOP/s of an n x n x n matmul: the most the machine's matmul units deliver here.

    The fastest of `repeats` calls, not the median: a ceiling is the best case, and on a shared
    machine the median of a short call mostly measures the neighbours.
    """
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=gen, device=device).to(DTYPES[precision])
    b = torch.randn(n, n, generator=gen, device=device).to(DTYPES[precision])
    a @ b  # warm-up: oneDNN's kernel choice and the output allocation
    seconds = min(
        median_seconds(lambda: a @ b, repeats=1, warmup=0, device=device)
        for _ in range(max(3, repeats))
    )
    return 2 * n**3 / seconds / 1e9


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

    reference_lrn = NNLocalResponseNorm(*LRN_ARGS)

    def reference() -> None:
        if groups == 1:
            reference_lrn(x).backward(grad)
            return
        n, c, h, w = x.shape
        out = reference_lrn(x.reshape(n * groups, c // groups, h, w))
        out.reshape(x.shape).backward(grad)

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
