"""Runtime choices that make the fast path the default: precision, memory format, threads.

AlexNet's step is dominated by convolutions and the fc6/fc7 matmuls, so the largest gains come
from the matmul units: bf16 autocast where the hardware has fast bf16 (CUDA Ampere or later;
CPUs with AMX or AVX-512 BF16, through oneDNN), and channels_last activations, which oneDNN and
cuDNN convolve without reordering. fp32 stays one argument away (`precision="fp32"`) and is what
the tests use for exactness.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")
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


def use_channels_last(device: torch.device, precision: str) -> bool:
    """Whether convolutions should see channels_last (NHWC) tensors on `device`.

    oneDNN (CPU) and cuDNN with tensor cores both convolve NHWC natively; NCHW costs them a
    reorder of every activation. Other devices keep the default layout.
    """
    check_precision(precision)
    device = torch.device(device)
    if device.type == "cuda":
        return precision == "bf16"
    return device.type == "cpu"


def memory_format(device: torch.device, precision: str) -> torch.memory_format:
    """The memory format for image batches fed to a model prepared by `prepare_model`."""
    if use_channels_last(device, precision):
        return torch.channels_last
    return torch.contiguous_format


def prepare_model(model: nn.Module, device: torch.device, precision: str) -> nn.Module:
    """Move `model` to `device` in the layout that runs fastest there, weights in fp32.

    Weights stay fp32 for training (autocast casts them per op, and SGD updates stay exact);
    for bf16 inference use `prepare_inference_model`.
    """
    device = torch.device(device)
    model = model.to(device=device, dtype=torch.float32)
    if use_channels_last(device, precision) and _has_conv(model):
        model = model.to(memory_format=torch.channels_last)
    return model


def prepare_inference_model(model: nn.Module, device: torch.device, precision: str) -> nn.Module:
    """Like `prepare_model`, but for inference: bf16 stores the weights in bf16.

    Casting the weights once beats autocast's per-call casts, which dominate at small batches.
    """
    model = prepare_model(model, device, precision).eval()
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
