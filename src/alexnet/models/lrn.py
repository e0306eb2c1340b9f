"""Local response normalisation across channels (paper section 3.3), with a fused CPU kernel.

b_c = a_c / (k + alpha/n * sum_{c' in window(c)} a_{c'}^2) ** beta, window of n maps centred on c
(c - n//2 .. c + (n-1)//2, zero outside), never crossing a tower when `groups` > 1.
`alpha` is in PyTorch's / cuda-convnet's convention (divided by n inside); the printed formula's
alpha is this one times n (the models pass `alpha=5e-4` for it).

`nn.LocalResponseNorm` runs a 3-D average pool over a padded copy of a^2 and has no bf16 kernel
on CPU; in AlexNet's training step it costs more than everything else together. Here the forward
and the analytic backward are each one pass over the activation: `lrn_kernel.cpp`, compiled with
the machine's C++ compiler on first use (about a second) and cached in
`alexnet.cache.cache_dir()/kernels`; a cached kernel is loaded only when it and its folder are
the user's own and writable by no one else (else it is built into a private temporary folder for
the process: a shared object is code). Without a compiler, on other
devices or with ALEXNET_LRN=torch, the same formulas run as torch ops (a few passes each).
Inputs may be float32, float64 or bfloat16 (under autocast), NCHW or channels_last; the window
sums are accumulated in float32 (float64 for float64) and the output has the input's dtype.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import math
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from alexnet.cache import cache_dir
from alexnet.runtime import cpu_flags

_SOURCE = Path(__file__).with_name("lrn_kernel.cpp")
_CXX_FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-std=c++17")
_DTYPES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2}
_MIN_TILES_PER_THREAD = 64  # below this, threads cost more than they save
_lock = threading.Lock()
_state: dict[str, object] = {}


def _cache_dir() -> Path:
    return cache_dir() / "kernels"


def _key(cxx: str) -> str:
    """The kernel's cache key: its source, compiler, flags and this CPU's features."""
    return hashlib.sha256(
        b"\0".join(
            [_SOURCE.read_bytes(), cxx.encode(), " ".join(_CXX_FLAGS).encode()]
            + [flag.encode() for flag in sorted(cpu_flags())]
        )
    ).hexdigest()[:16]


def _private(path: Path, *, follow: bool) -> bool:
    """Whether `path` is owned by this user and writable by no one else (a link is not, for a
    file: `follow=False`), so that nobody else can have put code there or swap it."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:
        return False
    kind_ok = stat.S_ISDIR(st.st_mode) if follow else stat.S_ISREG(st.st_mode)
    return kind_ok and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _compile(cxx: str, folder: Path, lib: Path) -> Path:
    tmp = folder / f".{lib.stem}-{os.getpid()}.so"
    cmd = [cxx, *_CXX_FLAGS, "-shared", "-fPIC", str(_SOURCE), "-o", str(tmp)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
        os.chmod(tmp, 0o755)  # whatever the umask: never group- or other-writable
        os.replace(tmp, lib)  # atomic: a concurrent build never sees half a file
    finally:
        tmp.unlink(missing_ok=True)
    return lib


def _build(cxx: str) -> tuple[Path, Path | None]:
    """The kernel's path, compiled on first use into the cache (keyed by source, flags and CPU),
    and a private folder to remove once it is loaded (None for the cache).

    A kernel is loaded from the cache only when it and its folder belong to this user and are
    writable by no one else; otherwise (or when the cache cannot be written) it is built into a
    fresh private temporary folder for this process alone.
    """
    name = f"lrn-{_key(cxx)}.so"
    folder = _cache_dir()
    with contextlib.suppress(OSError):  # not writable: build privately below
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if _private(folder, follow=True):
        lib = folder / name
        if _private(lib, follow=False):
            return lib, None
        if lib.exists() or lib.is_symlink():
            warnings.warn(
                f"{lib} is not owned by you or is writable by others: not loaded, rebuilt",
                stacklevel=4,
            )
        if os.access(folder, os.W_OK | os.X_OK):
            return _compile(cxx, folder, lib), None
    elif (folder / name).exists():
        warnings.warn(
            f"{folder} is not owned by you or is writable by others: the kernel there is not "
            "loaded; building a private copy for this process",
            stacklevel=4,
        )
    private = Path(tempfile.mkdtemp(prefix="alexnet-lrn-"))  # mode 0700, ours alone
    try:
        return _compile(cxx, private, private / name), private
    except BaseException:
        shutil.rmtree(private, ignore_errors=True)
        raise


def _kernel() -> ctypes.CDLL | None:
    """The compiled kernel, built on first use; None (with one warning) where it cannot be."""
    with _lock:
        if "lib" not in _state:
            _state["lib"] = None
            cxx = os.environ.get("CXX", "g++")
            if os.environ.get("ALEXNET_LRN", "") != "torch":
                try:
                    path, private = _build(cxx)
                    try:
                        lib = ctypes.CDLL(str(path))
                    finally:
                        if private is not None:  # loaded (or not): the mapping outlives it
                            shutil.rmtree(private, ignore_errors=True)
                    i64p, vp, d = ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p, ctypes.c_double
                    i64 = ctypes.c_int64
                    lib.lrn_num_tiles.argtypes, lib.lrn_num_tiles.restype = [i64p], i64
                    lib.lrn_forward.argtypes = [ctypes.c_int, i64p, vp, vp, d, d, d, i64, i64]
                    lib.lrn_backward.argtypes = [ctypes.c_int, i64p, vp, vp, vp, d, d, d, i64, i64]
                    _state["lib"] = lib
                except (OSError, subprocess.SubprocessError) as err:
                    detail = getattr(err, "stderr", "") or err
                    warnings.warn(
                        f"LRN kernel not built with {cxx!r} ({detail}); using torch ops (slower). "
                        "Install a C++ compiler (g++) or set CXX to one.",
                        stacklevel=3,
                    )
        return _state["lib"]  # type: ignore[return-value]


def lrn_backend() -> str:
    """ "cpp" where CPU float32/float64/bfloat16 LRN runs the fused kernel, else "torch"."""
    return "cpp" if _kernel() is not None else "torch"


def _pool() -> ThreadPoolExecutor:
    """Threads for the kernel's tiles (ctypes releases the GIL), as many as torch's."""
    threads = torch.get_num_threads()
    pool = _state.get("pool")
    if pool is None or _state.get("threads") != threads:
        if pool is not None:
            pool.shutdown(wait=False)  # type: ignore[attr-defined]
        pool = _state["pool"] = ThreadPoolExecutor(threads, thread_name_prefix="alexnet-lrn")
        _state["threads"] = threads
    return pool  # type: ignore[return-value]


# A forked child (a DataLoader worker) inherits the pool object but not its threads.
os.register_at_fork(after_in_child=lambda: _state.pop("pool", None))


def _dims(x: torch.Tensor, groups: int, size: int) -> tuple[torch.Tensor, ctypes.Array]:
    """`x` (made dense if needed) and the kernel's (N, C, S) description of its layout."""
    n, c = x.shape[:2]
    s = math.prod(x.shape[2:])
    if (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        strides = (s * c, 1, c)  # NHWC: channels innermost
    else:
        x = x.contiguous()
        strides = (c * s, s, 1)
    return x, (ctypes.c_int64 * 8)(n, c, s, groups, *strides, size)


def _run(fn: str, dims: ctypes.Array, tensors: list[torch.Tensor], params: tuple) -> None:
    """Call kernel function `fn` over all tiles, split across torch's thread count."""
    lib = _kernel()
    dtype = _DTYPES[tensors[0].dtype]
    ptrs = [t.data_ptr() for t in tensors]
    tiles = lib.lrn_num_tiles(dims)
    parts = max(1, min(torch.get_num_threads(), tiles // _MIN_TILES_PER_THREAD))
    bounds = [tiles * i // parts for i in range(parts + 1)]
    call = getattr(lib, fn)
    if parts == 1:
        call(dtype, dims, *ptrs, *params, 0, tiles)
        return
    jobs = [
        _pool().submit(call, dtype, dims, *ptrs, *params, bounds[i], bounds[i + 1])
        for i in range(parts)
    ]
    for job in jobs:
        job.result()


def _window_sum(t: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """sum_{c' = c - before}^{c + after} t[:, :, c'] over dim 2 of (N, G, C, S), zero outside."""
    c = t.shape[2]
    padded = F.pad(t, (0, 0, before, after))
    out = padded[:, :, 0:c].clone()
    for d in range(1, before + after + 1):
        out += padded[:, :, d : d + c]
    return out


def _torch_parts(
    x: torch.Tensor, groups: int, size: int, alpha: float, k: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The input as (N, G, C/G, S) in the accumulation dtype, and the denominators' base d."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    a = x.reshape(x.shape[0], groups, x.shape[1] // groups, -1).to(acc)
    d = _window_sum(a * a, size // 2, (size - 1) // 2).mul_(alpha / size).add_(k)
    return a, d


def _use_kernel(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in _DTYPES and _kernel() is not None


class _LRNFunction(torch.autograd.Function):
    """LRN with the analytic backward; saves only the input and recomputes the denominators."""

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k, groups):
        ctx.save_for_backward(x)
        ctx.params = (size, alpha, beta, k, groups)
        if _use_kernel(x):
            x, dims = _dims(x, groups, size)
            y = torch.empty_like(x)
            _run("lrn_forward", dims, [x, y], (alpha / size, beta, k))
            return y
        a, d = _torch_parts(x, groups, size, alpha, k)
        return (a * d.pow_(-beta)).reshape(x.shape).to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        size, alpha, beta, k, groups = ctx.params
        if _use_kernel(x):
            x, dims = _dims(x, groups, size)
            if grad.dtype != x.dtype or grad.stride() != x.stride():
                grad = torch.empty_like(x).copy_(grad)  # the kernel assumes x's layout
            dx = torch.empty_like(x)
            _run("lrn_backward", dims, [x, grad, dx], (alpha / size, beta, k))
            return dx, None, None, None, None, None
        a, d = _torch_parts(x, groups, size, alpha, k)
        g = grad.reshape(a.shape).to(a.dtype)
        p = d.pow(-beta)
        u = _window_sum(g * a * p / d, (size - 1) // 2, size // 2)  # the transposed window
        dx = g * p - (2 * alpha / size * beta) * a * u
        return dx.reshape(x.shape).to(x.dtype), None, None, None, None, None


def local_response_norm(
    x: torch.Tensor,
    size: int,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 1.0,
    groups: int = 1,
) -> torch.Tensor:
    """LRN of `x` (N, C, ...) in F.local_response_norm's convention; `groups` keeps the window
    inside each of `groups` equal blocks of channels (the paper's towers, section 3.2)."""
    if x.dim() < 3:
        raise ValueError(f"LRN needs (N, C, ...) input with at least 3 dims, got {tuple(x.shape)}")
    if size < 1 or groups < 1 or x.shape[1] % groups:
        raise ValueError(
            f"LRN needs size >= 1 and groups dividing the {x.shape[1]} channels; "
            f"got size={size}, groups={groups}"
        )
    return _LRNFunction.apply(x, size, float(alpha), float(beta), float(k), groups)


class LocalResponseNorm(nn.Module):
    """Drop-in for `nn.LocalResponseNorm` (same arguments, same convention), plus `groups`."""

    def __init__(
        self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0, groups: int = 1
    ) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k, self.groups)

    def extra_repr(self) -> str:
        groups = f", groups={self.groups}" if self.groups != 1 else ""
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}{groups}"


class ReferenceLRN(nn.Module):
    """The same LRN from `nn.LocalResponseNorm` (one tower at a time), the formula every tracer
    and exporter knows; bf16 input is computed in float32 (nn's has no bf16 CPU kernel)."""

    def __init__(self, size: int, alpha: float, beta: float, k: float, groups: int = 1) -> None:
        super().__init__()
        self.groups = groups
        self.norm = nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bfloat16 and x.device.type == "cpu":
            return self.forward(x.float()).to(x.dtype)
        if self.groups == 1:
            return self.norm(x)
        return torch.cat([self.norm(t) for t in x.chunk(self.groups, dim=1)], dim=1)


def with_reference_lrn(model: nn.Module) -> nn.Module:
    """`model` itself, every fused LocalResponseNorm in it replaced (in place) by a ReferenceLRN
    with the same arguments: for ONNX / TorchScript export (the kernel is opaque to tracers) and
    to measure what the fused kernel gains."""
    for name, module in list(model.named_modules()):
        if name and isinstance(module, LocalResponseNorm):
            parent_name, _, child = name.rpartition(".")
            ref = ReferenceLRN(module.size, module.alpha, module.beta, module.k, module.groups)
            setattr(model.get_submodule(parent_name), child, ref)
    return model
