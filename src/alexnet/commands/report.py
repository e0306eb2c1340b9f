"""`alexnet report RUN_DIR`: one self-contained HTML page (config, metrics, timings, figures).

The figures are drawn first when RUN_DIR/figures/figures.json is missing (or with --refresh)."""

from __future__ import annotations

import argparse
from pathlib import Path

from alexnet.commands.errors import user_errors
from alexnet.viz.figures import make_figures
from alexnet.viz.report import build_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run directory (alexnet train --out)")
    parser.add_argument("--data", help="prepared dir or source for the image figures")
    parser.add_argument("--out", help="output HTML (default RUN_DIR/report.html)")
    parser.add_argument("--refresh", action="store_true", help="redraw the figures first")


@user_errors("report")
def run(args: argparse.Namespace) -> int:
    if args.refresh or not (Path(args.run_dir) / "figures" / "figures.json").is_file():
        make_figures(args.run_dir, data=args.data)
    print(build_report(args.run_dir, out=args.out))
    return 0
