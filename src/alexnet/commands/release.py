"""`alexnet release`: strip a checkpoint to weights + metadata, named by content hash."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alexnet.commands.errors import user_errors
from alexnet.infer.release import release
from alexnet.train.weights import find_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="RUN_DIR or checkpoint .pt")
    parser.add_argument("--out", required=True, help="output directory")


@user_errors("release")
def run(args: argparse.Namespace) -> int:
    path = release(args.checkpoint, args.out)
    print(path)
    source = Path(args.checkpoint)
    if source.is_dir():  # which weights, in the words train and evaluate use
        print(f"weights: {find_checkpoint(source).name} of {source}", file=sys.stderr)
    return 0
