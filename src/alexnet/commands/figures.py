"""`alexnet figures WEIGHTS`: conv1 kernels (figure 3) with each tower's colour specificity,
training curves (for a run), and top-5 predictions and fc7 nearest neighbours (figure 4) on a
run's prepared data or on any folder of images (`--images DIR`), as PNG files."""

from __future__ import annotations

import argparse

from alexnet.commands.errors import user_errors
from alexnet.viz.figures import make_figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "weights",
        metavar="WEIGHTS",
        help="a run directory (alexnet train --out), a registry name (alexnet weights list), "
        "checkpoint .pt, weights .safetensors or a torchvision alexnet .pth",
    )
    parser.add_argument(
        "--images",
        metavar="DIR",
        help="a folder of image files (searched recursively): figure 4 on these images "
        "(predictions; fc7 neighbours among them)",
    )
    parser.add_argument(
        "--data", help="prepared dir or source for figure 4 (default: a run's own data)"
    )
    parser.add_argument(
        "--out",
        help="output directory (default RUN_DIR/figures for a run, ./figures-<stem> for a file "
        "or ./figures-<name> for a registry name)",
    )
    parser.add_argument("--count", type=int, default=8, help="images shown with predictions")
    parser.add_argument("--queries", type=int, default=4, help="query images for neighbours")
    parser.add_argument(
        "--index-size",
        type=int,
        default=1000,
        help="with --data: training images in the fc7 index (a fixed-seed sample)",
    )


@user_errors("figures")
def run(args: argparse.Namespace) -> int:
    manifest = make_figures(
        args.weights,
        data=args.data,
        images=args.images,
        out=args.out,
        count=args.count,
        queries=args.queries,
        index_size=args.index_size,
    )
    print(f"figures of {manifest['weights']} ({manifest['model_name']}) in {manifest['out']}")
    for key in ("curves", "kernels", "predictions", "neighbours"):
        if key in manifest:
            print(f"wrote {manifest[key]['file']}")
    kern = manifest["kernels"]
    if "per_tower" in kern:
        print("conv1 colour specificity (energy outside R=G=B; grey 0, random kernels 0.667):")
        for t, s in enumerate(kern["per_tower"]):
            name = f"tower {t + 1}" if kern["towers"] > 1 else "all kernels"
            print(
                f"  {name} ({s['kernels']} kernels): mean {s['mean']:.3f}, median "
                f"{s['median']:.3f}, {s['above_half']:.0%} above {kern['threshold']}"
            )
    if "neighbours" in manifest:
        print(f"neighbours by {manifest['neighbours']['distance']}")
    for note in manifest["skipped"]:
        print(f"note: {note}")
    return 0
