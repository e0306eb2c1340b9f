"""Timing and FLOP counting shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def sync(device: torch.device) -> None:
    """Wait for queued work on `device` (CUDA runs asynchronously)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    fn: Callable[[], object], *, repeats: int, warmup: int = 1, device: torch.device = "cpu"
) -> float:
    """Median wall time of `repeats` calls of `fn` after `warmup` untimed ones.

    The median, not the mean: on a shared machine a few calls are slowed by other work.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(
    sides: dict[str, Callable[[], object]],
    *,
    rounds: int,
    warmup: int = 1,
    device: torch.device = "cpu",
) -> dict[str, list[float]]:
    """Seconds of one call of each side, per round: every round calls each side once, in turn,
    so a machine that slows down or speeds up (a shared one drifts by 20% in minutes) slows
    every side of that round alike, and per-round ratios cancel the drift."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    for fn in sides.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median over rounds of numerator / denominator (paired, round by round)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def layer_flops(model: nn.Module, x: torch.Tensor) -> list[int]:
    """FLOPs (2 per multiply-add) of each convolution and linear layer in one forward of `x`,
    in the order they run. These are all but a fraction of a percent of AlexNet's arithmetic."""
    counts: list[int] = []

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            counts.append(2 * output.numel() * (module.in_channels // module.groups) * kh * kw)
        elif isinstance(module, nn.Linear):
            counts.append(2 * output.numel() * module.in_features)

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return counts


def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of the convolutions and linear layers in one forward of `x`."""
    return sum(layer_flops(model, x))


def train_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one training step on `x`: the forward, then in the backward each layer's weight
    gradient (as large as its forward) and input gradient (as large again), except the first
    layer's: the images need no gradient. 3x the forward, less the first layer's once."""
    counts = layer_flops(model, x)
    return 3 * sum(counts) - (counts[0] if counts else 0)
