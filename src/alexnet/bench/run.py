"""`alexnet bench`: the package's training step and inference against the limit and baselines.

Every comparison is interleaved round by round (one call of each side per round, medians), so
that a shared machine's drift hits every side of a round alike: the matmul ceiling is one side
of each table, and each ratio (x naive, of ceiling, the layouts) is the median of per-round
ratios. The machine's load is recorded with the numbers.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from alexnet import runtime
from alexnet.allocator import loaded_allocator
from alexnet.bench import kernels, workloads
from alexnet.bench import loader as recipe
from alexnet.bench.timing import forward_flops, interleaved, median_ratio, train_flops
from alexnet.bench.workloads import repeat
from alexnet.data.photos import photo_source
from alexnet.models.lrn import lrn_backend

LAYOUTS = ("channels_last", "nchw")
BASELINES = {"naive": "naive nn.Sequential fp32 NCHW", "owt": "alexnet_owt fp32 NCHW"}
CEILING = "matmul"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one bench run: batch 128 (section 5), 5 interleaved rounds per table."""

    batch: int = 128
    repeats: int = 5  # rounds per table; batch-1 inference runs 3x as many (each is short)
    infer_batches: tuple[int, ...] = (1, 64)
    matmul_n: int = 4096
    store_images: int = 256  # photo JPEGs (and their prepared store) the data rows cycle over
    loader_seconds: float = 5.0  # the per-core loader measurement
    input_size: int | None = None  # None: each model's own (227 for the paper's net)
    # bf16 tables also where the hardware has no fast bf16 (there it is emulated, 10-50x slower)
    all_precisions: bool = False


# A smoke run: batch 2, 1 round, a 99-pixel input (pool5 is 2x2); the tables say so.
QUICK = Settings(
    batch=2,
    repeats=1,
    infer_batches=(1, 2),
    matmul_n=128,
    store_images=8,
    loader_seconds=0.2,
    input_size=99,
)


def machine() -> dict:
    """What the numbers were measured on."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.partition(":")[2].strip() for line in lines if line.startswith("model name")]
    flags = runtime.cpu_flags()
    return {
        "cpu": names[0] if names else platform.processor(),
        "cpu_kind": runtime.cpu_kind(),
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


def _ceiling(device: torch.device, precision: str, n: int) -> tuple[workloads.Step, int]:
    """An n x n x n matmul in `precision` (the most the matmul units deliver) and its FLOPs."""
    gen = torch.Generator(device=device).manual_seed(0)
    dtype = kernels.DTYPES[precision]
    a, b = (torch.randn(n, n, generator=gen, device=device).to(dtype) for _ in range(2))
    return (lambda: a @ b), 2 * n**3


def summarise(
    times: dict[str, list[float]], flops: dict[str, int], images: dict[str, int]
) -> tuple[list[dict], float]:
    """Rows of one interleaved table (every side but the ceiling) and the ceiling's GFLOP/s:
    medians of img/s and GFLOP/s, and per-round ratios to the ceiling and the baselines."""
    ceiling = times[CEILING]
    rows = []
    for name, t in times.items():
        if name == CEILING:
            continue
        step_s = statistics.median(t)
        rows.append(
            {
                "label": name,
                "step_s": step_s,
                "img_s": images[name] / step_s,
                "gflops": flops[name] / step_s / 1e9,
                # (flops / t) / (ceiling flops / ceiling t), round by round
                "of_ceiling": flops[name] / flops[CEILING] * median_ratio(ceiling, t),
                **{f"x_{b}": median_ratio(times[b], t) for b in BASELINES if b in times},
            }
        )
    return rows, flops[CEILING] / statistics.median(ceiling) / 1e9


def layout_verdict(times: dict[str, list[float]], chosen: runtime.Layout, prefix: str) -> dict:
    """The rule's layout against this table's measurement (channels_last over NCHW, paired)."""
    cl, nchw = times[f"{prefix} channels_last"], times[f"{prefix} nchw"]
    speedup = median_ratio(nchw, cl)  # > 1: channels_last faster
    wins = sum(a < b for a, b in zip(cl, nchw, strict=True))
    return {
        "chosen": chosen.name,
        "reason": chosen.reason,
        "channels_last_x_nchw": speedup,
        "channels_last_wins": f"{wins}/{len(cl)}",
        "measured_faster": "channels_last" if speedup >= 1 else "nchw",
    }


def train_table(s: Settings, device: torch.device, precision: str, *, nn_lrn: bool) -> dict:
    """The Trainer's own step in both layouts (and with nn's LRN), the baselines and the
    ceiling, interleaved; `nn_lrn` adds the row that measures the fused LRN's gain."""
    chosen = runtime.choose_layout(device, precision, "train")
    probe = workloads.synthetic_batch(workloads.baseline("naive", s.input_size), s.batch)
    sides, flops = {}, {}

    def add_trainer(label: str, layout: str, nn: bool = False) -> None:
        model = workloads.build(
            "alexnet", device, precision, layout, nn_lrn=nn, input_size=s.input_size
        )
        trainer = workloads.trainer(model, device, precision, layout, probe)
        sides[label] = workloads.trainer_step(trainer, workloads.repeat(probe))
        flops[label] = train_flops(model, probe[0][:1].to(device)) * s.batch

    for layout in LAYOUTS:
        add_trainer(f"alexnet {precision} {layout}", layout)
    if nn_lrn:
        add_trainer(nn_lrn_label(precision, chosen.name), chosen.name, True)
    for key, name in (("naive", "naive"), ("owt", "alexnet_owt")):
        model = workloads.baseline(name, s.input_size).to(device)
        batch = workloads.synthetic_batch(model, s.batch)
        batch = (batch[0].to(device), batch[1].to(device))
        sides[key] = workloads.plain_step(model, workloads.repeat(batch))
        flops[key] = train_flops(model, batch[0][:1]) * s.batch
    sides[CEILING], flops[CEILING] = _ceiling(device, precision, s.matmul_n)
    times = interleaved(sides, rounds=s.repeats, device=device)
    rows, ceiling = summarise(times, flops, dict.fromkeys(sides, s.batch))
    for row in rows:
        row["label"] = BASELINES.get(row["label"], row["label"])
    table = {
        "precision": precision,
        "batch": s.batch,
        "ceiling_gflops": ceiling,
        "rows": rows,
        "layout": layout_verdict(times, chosen, f"alexnet {precision}"),
    }
    if nn_lrn:  # the fused kernel's gain, paired round by round
        fused = times[f"alexnet {precision} {chosen.name}"]
        table["lrn_gain"] = median_ratio(times[nn_lrn_label(precision, chosen.name)], fused)
    return table


