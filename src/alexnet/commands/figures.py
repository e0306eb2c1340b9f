"""`alexnet figures RUN_DIR`: training curves, conv1 kernels (figure 3) with their colour
specificity, top-5 predictions and fc7 nearest neighbours (figure 4) as PNG files."""

from __future__ import annotations

import argparse

from alexnet.commands.predict import user_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run directory (alexnet train --out)")
    parser.add_argument("--data", help="prepared dir or source (default: the run's own data)")
    parser.add_argument("--out", help="output directory (default RUN_DIR/figures)")
    parser.add_argument("--count", type=int, default=8, help="test images with predictions")
    parser.add_argument("--queries", type=int, default=4, help="query images for neighbours")
    parser.add_argument(
        "--index-size",
        type=int,
        default=1000,
        help="training images in the fc7 index (a fixed-seed sample)",
    )


@user_errors("figures")
def run(args: argparse.Namespace) -> int:
    from alexnet.viz.figures import make_figures

    manifest = make_figures(
        args.run_dir,
        data=args.data,
        out=args.out,
        count=args.count,
        queries=args.queries,
        index_size=args.index_size,
    )
    for key in ("curves", "kernels", "predictions", "neighbours"):
        if key in manifest:
            print(f"wrote {manifest[key]['file']}")
    if "tower_mean" in manifest["kernels"]:
        means = ", ".join(f"{m:.3f}" for m in manifest["kernels"]["tower_mean"])
        print(f"conv1 colour specificity, mean per tower: {means} (random kernels: 0.667)")
    for note in manifest["skipped"]:
        print(f"note: {note}")
    return 0
