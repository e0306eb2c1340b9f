"""`alexnet bench`: every measurement in one run, side by side, with ratios and the issue's targets.

Rows share one process, one thread setting and one allocator, so their ratios hold even on a
busy machine where absolute numbers drift; the machine's load is recorded with them.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from alexnet import runtime
from alexnet.allocator import loaded_allocator
from alexnet.bench import kernels, workloads
from alexnet.bench.timing import median_seconds
from alexnet.models.lrn import lrn_backend


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one bench run: the defaults are the issue's (batch 128, median of 5)."""

    batch: int = 128
    repeats: int = 5
    infer_batches: tuple[int, ...] = (1, 64)
    matmul_n: int = 2048
    store_images: int = 768
    input_size: int | None = None  # None: each model's own (227 for the paper's net)


# A smoke run: tiny batches and a 99-pixel input (pool5 is 2x2), every row still measured.
QUICK = Settings(
    batch=2, repeats=1, infer_batches=(1, 2), matmul_n=128, store_images=8, input_size=99
)

# (label, model, precision, data, LRN, memory format); the first row is the baseline.
TRAIN_ROWS = [
    ("baseline: alexnet_owt fp32 NCHW, JPEG", "alexnet_owt", "fp32", "jpeg", "-", "nchw"),
    ("alexnet_owt fp32", "alexnet_owt", "fp32", "synthetic", "-", "best"),
    ("alexnet_owt bf16", "alexnet_owt", "bf16", "synthetic", "-", "best"),
    ("alexnet_owt bf16, store", "alexnet_owt", "bf16", "store", "-", "best"),
    ("alexnet fp32", "alexnet", "fp32", "synthetic", "fused", "best"),
    ("alexnet fp32, store", "alexnet", "fp32", "store", "fused", "best"),
    ("alexnet bf16", "alexnet", "bf16", "synthetic", "fused", "best"),
    ("alexnet bf16, store", "alexnet", "bf16", "store", "fused", "best"),
    ("alexnet bf16, nn.LocalResponseNorm", "alexnet", "bf16", "synthetic", "nn", "best"),
]


