"""`alexnet embed`: fc7 features (paper figure 4, right) of image files, for retrieval/transfer.

Writes OUT (float32 (N, D) .npy, one row per readable file) and OUT with suffix .files.txt (the
files, one per line, in row order). Unreadable files are reported on stderr and left out.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from alexnet.commands.predict import add_common, inference_net, user_errors
from alexnet.fileio import atomic_write_bytes, atomic_write_text, check_output_dir
from alexnet.infer.predict import embed_files, expand_inputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--out", required=True, help="output .npy (features, one row per file)")


@user_errors("embed")
def run(args: argparse.Namespace) -> int:
    """fc7 features of every readable file, as float32 (N, D) .npy plus a file list beside it."""
    out = npy_path(Path(args.out))
    check_output_dir(out)
    model, pre, _ = inference_net(args)
    ok = []
    for item in embed_files(model, pre, expand_inputs(args.inputs), batch_size=args.batch_size):
        if item.error is not None:
            print(f"error: {item.error}", file=sys.stderr)
        else:
            ok.append(item)
    if not ok:
        print("error: no file could be embedded", file=sys.stderr)
        return 1
    buffer = io.BytesIO()
    np.save(buffer, np.stack([i.features for i in ok]).astype(np.float32))
    atomic_write_bytes(out, buffer.getvalue())
    files_path = files_list_path(out)
    atomic_write_text(files_path, "".join(f"{i.file}\n" for i in ok))
    print(f"wrote {out} ({len(ok)} x {ok[0].features.shape[0]}) and {files_path}")
    return 0


def npy_path(out: Path) -> Path:
    """The file `np.save(out)` writes: `out`, with `.npy` added unless it ends so."""
    return out if out.suffix == ".npy" else out.with_name(out.name + ".npy")


def files_list_path(out: Path) -> Path:
    """Where `embed --out feats.npy` lists its files, row order: feats.files.txt."""
    return out.with_suffix(".files.txt")
