#!/usr/bin/env python3
"""What one CUDA GPU gives the paper's net, in under 10 minutes: training img/s fed by the
prepared store against torchvision's layout fed by the pytorch/examples pipeline, the loader
workers that keep it fed, inference, DDP and towers smoke runs, and the paper's 90 ImageNet
epochs projected on one GPU and on eight (the stages: alexnet.bench.gpu).

    PYTHONPATH=src python scripts/bench_gpu.py --out OUT            # on a CUDA machine
    PYTHONPATH=src python scripts/bench_gpu.py --out OUT --device cpu --tiny   # the logic, fast

OUT/result.json holds every figure; a table is printed. The photos, the prepared store and the
smoke runs' directories live in a scratch directory (--scratch, default a temporary one removed
at the end), never in OUT: OUT stays small enough to copy back from a lent machine.
Exit status 0, 1 where a stage failed (result.json says which and why), 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from alexnet.bench.gpu import (
    SCALING_EFFICIENCY,
    STAGE_SHARES,
    TINY,
    Sizes,
    resolve_device,
    run_bench,
)
from alexnet.commands.errors import error_line
from alexnet.fileio import atomic_write_text, check_output_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_gpu.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="folder for result.json")
    parser.add_argument("--scratch", help="folder for the data and runs (default: a temporary one)")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: the logic in seconds")
    parser.add_argument(
        "--budget",
        type=float,
        default=float(sum(STAGE_SHARES.values())),
        help="seconds for all stages together (default %(default).0f), shared as alexnet.bench.gpu"
        ".STAGE_SHARES",
    )
    parser.add_argument("--batch-size", type=int, help="training batch (default 256; paper: 128)")
    parser.add_argument("--images", type=int, help="photo JPEGs to prepare (default 3000)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), help="default: the device's best")
    parser.add_argument(
        "--scaling-efficiency",
        type=float,
        default=SCALING_EFFICIENCY,
        help="assumed fraction of linear scaling on eight GPUs (default %(default)s)",
    )
    return parser.parse_args(argv)


def sizes_for(args: argparse.Namespace) -> Sizes:
    sizes = TINY if args.tiny else Sizes()
    for name in ("batch_size", "images"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
            sizes = dataclasses.replace(sizes, **{name: value})
    return sizes


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(result: dict[str, Any]) -> str:
    """The result as a short table (result.json holds every number)."""
    m = result["machine"]
    lines = [
        f"{m.get('gpu', m['device'])} | torch {m['torch']} | CUDA {m['cuda']} | {m['cpus']} CPUs"
        f" | {m['precision']} {m['memory_format']} | examples: {m.get('examples_pipeline')}"
    ]
    for name, stage in result["stages"].items():
        lines.append(
            f"  stage {name:<9} {stage['status']:<6} {stage['seconds']:6.1f} s of "
            f"{stage['budget_s']:.0f}" + (f"  {stage['error']}" if "error" in stage else "")
        )
    if "train" in result:
        t = result["train"]
        lines.append(f"training img/s, {len(t['rounds'])} rounds (median), {t['workers']} workers")
        for side, rate in t["median_img_per_s"].items():
            lines.append(f"  {side:<24} {rate:10.0f}")
        lines.append(
            f"  store/synthetic {t['store_over_synthetic']:.2f}, examples/synthetic "
            f"{t['examples_over_synthetic']:.2f}, alexnet+store / owt+examples "
            f"{t['paper_over_examples']:.2f}x"
        )
    for name, row in result.get("inference", {}).items():
        lines.append(
            f"inference {name:<12} batch 1 {row['batch1_ms']:.2f} ms, batch {row['batch']} "
            f"{row['img_per_s']:.0f} img/s"
        )
    for feed, sweep in result.get("workers", {}).items():
        points = ", ".join(f"{p['workers']}: {p['img_per_s']:.0f}" for p in sweep["points"])
        lines.append(f"workers {feed:<8} {points} img/s -> {sweep['enough']} ({sweep['stopped']})")
    if "ddp" in result:
        d, r = result["ddp"]["in_process"], result["ddp"]["torchrun"]
        lines.append(
            f"ddp {d['backend']} {d['nccl'] or ''}: DDP/plain {d['ddp_over_plain']:.2f}; torchrun "
            f"smoke rc {r['rc']} in {r['seconds']:.0f} s, {_fmt(r['img_per_s'])} img/s"
        )
    if "towers" in result:
        r = result["towers"]
        lines.append(
            f"towers smoke rc {r['rc']} in {r['seconds']:.0f} s, {_fmt(r['img_per_s'])} img/s"
        )
    p = result.get("projection")
    if p:
        one, eight = p["one_gpu"], p["eight_gpus"]
        lines.append(
            f"90 ImageNet epochs: 1 GPU {one['hours']:.1f} h ({one['days']:.2f} days); 8 GPUs "
            f"{eight['hours']:.1f} h at {eight['scaling_efficiency']:.0%} scaling; paper: "
            f"{p['paper']}"
        )
        if "loader_workers_for_eight" in p:
            lines.append(f"  eight GPUs need about {p['loader_workers_for_eight']} loader workers")
    lines.append(f"total {result['total_seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        out = Path(args.out)
        sizes = sizes_for(args)
        resolve_device(args.device)  # a bad --device fails before anything is written
        out.mkdir(parents=True, exist_ok=True)
        check_output_dir(out / "result.json")  # before the minutes of measuring, not after
        with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
            result = run_bench(
                Path(scratch), device=args.device, sizes=sizes, budget_s=args.budget,
                precision=args.precision, efficiency=args.scaling_efficiency,
            )  # fmt: skip
        result["command"] = ["scripts/bench_gpu.py", *(sys.argv[1:] if argv is None else argv)]
        atomic_write_text(out / "result.json", json.dumps(result, indent=1) + "\n")
    except (ValueError, OSError) as err:
        print(f"bench_gpu.py: error: {error_line(err)}", file=sys.stderr)
        return 2
    print(format_table(result))
    print(f"wrote {out / 'result.json'}")
    return 1 if any(s["status"] != "ok" for s in result["stages"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