def machine() -> dict:
    """What the numbers were measured on."""
    flags = runtime.cpu_flags()
    model = (
        next(
            (
                line.partition(":")[2].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    return {
        "cpu": model,
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
        "threads": torch.get_num_threads(),
        "allocator": loaded_allocator(),
        "lrn_backend": lrn_backend(),
        "best_precision": runtime.best_precision(torch.device("cpu")),
        "torch": torch.__version__,
        "load_avg": list(os.getloadavg()),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def store_batches(batch: int, crop: int, images: int) -> Iterator[workloads.Batch]:
    """Training batches from a prepared store (synthetic 256x256 photos, prepared once and
    cached), through the trainer's loader with one worker process: crop, flip, mean image."""
    from alexnet.data.loader import Loader
    from alexnet.data.prepare import ensure_prepared
    from alexnet.data.store import open_store

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "alexnet" / "bench"
    try:
        root = ensure_prepared(f"synthetic:{images}:256", cache, 256, quiet=True)
    except PermissionError:
        root = ensure_prepared(f"synthetic:{images}:256", tempfile.gettempdir(), 256, quiet=True)
    loader = Loader(
        open_store(root / "train"), train=True, crop_size=crop, batch_size=batch, workers=1
    )
    return itertools.chain.from_iterable(loader.epoch(e) for e in itertools.count())


def jpeg_batches(batch: int, crop: int, images: int) -> Iterator[workloads.Batch] | None:
    """The pytorch/examples pipeline (decode full JPEGs, random-resized crop) from the data
    module's bench recipe, or None where that recipe is not available."""
    try:
        from alexnet.bench import loader as recipe
    except ImportError:
        return None
    make = getattr(recipe, "jpeg_batches", None)
    return make(batch, crop, images) if make else None


def _batches(
    data: str, model: torch.nn.Module, s: Settings, device: torch.device, fmt: torch.memory_format
) -> Iterator[workloads.Batch]:
    """The batches a row trains on: from the store, the JPEG recipe or one synthetic batch."""
    if data == "store":
        return store_batches(s.batch, model.input_size, s.store_images)
    if data == "jpeg":
        found = jpeg_batches(s.batch, model.input_size, s.store_images)
        if found is not None:
            return found
    return workloads.synthetic_batches(model, s.batch, device, fmt)


def train_rows(s: Settings, device: torch.device, rows: list[tuple]) -> list[dict]:
    """One measured training configuration per row of `rows` (see TRAIN_ROWS)."""
    out = []
    for label, name, precision, data, lrn, layout in rows:
        model = workloads.build(
            name, device, precision, nn_lrn=lrn == "nn", input_size=s.input_size
        )
        fmt = torch.contiguous_format if layout == "nchw" else None
        batches = _batches(data, model, s, device, fmt or runtime.memory_format(device, precision))
        if data == "jpeg" and isinstance(batches, itertools.repeat):
            label, data = label.replace("JPEG", "synthetic (no JPEG recipe yet)"), "synthetic"
        rate = workloads.train_rate(model, batches, s.batch, device, precision, s.repeats, fmt)
        out.append(
            {
                "label": label,
                "model": name,
                "precision": precision,
                "data": data,
                "lrn": lrn,
                "layout": layout,
                "batch": s.batch,
                **rate,
            }
        )
        del model, batches
    return out


def loader_rate(batches: Iterator[workloads.Batch], batch: int, repeats: int) -> float:
    """img/s of a batch iterator alone."""
    return batch / median_seconds(lambda: next(batches), repeats=repeats)


def ratios(results: dict) -> None:
    """Add to each training row its ratio to the baseline and its share of the matmul ceiling."""
    train = results["train"]
    base = train[0]["img_s"]
    ceiling = results["matmul_gflops"]
    for row in train:
        row["x_baseline"] = row["img_s"] / base
        row["of_ceiling"] = row["gflops"] / ceiling[row["precision"]]
    by_label = {row["label"]: row for row in train}
    nn_row = by_label.get("alexnet bf16, nn.LocalResponseNorm")
    fused = by_label.get("alexnet bf16")
    if nn_row and fused:
        results["lrn_gain"] = fused["img_s"] / nn_row["img_s"]


def targets(results: dict) -> list[dict]:
    """The issue's targets, each with the measured value (ratios from this one run)."""
    rows = {row["label"]: row for row in results["train"]}
    store = rows.get("alexnet bf16, store", {})
    infer = {(r["precision"], r["batch"]): r for r in results["infer"]}
    big = max(b for _, b in infer)
    checks = [
        ("alexnet bf16 training incl. store data, img/s", store.get("img_s"), ">=", 200),
        ("alexnet bf16 / same net with nn.LocalResponseNorm", results.get("lrn_gain"), ">=", 3.5),
        ("alexnet bf16 incl. store data / baseline", store.get("x_baseline"), ">=", 3.0),
        ("LRN share of the alexnet step", results.get("lrn_share"), "<=", 0.10),
        (f"inference bf16 batch {big}, img/s", infer[("bf16", big)]["img_s"], ">=", 900),
        (
            "inference batch 1 latency, ms (best precision)",
            min(infer[(p, 1)]["latency_ms"] for p in ("fp32", "bf16")),
            "<=",
            10,
        ),
    ]
    out = []
    for name, value, op, goal in checks:
        met = None if value is None else (value >= goal if op == ">=" else value <= goal)
        out.append({"target": name, "value": value, "goal": f"{op} {goal}", "met": met})
    return out


def run_bench(s: Settings, *, profile: bool = False) -> dict:
    """Every CPU measurement (and the GPU section where CUDA is present), in one process."""
    cpu = torch.device("cpu")
    results: dict = {"machine": machine(), "settings": dataclasses.asdict(s)}
    results["matmul_gflops"] = {
        p: kernels.matmul_gflops(cpu, p, s.matmul_n, s.repeats) for p in kernels.DTYPES
    }
    results["lrn"] = kernels.lrn_table(s.batch, s.repeats)
    results["train"] = train_rows(s, cpu, TRAIN_ROWS)
    best = runtime.best_precision(cpu)
    model = workloads.build("alexnet", cpu, best, input_size=s.input_size)
    batches = workloads.synthetic_batches(model, s.batch, cpu, runtime.memory_format(cpu, best))
    results["lrn_share"], table = workloads.lrn_share(model, batches, cpu, best)
    if profile:
        results["profile"] = table
    results["infer"] = [
        workloads.infer_rate("alexnet", cpu, p, b, s.repeats, s.input_size) | {"precision": p}
        for b in s.infer_batches
        for p in kernels.DTYPES
    ]
    crop = s.input_size or 227
    loaders = {"store": store_batches(s.batch, crop, s.store_images)}
    jpeg = jpeg_batches(s.batch, crop, s.store_images)
    if jpeg is not None:
        loaders["jpeg"] = jpeg
    results["loader_img_s"] = {k: loader_rate(v, s.batch, s.repeats) for k, v in loaders.items()}
    if torch.cuda.is_available():
        results["gpu"] = gpu_section(s)
    ratios(results)
    results["targets"] = targets(results)
    results["machine"]["load_avg_end"] = list(os.getloadavg())
    return results


def gpu_section(s: Settings) -> dict:
    """The same training and inference rows on the first CUDA device (synthetic data)."""
    gpu = torch.device("cuda")
    rows = [r for r in TRAIN_ROWS if r[3] == "synthetic"]
    return {
        "matmul_gflops": {
            p: kernels.matmul_gflops(gpu, p, 4 * s.matmul_n, s.repeats) for p in kernels.DTYPES
        },
        "train": train_rows(s, gpu, rows),
        "infer": [
            workloads.infer_rate("alexnet", gpu, p, b, s.repeats, s.input_size) | {"precision": p}
            for b in s.infer_batches
            for p in kernels.DTYPES
        ],
    }
