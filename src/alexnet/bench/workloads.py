"""Model-level benchmarks: a training step (forward + backward + SGD) and inference.

A training step is what `alexnet train` runs per batch: autocast forward, cross-entropy,
backward, SGD with momentum and weight decay (section 5). Its FLOPs are counted from the
model's convolutions and linear layers (3x the forward), so img/s converts to achieved GFLOP/s.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from alexnet import runtime
from alexnet.bench.timing import forward_flops, median_seconds
from alexnet.models import create_model
from alexnet.models.layers import PerTower
from alexnet.models.lrn import LocalResponseNorm

Batch = tuple[torch.Tensor, torch.Tensor]


class NNLocalResponseNorm(nn.LocalResponseNorm):
    """nn.LocalResponseNorm, computed in float32 for bf16 input: it has no bf16 CPU kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bfloat16 and x.device.type == "cpu":
            return super().forward(x.float()).to(x.dtype)
        return super().forward(x)


def with_nn_lrn(model: nn.Module) -> nn.Module:
    """`model` with every fused LocalResponseNorm replaced by nn.LocalResponseNorm (same
    arguments; towers kept apart), to measure what the fused kernel gains."""
    for name, child in model.named_children():
        if isinstance(child, LocalResponseNorm):
            ref = NNLocalResponseNorm(child.size, child.alpha, child.beta, child.k)
            setattr(model, name, PerTower(ref, child.groups) if child.groups > 1 else ref)
        else:
            with_nn_lrn(child)
    return model


def build(
    name: str,
    device: torch.device,
    precision: str,
    *,
    nn_lrn: bool = False,
    input_size: int | None = None,
) -> nn.Module:
    """Model `name` prepared by alexnet.runtime for training (channels_last where it pays)."""
    torch.manual_seed(0)
    model = create_model(name, **({"input_size": input_size} if input_size else {}))
    if nn_lrn:
        model = with_nn_lrn(model)
    return runtime.prepare_model(model, device, precision).train()


def synthetic_batches(
    model: nn.Module, batch: int, device: torch.device, memory_format: torch.memory_format
) -> Iterator[Batch]:
    """The same random batch forever: the model's cost without any data loading."""
    gen = torch.Generator().manual_seed(0)
    size = model.input_size
    x = torch.randn(batch, model.in_chans, size, size, generator=gen)
    y = torch.randint(0, model.num_classes, (batch,), generator=gen)
    x = x.to(device).contiguous(memory_format=memory_format)
    return itertools.repeat((x, y.to(device)))


def train_step(
    model: nn.Module, device: torch.device, precision: str, memory_format: torch.memory_format
) -> Callable[[Batch], None]:
    """One SGD step on a batch, as the trainer runs it (section 5: momentum 0.9, decay 5e-4)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

    def step(batch: Batch) -> None:
        x, y = batch
        x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        with runtime.autocast(device, precision):
            loss = F.cross_entropy(model(x), y.to(device, non_blocking=True))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def train_rate(
    model: nn.Module,
    batches: Iterator[Batch],
    batch: int,
    device: torch.device,
    precision: str,
    repeats: int,
    memory_format: torch.memory_format | None = None,
) -> dict[str, float]:
    """img/s and achieved GFLOP/s of training steps fed from `batches` (median step);
    `memory_format` defaults to alexnet.runtime's choice."""
    fmt = memory_format or runtime.memory_format(device, precision)
    step = train_step(model, device, precision, fmt)
    seconds = median_seconds(lambda: step(next(batches)), repeats=repeats, device=device)
    size = model.input_size
    probe = torch.zeros(1, model.in_chans, size, size, device=device)
    flops = 3 * forward_flops(model, probe) * batch
    return {"step_s": seconds, "img_s": batch / seconds, "gflops": flops / seconds / 1e9}


def lrn_share(
    model: nn.Module, batches: Iterator[Batch], device: torch.device, precision: str
) -> tuple[float, str]:
    """Fraction of one profiled training step spent in LRN (forward and backward), and the
    profile's table (top ops by own time): what bounds the step."""
    from torch.profiler import ProfilerActivity, profile, record_function

    fmt = runtime.memory_format(device, precision)
    step = train_step(model, device, precision, fmt)
    step(next(batches))  # warm: allocations, kernel build
    with profile(activities=[ProfilerActivity.CPU]) as prof, record_function("train_step"):
        step(next(batches))
    events = prof.key_averages()
    total = sum(e.cpu_time_total for e in events if e.key == "train_step")
    lrn = sum(e.cpu_time_total for e in events if e.key.startswith("_LRNFunction"))
    table = events.table(sort_by="self_cpu_time_total", row_limit=15)
    return lrn / total if total else float("nan"), table


def infer_rate(
    name: str,
    device: torch.device,
    precision: str,
    batch: int,
    repeats: int,
    input_size: int | None = None,
) -> dict[str, float]:
    """Inference of model `name` at `batch`: bf16 stores the weights in bf16 (no autocast),
    which beats autocast's per-call weight casts, above all at batch 1."""
    torch.manual_seed(0)
    model = create_model(name, **({"input_size": input_size} if input_size else {}))
    model = runtime.prepare_inference_model(model, device, precision)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    size = model.input_size
    x = torch.randn(batch, model.in_chans, size, size, device=device, dtype=dtype)
    x = x.contiguous(memory_format=runtime.memory_format(device, precision))
    with torch.inference_mode():
        seconds = median_seconds(lambda: model(x), repeats=repeats, warmup=2, device=device)
    return {"batch": batch, "latency_ms": 1e3 * seconds, "img_s": batch / seconds}
