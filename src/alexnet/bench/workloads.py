"""What the bench runs: the trainer's own step, the baselines it is compared with, inference.

The package's side is `Trainer.train_step` itself (fused SGD, autocast, the layout the config
chose), on a model prepared as `alexnet train` prepares it. The baselines are what a user gets
without the package: the paper's net written as a plain `nn.Sequential` with
`nn.LocalResponseNorm` ("naive"), and torchvision's layout (`alexnet_owt`), both fp32 in the
default NCHW layout, stepped by the pytorch/examples loop (foreach SGD, section 5's values).
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import ProfilerActivity, profile, record_function

from alexnet import runtime
from alexnet.bench.timing import median_seconds
from alexnet.models import create_model
from alexnet.models.lrn import LocalResponseNorm, with_reference_lrn
from alexnet.train.config import TrainConfig
from alexnet.train.loop import Trainer

Batch = tuple[torch.Tensor, torch.Tensor]
Step = Callable[[], object]


def _options(input_size: int | None) -> dict:
    return {"input_size": input_size} if input_size else {}


def build(
    name: str,
    device: torch.device,
    precision: str,
    layout: str = "auto",
    *,
    nn_lrn: bool = False,
    input_size: int | None = None,
) -> nn.Module:
    """Model `name` prepared by alexnet.runtime for training in `layout` (seed 0)."""
    torch.manual_seed(0)
    model = create_model(name, **_options(input_size))
    if nn_lrn:
        model = with_reference_lrn(model)
    return runtime.prepare_model(model, device, precision, layout).train()


def naive_alexnet(input_size: int | None = None) -> nn.Sequential:
    """The paper's net as a user would write it from section 3: nn.Sequential, nn.LocalResponseNorm
    over all maps, the same layers and shapes as `create_model("alexnet")` (seed 0)."""
    torch.manual_seed(0)
    ref = create_model("alexnet", **_options(input_size))
    lrn = next(m for m in ref.modules() if isinstance(m, LocalResponseNorm))
    norm = nn.LocalResponseNorm(lrn.size, alpha=lrn.alpha, beta=lrn.beta, k=lrn.k)
    pool = ref.pool5  # the same overlapping 3x2 pooling everywhere (section 3.4)
    layers = [ref.conv1, nn.ReLU(), norm, pool, ref.conv2, nn.ReLU(), norm, pool]
    for conv in (ref.conv3, ref.conv4, ref.conv5):
        layers += [conv, nn.ReLU()]
    layers += [pool, nn.Flatten(), nn.Dropout(0.5), ref.fc6, nn.ReLU(), nn.Dropout(0.5)]
    layers += [ref.fc7, nn.ReLU(), ref.fc8]
    net = nn.Sequential(*layers)
    net.input_size, net.in_chans, net.num_classes = ref.input_size, ref.in_chans, ref.num_classes
    return net


def baseline(name: str, input_size: int | None = None) -> nn.Module:
    """A baseline in training mode, fp32 NCHW: "naive" or a registered model name."""
    if name == "naive":
        return naive_alexnet(input_size).train()
    torch.manual_seed(0)
    return create_model(name, **_options(input_size)).train()


def synthetic_batch(model: nn.Module, batch: int, seed: int = 0) -> Batch:
    """One random (images, labels) batch at the model's input shape, NCHW on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    size = model.input_size
    x = torch.randn(batch, model.in_chans, size, size, generator=gen)
    return x, torch.randint(0, model.num_classes, (batch,), generator=gen)


class _Batches:
    """The BatchSource a Trainer is built with; the bench feeds `train_step` itself."""

    def __init__(self, batch: Batch) -> None:
        self._batch = batch

    def __len__(self) -> int:
        return 1

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        return iter([self._batch][start_batch:])


def trainer(
    model: nn.Module, device: torch.device, precision: str, layout: str, batch: Batch
) -> Trainer:
    """A Trainer around `model` as `alexnet train` builds it (section 5's SGD, fused)."""
    config = TrainConfig(data="synthetic", memory_format=layout, quiet=True)
    return Trainer(
        config,
        model,
        _Batches(batch),
        None,
        preprocess={},
        run_dir=Path(tempfile.gettempdir()),  # never written: the bench calls train_step only
        device=device,
        precision=precision,
    )


