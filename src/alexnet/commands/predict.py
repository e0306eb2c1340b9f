"""`alexnet predict`: top-k classes for any image files, with the weights' own preprocessing.

predict exit status: 0 when at least one file got a prediction, 1 when every file failed (or no
image was found), 2 for unusable weights or options. Each failed file gets an `error:` line on
stderr (a JSON error entry with --json) and the others are still predicted.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable

Run = Callable[[argparse.Namespace], int]


def user_errors(verb: str) -> Callable[[Run], Run]:
    """Bad input (a missing or foreign file, a wrong value) ends in one line naming it and exit
    status 2, not a traceback."""

    def wrap(fn: Run) -> Run:
        @functools.wraps(fn)
        def run(args: argparse.Namespace) -> int:
            try:
                return fn(args)
            except (ValueError, FileNotFoundError) as err:
                print(f"alexnet {verb}: error: {err}", file=sys.stderr)
                return 2

        return run

    return wrap


def add_common(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by predict and embed."""
    parser.add_argument(
        "weights",
        help="RUN_DIR, checkpoint .pt, weights .safetensors or a "
        "torchvision alexnet state dict .pth",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGE_OR_DIR",
        help="image files and/or directories (searched recursively)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Exit status: 0 if at least one file was predicted, 1 if every file failed, 2 if the "
        "weights cannot be loaded. Unreadable files get an 'error:' line on stderr (with --json "
        "also an entry {file, error})."
    )
    add_common(parser)
    parser.add_argument("--top", type=int, default=5, help="how many classes to list per image")
    parser.add_argument(
        "--ten-crop",
        action="store_true",
        help="average the softmax over the paper's ten patches (section 4.1)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")


@user_errors("predict")
def run(args: argparse.Namespace) -> int:
    from alexnet.infer.predict import expand_inputs, predict_files
    from alexnet.infer.weights import load_weights

    if args.top < 1 or args.batch_size < 1:
        raise SystemExit(
            f"error: --top and --batch-size must be >= 1 (got {args.top}, {args.batch_size})"
        )
    model, pre, meta = load_weights(args.weights, device=args.device)
    paths = expand_inputs(args.inputs)
    items = []
    for item in predict_files(
        model, pre, paths, top=args.top, ten_crop=args.ten_crop, batch_size=args.batch_size
    ):
        items.append(item)
        if item.error is not None:
            print(f"error: {item.error}", file=sys.stderr)
        elif not args.json:
            tops = "  ".join(f"{e['label']} {e['probability']:.3f}" for e in item.top)
            print(f"{item.file}: {tops}")
    if args.json:
        doc = {
            "weights": str(args.weights),
            "model_name": meta["model_name"],
            "ten_crop": args.ten_crop,
            "results": [i.to_json() for i in items],
        }
        print(json.dumps(doc, indent=2))
    if not paths:
        print(f"error: no image files found in {args.inputs}", file=sys.stderr)
    return 0 if any(i.error is None for i in items) else 1
