"""`alexnet bench`: every measurement in one run, side by side, with ratios and speed targets.

Rows share one process, one thread setting and one allocator, so their ratios hold even on a
busy machine where absolute numbers drift; the machine's load is recorded with them.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from alexnet import runtime
from alexnet.allocator import loaded_allocator
from alexnet.bench import kernels, workloads
from alexnet.data.photos import photo_source
from alexnet.models.lrn import lrn_backend


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one bench run: the defaults are the issue's (batch 128, median of 5)."""

    batch: int = 128
    repeats: int = 5
    infer_batches: tuple[int, ...] = (1, 64)
    matmul_n: int = 2048
    store_images: int = 256  # photo JPEGs (and their prepared store) the data rows cycle over
    loader_seconds: float = 5.0  # per per-core loader measurement
    input_size: int | None = None  # None: each model's own (227 for the paper's net)
    # bf16 rows also where the hardware has no fast bf16 (there it is emulated, 10-50x slower)
    all_precisions: bool = False


# A smoke run: batch 2, 1 repeat, a 99-pixel input (pool5 is 2x2); the tables say so.
QUICK = Settings(
    batch=2,
    repeats=1,
    infer_batches=(1, 2),
    matmul_n=128,
    store_images=8,
    loader_seconds=0.2,
    input_size=99,
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
    # "best": alexnet.runtime's precision for this machine (bf16 where it has fast bf16)
    ("alexnet {p}, nn.LocalResponseNorm", "alexnet", "best", "synthetic", "nn", "best"),
]


SKIP_REASON = "no fast bf16 here (emulated: 10-50x slower); --all-precisions runs it"


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
        "photos": photo_source(),  # the JPEG rows' images: real photographs or procedural
    }


class Feeds:
    """Training data for the bench rows, from alexnet.bench.loader's benchmark set: photo-like
    JPEGs (about 500x375) and their prepared 256x256 store, built once in a temporary folder.

    "store" is the trainer's path (prepared store + loader with the paper's augmentation);
    "jpeg" is the pytorch/examples recipe (decode the full JPEG, random-resized crop, flip,
    normalise). Both use min(2, CPUs) loader processes, as alexnet.bench.loader does.
    """

    def __init__(self, root: Path, images: int) -> None:
        from alexnet.bench import loader as recipe

        self.recipe = recipe
        self.data = recipe.build_benchmark_data(root, images)
        self.workers = min(2, runtime.available_cpus())

    def batches(self, kind: str, batch: int, crop: int) -> Iterator[workloads.Batch]:
        if kind == "store":
            return self.recipe.store_feed(self.data["stores"]["raw"], batch, self.workers, crop)
        return self.recipe.examples_feed(self.data["files"], batch, self.workers, crop)

    def per_core_img_s(self, crop: int, batch: int, seconds: float) -> dict[str, float]:
        """img/s of each pipeline alone on one core (no model)."""
        store = self.recipe.measure_store_loader(
            self.data["stores"]["raw"], crop=crop, batch_size=batch, seconds=seconds
        )
        jpeg = self.recipe.measure_examples_recipe(
            self.data["files"], crop=crop, batch_size=batch, seconds=seconds
        )
        return {"store": store["img_per_s"], "jpeg": jpeg["img_per_s"]}


def train_rows(
    s: Settings, device: torch.device, rows: list[tuple], feeds: Feeds | None
) -> list[dict]:
    """One measured training configuration per row of `rows` (see TRAIN_ROWS)."""
    out = []
    for label, name, precision, data, lrn, layout in rows:
        if precision == "best":
            precision = runtime.best_precision(device)
            label = label.format(p=precision)
        if precision == "bf16" and not (s.all_precisions or runtime.has_fast_bf16(device)):
            out.append({"label": label, "precision": precision, "skipped": SKIP_REASON})
            continue
        model = workloads.build(
            name, device, precision, nn_lrn=lrn == "nn", input_size=s.input_size
        )
        fmt = torch.contiguous_format if layout == "nchw" else None
        if data == "synthetic" or feeds is None:
            fmt_used = fmt or runtime.memory_format(device, precision)
            batches = workloads.synthetic_batches(model, s.batch, device, fmt_used)
        else:
            batches = feeds.batches(data, s.batch, model.input_size)
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