def trainer_step(trainer: Trainer, batches: Iterator[Batch]) -> Step:
    """One call of the Trainer's own step per call, on the next batch of `batches`."""
    return lambda: trainer.train_step(*next(batches))


def train_step(
    model: nn.Module, device: torch.device, precision: str, memory_format: torch.memory_format
) -> Callable[[Batch], object]:
    """The Trainer's step as a function of a batch (for alexnet.bench.gpu's feeds): a Trainer
    around `model` (DDP-wrapped or not) in the layout `memory_format` names."""
    layout = "channels_last" if memory_format == torch.channels_last else "nchw"
    core = model.module if isinstance(model, DistributedDataParallel) else model
    probe = synthetic_batch(core, 1)
    step = trainer(model, device, precision, layout, probe)
    return lambda batch: step.train_step(*batch)


def synthetic_batches(
    model: nn.Module, batch: int, device: torch.device, memory_format: torch.memory_format
) -> Iterator[Batch]:
    """`synthetic_batch` on `device` in `memory_format`, forever."""
    x, y = synthetic_batch(model, batch)
    return repeat((x.to(device).contiguous(memory_format=memory_format), y.to(device)))


def plain_step(model: nn.Module, batches: Iterator[Batch]) -> Step:
    """One step of the pytorch/examples loop (fp32, default layout, foreach SGD): the
    baselines' own loop, what a user writes without this package."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        x, y = next(batches)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def infer_step(model: nn.Module, x: torch.Tensor) -> Step:
    """One forward of `x` in inference mode."""

    def step() -> None:
        with torch.inference_mode():
            model(x)

    return step


def repeat(batch: Batch) -> Iterator[Batch]:
    """The same batch forever: the model's cost without any data loading."""
    return itertools.repeat(batch)


def inference_model(
    name: str, device: torch.device, precision: str, layout: str, input_size: int | None
) -> tuple[nn.Module, torch.dtype]:
    """Model `name` prepared for inference in `layout` (bf16: bf16 weights), with its dtype."""
    torch.manual_seed(0)
    model = create_model(name, **_options(input_size))
    model = runtime.prepare_inference_model(model, device, precision, layout)
    return model, torch.bfloat16 if precision == "bf16" else torch.float32


def infer_rate(
    name: str,
    device: torch.device,
    precision: str,
    batch: int,
    repeats: int,
    input_size: int | None = None,
) -> dict[str, float]:
    """Inference of model `name` at `batch` as alexnet.runtime prepares it (median call)."""
    model, dtype = inference_model(name, device, precision, "auto", input_size)
    x = synthetic_batch(model, batch)[0].to(device=device, dtype=dtype)
    x = x.contiguous(memory_format=runtime.memory_format(device, precision, job="infer"))
    seconds = median_seconds(infer_step(model, x), repeats=repeats, warmup=2, device=device)
    return {"batch": batch, "latency_ms": 1e3 * seconds, "img_s": batch / seconds}


# Profiler op names (self time) by what they do; the rest of a step is "other".
_KINDS = {
    "convolution": ("convolution", "mkldnn_conv"),
    "matmul": ("addmm", "aten::mm", "bmm", "matmul"),
    "LRN": ("_LRNFunction",),
    "SGD": ("sgd",),
}


def profile_step(step: Step) -> tuple[dict[str, float], str]:
    """Shares of one profiled call of `step` by kind of op (self time: convolution, matmul,
    the fused LRN, SGD, other), and the profile's table (top ops by own time): what bounds
    the step."""
    step()  # warm: allocations, kernel build
    with profile(activities=[ProfilerActivity.CPU]) as prof, record_function("train_step"):
        step()
    events = prof.key_averages()
    total = sum(e.cpu_time_total for e in events if e.key == "train_step")
    shares = dict.fromkeys([*_KINDS, "other"], 0.0)
    for e in events:  # the step's own self time (Python between the ops) is "other"
        kind = next((k for k, names in _KINDS.items() if any(n in e.key for n in names)), "other")
        shares[kind] += e.self_cpu_time_total / total if total else float("nan")
    table = events.table(sort_by="self_cpu_time_total", row_limit=15)
    return shares, table
