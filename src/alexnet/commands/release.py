"""`alexnet release`: strip a checkpoint to weights + metadata, named by content hash."""

from __future__ import annotations

import argparse

from alexnet.commands.predict import user_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="RUN_DIR or checkpoint .pt")
    parser.add_argument("--out", required=True, help="output directory")


@user_errors("release")
def run(args: argparse.Namespace) -> int:
    from alexnet.infer.release import release

    path = release(args.checkpoint, args.out)
    print(path)
    return 0