def ratios(results: dict, precision: str) -> None:
    """Add to each training row its ratio to the baseline and its share of the matmul ceiling,
    and the gain of the fused LRN over nn's in the paper's net trained in `precision`."""
    train = results["train"]
    base = train[0]["img_s"]
    ceiling = results["matmul_gflops"]
    for row in (r for r in train if "img_s" in r):
        row["x_baseline"] = row["img_s"] / base
        row["of_ceiling"] = row["gflops"] / ceiling[row["precision"]]
    by_label = {row["label"]: row for row in train}
    nn_row = by_label.get(f"alexnet {precision}, nn.LocalResponseNorm")
    fused = by_label.get(f"alexnet {precision}")
    if nn_row and fused:
        results["lrn_gain"] = fused["img_s"] / nn_row["img_s"]


def targets(results: dict, precision: str) -> list[dict]:
    """The speed targets (set for bf16 on an AMX machine), each with the value measured in
    `precision` (the machine's best) in this one run."""
    p = precision
    rows = {row["label"]: row for row in results["train"]}
    store = rows.get(f"alexnet {p}, store", {})
    infer = {(r["precision"], r["batch"]): r for r in results["infer"]}
    big = max(b for _, b in infer)
    checks = [
        (f"alexnet {p} training incl. store data, img/s", store.get("img_s"), ">=", 200),
        (f"alexnet {p} / same net with nn.LocalResponseNorm", results.get("lrn_gain"), ">=", 3.5),
        (f"alexnet {p} incl. store data / baseline", store.get("x_baseline"), ">=", 3.0),
        (f"LRN share of the alexnet {p} step", results.get("lrn_share"), "<=", 0.10),
        (f"inference {p} batch {big}, img/s", infer[(p, big)]["img_s"], ">=", 900),
        (f"inference {p} batch 1 latency, ms", infer[(p, 1)]["latency_ms"], "<=", 10),
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
    fast_bf16 = s.all_precisions or runtime.has_fast_bf16(cpu)
    precisions = tuple(kernels.DTYPES) if fast_bf16 else ("fp32",)  # bf16 emulated: not timed
    results["matmul_gflops"] = {
        p: kernels.matmul_gflops(cpu, p, s.matmul_n, s.repeats) for p in precisions
    }
    results["lrn"] = kernels.lrn_table(s.batch, s.repeats, precisions)
    with tempfile.TemporaryDirectory(prefix="alexnet-bench-") as tmp:
        feeds = Feeds(Path(tmp), s.store_images)
        results["train"] = train_rows(s, cpu, TRAIN_ROWS, feeds)
        crop = s.input_size or 224
        results["loader_img_s_per_core"] = feeds.per_core_img_s(crop, s.batch, s.loader_seconds)
    best = runtime.best_precision(cpu)
    model = workloads.build("alexnet", cpu, best, input_size=s.input_size)
    batches = workloads.synthetic_batches(model, s.batch, cpu, runtime.memory_format(cpu, best))
    results["lrn_share"], table = workloads.lrn_share(model, batches, cpu, best)
    if profile:
        results["profile"] = table
    results["infer"] = [
        workloads.infer_rate("alexnet", cpu, p, b, s.repeats, s.input_size) | {"precision": p}
        for b in s.infer_batches
        for p in precisions
    ]
    if torch.cuda.is_available():
        results["gpu"] = gpu_section(s)
    ratios(results, best)
    results["targets"] = targets(results, best)
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
        "train": train_rows(s, gpu, rows, None),
        "infer": [
            workloads.infer_rate("alexnet", gpu, p, b, s.repeats, s.input_size) | {"precision": p}
            for b in s.infer_batches
            for p in kernels.DTYPES
        ],
    }
