"""`alexnet release`: strip a checkpoint to weights + metadata, named by content hash."""

from __future__ import annotations

import argparse

from alexnet.commands.predict import user_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="RUN_DIR or checkpoint .pt")
    parser.add_argument("--out", required=True, help="output directory")


@user_errors("release")
def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from alexnet.infer.release import release

    path = release(args.checkpoint, args.out)
    print(path)
    source = Path(args.checkpoint)
    if source.is_dir():  # which weights, in the words train and evaluate use
        from alexnet.train.weights import find_checkpoint

        print(f"weights: {find_checkpoint(source).name} of {source}", file=sys.stderr)
    return 0