def nn_lrn_label(precision: str, layout: str) -> str:
    """The label of the training row with nn's LRN in place of the fused one."""
    return f"alexnet {precision} {layout}, nn.LocalResponseNorm"


def infer_table(s: Settings, device: torch.device, precision: str, batch: int) -> dict:
    """Inference of the paper's net prepared by alexnet.runtime in both layouts, the
    baselines (fp32 NCHW) and the ceiling, interleaved; batch 1 gets 3x the rounds."""
    chosen = runtime.choose_layout(device, precision, "infer")
    sides, flops = {}, {}
    for layout in LAYOUTS:
        model, dtype = workloads.inference_model("alexnet", device, precision, layout, s.input_size)
        x = workloads.synthetic_batch(model, batch)[0].to(device=device, dtype=dtype)
        label = f"alexnet {precision} {layout}"
        x = x.contiguous(memory_format=runtime.Layout(layout, "").memory_format)
        sides[label] = workloads.infer_step(model, x)
        flops[label] = forward_flops(model, x[:1])
    for key, name in (("naive", "naive"), ("owt", "alexnet_owt")):
        model = workloads.baseline(name, s.input_size).eval().to(device)
        x = workloads.synthetic_batch(model, batch)[0].to(device)
        sides[key], flops[key] = workloads.infer_step(model, x), forward_flops(model, x[:1])
    flops = {k: v * batch for k, v in flops.items()}
    sides[CEILING], flops[CEILING] = _ceiling(device, precision, s.matmul_n)
    rounds = s.repeats * (3 if batch == 1 else 1)
    times = interleaved(sides, rounds=rounds, warmup=2, device=device)
    rows, ceiling = summarise(times, flops, dict.fromkeys(sides, batch))
    for row in rows:
        row["label"] = BASELINES.get(row["label"], row["label"])
        row["latency_ms"] = 1e3 * row["step_s"]
    return {
        "precision": precision,
        "batch": batch,
        "ceiling_gflops": ceiling,
        "rows": rows,
        "layout": layout_verdict(times, chosen, f"alexnet {precision}"),
    }


def data_table(s: Settings, device: torch.device, precision: str, root: Path) -> dict:
    """The Trainer's step fed in-process (workers 0, `alexnet train`'s default) by synthetic
    tensors, by the prepared store with the paper's augmentation, and by the pytorch/examples
    JPEG recipe, interleaved; and each loader alone per core, interleaved batch by batch."""
    data = recipe.build_benchmark_data(root, s.store_images)
    model = workloads.build("alexnet", device, precision, input_size=s.input_size)
    crop, probe = model.input_size, workloads.synthetic_batch(model, s.batch)
    trainer = workloads.trainer(model, device, precision, "auto", probe)
    feeds: dict[str, Iterator] = {
        "synthetic tensors": workloads.repeat(probe),
        "prepared store + paper augmentation": recipe.store_feed(
            data["stores"]["raw"], s.batch, 0, crop
        ),
        "JPEG decode + RandomResizedCrop": recipe.examples_feed(data["files"], s.batch, 0, crop),
    }
    sides = {name: workloads.trainer_step(trainer, feed) for name, feed in feeds.items()}
    times = interleaved(sides, rounds=s.repeats)
    base = times["synthetic tensors"]
    rows = [
        {"label": k, "img_s": s.batch / statistics.median(t), "of_synthetic": median_ratio(base, t)}
        for k, t in times.items()
    ]
    per_core = recipe.measure_side_by_side(
        {
            "store": recipe.store_runner(data["stores"]["raw"], crop=crop, batch_size=s.batch),
            "jpeg": recipe.examples_runner(data["files"], crop=crop, batch_size=s.batch),
        },
        s.loader_seconds,
    )
    return {
        "precision": precision,
        "rows": rows,
        "loader_img_s_per_core": {k: v["img_per_s"] for k, v in per_core.items()},
    }


