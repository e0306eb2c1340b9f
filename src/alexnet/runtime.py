"""Runtime choices that make the fast path the default: precision, memory format, threads.

AlexNet's step is dominated by convolutions and the fc6/fc7 matmuls, so the largest gains come
from the matmul units: bf16 autocast where the hardware has fast bf16 (CUDA Ampere or later;
CPUs with AMX or AVX-512 BF16, through oneDNN), and channels_last activations, which oneDNN and
cuDNN convolve without reordering. fp32 stays one argument away (`precision="fp32"`) and is what
the tests use for exactness.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from pathlib import Path

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")
MEMORY_FORMATS = ("auto", "nchw", "channels_last")
JOBS = ("train", "infer")
# CPU flags (as /proc/cpuinfo spells them) whose presence means bf16 matmuls beat fp32 ones.
_FAST_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (empty where /proc/cpuinfo is unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def has_fast_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run markedly faster than fp32 ones on `device`."""
    device = torch.device(device)
    if device.type == "cuda":
        # Tensor cores with bf16 arrived with Ampere (compute capability 8.0).
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_capability(index) >= (8, 0)
    if device.type == "cpu":
        if cpu_flags() & _FAST_BF16_CPU_FLAGS:
            return True
        # Without /proc/cpuinfo, trust torch's dispatch level only for the AMX-era kernels.
        return not cpu_flags() and torch.backends.cpu.get_cpu_capability() == "AVX512_BF16"
    return False


def best_precision(device: torch.device) -> str:
    """ "bf16" where `device` has fast bf16 matmuls, else "fp32"."""
    return "bf16" if has_fast_bf16(device) else "fp32"


def check_precision(precision: str) -> str:
    """`precision` itself, or a ValueError naming the accepted values."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """A context that runs the forward pass in `precision`.

    bf16 uses torch.autocast (weights stay fp32, matmuls and convolutions run in bf16, and the
    loss and reductions stay fp32); bf16 keeps fp32's exponent range, so no loss scaling is needed.
    """
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


@dataclasses.dataclass(frozen=True)
class Layout:
    """The activation layout chosen for one job on one device, and why."""

    name: str  # "nchw" | "channels_last"
    reason: str

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.name == "channels_last" else torch.contiguous_format


def cpu_kind() -> str:
    """'amx' (AMX or AVX-512 BF16 units), 'avx512', 'avx2' or 'other': the CPU families whose
    layout figures differ (docs/speed.md)."""
    flags = cpu_flags()
    if flags & _FAST_BF16_CPU_FLAGS:
        return "amx"
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "other"


# The CPU rule, from `alexnet bench`'s interleaved tables (medians of per-round ratios; the
# figures and their machines are in docs/speed.md): channels_last was never measured slower
# than NCHW, since oneDNN convolves NHWC natively and reorders NCHW activations around every
# convolution, and in bf16 on AMX the gap is large. Keyed by (CPU kind, job, precision).
_CPU_LAYOUT_FIGURES = {
    ("amx", "train", "bf16"): "1.77-1.99x NCHW (8 of 8 rounds, 2 runs)",
    ("amx", "train", "fp32"): "1.13-1.19x NCHW (6 of 8 rounds, 2 runs)",
    ("amx", "infer", "bf16"): "1.98-2.15x NCHW at batch 64, 1.16-1.43x at batch 1",
    ("amx", "infer", "fp32"): "1.38-1.61x NCHW at batch 64, 1.00-1.10x at batch 1",
    ("avx2", "train", "fp32"): "within noise of NCHW (25.9 vs 26.6 img/s, ahead in 6 of 8 rounds)",
    ("avx2", "infer", "fp32"): "78 vs NCHW 63 img/s at batch 64, 34.8 vs 36.8 ms at batch 1",
}
_CPU_NAMES = {"amx": "AMX Xeon", "avx2": "AVX2 EPYC", "avx512": "AVX-512 CPU", "other": "CPU"}
_JOB_NAMES = {"train": "training", "infer": "inference"}


def choose_layout(
    device: torch.device, precision: str, job: str = "train", requested: str = "auto"
) -> Layout:
    """NCHW or channels_last for `job` ("train" | "infer") on `device` in `precision`:
    `requested` itself unless "auto", else the measured rule above."""
    check_precision(precision)
    if requested not in MEMORY_FORMATS:
        raise ValueError(f"memory format {requested!r} is not one of {', '.join(MEMORY_FORMATS)}")
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}; expected one of {JOBS}")
    if requested != "auto":
        return Layout(requested, "--memory-format")
    device = torch.device(device)
    if device.type == "cuda":  # cuDNN's tensor cores run NHWC natively; fp32 ones do not
        if precision == "bf16":
            return Layout("channels_last", "CUDA bf16: the tensor cores' native NHWC")
        return Layout("nchw", "CUDA fp32: cuDNN's default layout")
    if device.type != "cpu":
        return Layout("nchw", f"{device.type}: the default layout")
    kind = cpu_kind()
    figure = _CPU_LAYOUT_FIGURES.get((kind, job, precision), "(oneDNN's; not measured here)")
    reason = f"{_CPU_NAMES[kind]}, {precision} {_JOB_NAMES[job]}: channels_last {figure}"
    return Layout("channels_last", reason)


def memory_format(
    device: torch.device, precision: str, requested: str = "auto", job: str = "train"
) -> torch.memory_format:
    """The memory format for image batches fed to a model prepared by `prepare_model`."""
    return choose_layout(device, precision, job, requested).memory_format


def prepare_model(
    model: nn.Module,
    device: torch.device,
    precision: str,
    requested: str = "auto",
    job: str = "train",
) -> nn.Module:
    """Move `model` to `device` in the layout `choose_layout` picks, weights in fp32.

    Weights stay fp32 for training (autocast casts them per op, and SGD updates stay exact);
    for bf16 inference use `prepare_inference_model`.
    """
    device = torch.device(device)
    model = model.to(device=device, dtype=torch.float32)
    layout = choose_layout(device, precision, job, requested)
    if layout.name == "channels_last" and _has_conv(model):
        model = model.to(memory_format=torch.channels_last)
    return model


def prepare_inference_model(
    model: nn.Module, device: torch.device, precision: str, requested: str = "auto"
) -> nn.Module:
    """Like `prepare_model`, but for inference: bf16 stores the weights in bf16.

    Casting the weights once beats autocast's per-call casts, which dominate at small batches.
    """
    model = prepare_model(model, device, precision, requested, job="infer").eval()
    return model.to(dtype=torch.bfloat16) if precision == "bf16" else model


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op thread count and return it.

    `None` picks `OMP_NUM_THREADS` when set, else one thread per available CPU: more threads than
    cores only adds contention in oneDNN's convolutions.
    """
    if num_threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        num_threads = int(env) if env.isdigit() and int(env) > 0 else available_cpus()
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    torch.set_num_threads(num_threads)
    return torch.get_num_threads()
