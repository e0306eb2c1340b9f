"""`alexnet experiment NAME --out DIR`: reproduce one of the paper's claims (docs/results.md).

NAME is fig1, lrn, pooling, dropout, colour or towers; each writes DIR/result.json, a figure and
DIR/log.txt. `--smoke` runs a few steps on a tiny synthetic set (CI keeps the code alive so).
`alexnet experiment page [RESULT_DIR ...]` copies finished results into docs/results/ and
docs/figures/ and rewrites docs/results.md from every published result.json.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from alexnet.commands.errors import user_errors
from alexnet.experiments import EXPERIMENTS, ablations, fig1, lrn, towers
from alexnet.experiments.common import Context
from alexnet.experiments.results_page import publish


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, every option spelled out (whatever argv was)."""
    parts = ["alexnet", "experiment", args.name]
    for key in (
        "out",
        "seeds",
        "epochs",
        "data",
        "jobs",
        "threads",
        "workers",
        "lr",
        "lrs",
        "sweep_epochs",
        "train_per_class",
        "val_per_class",
        "runs",
        "precision",
        "minutes",
    ):
        value = getattr(args, key)
        if key == "data" and args.smoke:
            continue  # a smoke run uses its synthetic stand-in, whatever --data says
        if value is not None:
            text = ",".join(f"{v:g}" for v in value) if key == "lrs" else str(value)
            parts += [f"--{key.replace('_', '-')}", text]
    return shlex.join([*parts, *(["--smoke"] if args.smoke else [])])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=[*EXPERIMENTS, "page"], help="experiment, or page")
    parser.add_argument("results", nargs="*", help="page: result dirs to publish first")
    parser.add_argument("--out", help="output directory (experiments)")
    parser.add_argument("--smoke", action="store_true", help="a few steps on synthetic data")
    parser.add_argument("--seeds", type=int, default=3, help="runs per arm (default 3)")
    parser.add_argument(
        "--epochs",
        type=int,
        help="epochs per run (fig1: the cap); the same --out with more epochs continues each "
        "run where it stopped (lrn's constant lr makes the longer run the shorter one carried on)",
    )
    parser.add_argument("--data", default="cifar10", help="data source spec (default cifar10)")
    parser.add_argument("--jobs", type=int, default=1, help="training runs in parallel")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run")
    parser.add_argument(
        "--workers", type=int, default=0, help="loader processes per run (0: load in the run)"
    )
    parser.add_argument("--lr", type=float, help="learning rate (all but fig1)")
    parser.add_argument("--lrs", type=_floats, help="fig1: the sweep's rates, comma-separated")
    parser.add_argument("--sweep-epochs", type=int, help="fig1: epochs per sweep run")
    parser.add_argument(
        "--minutes", type=float, help="time budget: no epoch starts after it (runs cut short)"
    )
    parser.add_argument(
        "--train-per-class",
        type=int,
        help="dropout, colour, towers: the overfitting regime, this many training images per "
        "class (stratified, seeded), a val split measured every epoch, the full test set",
    )
    parser.add_argument(
        "--val-per-class", type=int, help="with --train-per-class: val images per class (100)"
    )
    parser.add_argument(
        "--runs", help="with --train-per-class: run directories shared between experiments"
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "auto"],
        help="lrn, pooling, dropout, colour, towers: training precision (default fp32)",
    )
    parser.add_argument("--docs", default="docs", help="page: the docs directory")


@user_errors("experiment")
def run(args: argparse.Namespace) -> int:
    if args.name == "page":
        try:
            path = publish([Path(p) for p in args.results], Path(args.docs))
        except (ValueError, OSError) as err:  # a bad or missing result, an unwritable docs
            print(f"alexnet experiment page: error: {err}", file=sys.stderr)
            return 2
        print(f"wrote {path}")
        return 0
    if not args.out:
        raise ValueError("--out DIR is required")
    options = {
        "lr": args.lr,
        "lrs": args.lrs,
        "sweep_epochs": args.sweep_epochs,
        "train_per_class": args.train_per_class,
        "val_per_class": args.val_per_class,
        "runs": args.runs,
        "precision": args.precision,
    }
    ctx = Context(
        name=args.name,
        out=Path(args.out),
        smoke=args.smoke,
        seeds=args.seeds,
        epochs=args.epochs,
        data=args.data,
        jobs=args.jobs,
        threads=args.threads,
        workers=args.workers,
        options={k: v for k, v in options.items() if v is not None},
        command=command_line(args),
    )
    if args.minutes:
        ctx.deadline = ctx.started + 60 * args.minutes  # fmt: skip
    for key in ("seeds", "jobs"):
        if getattr(ctx, key) < 1:
            raise ValueError(f"--{key} must be >= 1")
    for key in ("threads", "workers"):
        if getattr(ctx, key) < 0:
            raise ValueError(f"--{key} must be >= 0")
    for key in ("train_per_class", "val_per_class"):
        if key in ctx.options and ctx.options[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be >= 1")
    if "train_per_class" not in ctx.options and ctx.options.keys() & {"val_per_class", "runs"}:
        raise ValueError("--val-per-class and --runs go with --train-per-class")
    ctx.log(f"{ctx.command}")
    if ctx.smoke:
        ctx.log(ctx.smoke_text(""))
    modules = {"fig1": fig1, "lrn": lrn, "ablations": ablations, "towers": towers}
    modules[EXPERIMENTS[args.name]].run(ctx)
    return 0