def precisions(s: Settings, device: torch.device) -> tuple[str, ...]:
    """fp32, and bf16 where it is fast (or asked for): emulated bf16 is not worth timing."""
    fast = s.all_precisions or runtime.has_fast_bf16(device)
    return tuple(kernels.DTYPES) if fast else ("fp32",)


def _progress(what: str) -> None:
    """A line on stderr as each table starts: a full run takes many minutes on two cores."""
    print(f"bench: {what}", file=sys.stderr, flush=True)


def run_bench(s: Settings, *, profile: bool = False) -> dict:
    """Every CPU measurement (and the GPU tables where CUDA is present), in one process."""
    cpu = torch.device("cpu")
    best = runtime.best_precision(cpu)
    results: dict = {"machine": machine(), "settings": dataclasses.asdict(s)}
    _progress("LRN kernel")
    results["lrn"] = kernels.lrn_table(s.batch, s.repeats, precisions(s, cpu))
    results["train"] = []
    for p in precisions(s, cpu):
        _progress(f"training step, {p}")
        results["train"].append(train_table(s, cpu, p, nn_lrn=p == best))
    _progress("training step fed by the loaders")
    with tempfile.TemporaryDirectory(prefix="alexnet-bench-") as tmp:
        results["data"] = data_table(s, cpu, best, Path(tmp))
    results["infer"] = []
    for b in s.infer_batches:
        for p in precisions(s, cpu):
            _progress(f"inference, {p}, batch {b}")
            results["infer"].append(infer_table(s, cpu, p, b))
    # The profile of the Trainer's step in fp32 (the bar's precision) and in the best one.
    results["step_shares"], profiles = {}, {}
    for p in dict.fromkeys(("fp32", best) if profile else (best,)):
        _progress(f"profile of one training step, {p}")
        model = workloads.build("alexnet", cpu, p, input_size=s.input_size)
        probe = workloads.synthetic_batch(model, s.batch)
        trainer = workloads.trainer(model, cpu, p, "auto", probe)
        step = workloads.trainer_step(trainer, repeat(probe))
        results["step_shares"][p], profiles[p] = workloads.profile_step(step)
    results["lrn_share"] = results["step_shares"][best]["LRN"]
    if profile:
        results["profile"] = profiles
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        results["gpu"] = {
            "train": [train_table(s, gpu, p, nn_lrn=False) for p in kernels.DTYPES],
            "infer": [infer_table(s, gpu, p, b) for b in s.infer_batches for p in kernels.DTYPES],
        }
    results["targets"] = targets(results, best)
    results["machine"]["load_avg_end"] = list(os.getloadavg())
    return results


def _row(table: dict | None, label: str) -> dict:
    return next((r for r in (table or {}).get("rows", []) if r["label"] == label), {})


def targets(results: dict, best: str) -> list[dict]:
    """Issue 18's bar for the fp32 training step, and the speed targets set for bf16 on a CPU
    with AMX, each with the value measured in this one run."""
    train = {t["precision"]: t for t in results["train"]}
    infer = {(t["precision"], t["batch"]): t for t in results["infer"]}
    fp32 = train.get("fp32")
    fp32_row = _row(fp32, f"alexnet fp32 {fp32['layout']['chosen']}") if fp32 else {}
    lrn_gain = train[best].get("lrn_gain") if best in train else None
    store = _row(results.get("data"), "prepared store + paper augmentation")
    big = max(b for _, b in infer)
    b1, bbig = infer.get((best, 1)), infer.get((best, big))
    checks = [
        (
            "alexnet fp32 training step, of the matmul ceiling",
            fp32_row.get("of_ceiling"),
            ">=",
            0.75,
        ),
        ("alexnet fp32 training step / naive net", fp32_row.get("x_naive"), ">=", 1.5),
        (f"alexnet {best} training incl. store data, img/s", store.get("img_s"), ">=", 200),
        (f"alexnet {best} / same net with nn.LocalResponseNorm", lrn_gain, ">=", 3.5),
        (f"LRN share of the alexnet {best} step", results.get("lrn_share"), "<=", 0.10),
        (
            f"inference {best} batch {big}, img/s",
            _row(bbig, f"alexnet {best} {bbig['layout']['chosen']}").get("img_s") if bbig else None,
            ">=",
            900,
        ),
        (
            f"inference {best} batch 1 latency, ms",
            _row(b1, f"alexnet {best} {b1['layout']['chosen']}").get("latency_ms") if b1 else None,
            "<=",
            10,
        ),
    ]
    out = []
    for name, value, op, goal in checks:
        met = None if value is None else (value >= goal if op == ">=" else value <= goal)
        out.append({"target": name, "value": value, "goal": f"{op} {goal}", "met": met})
    return out
