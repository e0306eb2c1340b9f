"""`alexnet prepare SRC OUT`: decode once, rescale + centre-crop (section 2), store per split."""

from __future__ import annotations

import argparse
import sys

from alexnet.commands.errors import user_errors
from alexnet.data.images import ImageDecodeError
from alexnet.data.prepare import prepare
from alexnet.data.sources import SourceError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src",
        help="fashion-mnist, cifar10, synthetic:N[:SIZE[:CLASSES]], an image folder "
        "(ROOT/<class>/* or ROOT/{train,val}/...), an IDX directory or a zip",
    )
    parser.add_argument("out", help="output directory; one store per split in OUT/<split>")
    parser.add_argument("--size", type=int, default=256, help="stored side (default 256)")
    parser.add_argument(
        "--keep-aspect", action="store_true", help="rescale the shorter side only, no crop"
    )
    parser.add_argument(
        "--warp",
        action="store_true",
        help="squeeze the whole image to SIZE x SIZE, aspect ignored (Caffe's ImageNet tools)",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    parser.add_argument(
        "--encoding",
        choices=("auto", "raw", "jpeg"),
        default="auto",
        help="raw uint8 (fastest to read) or JPEG q95 (5x smaller); auto: raw below 32 GiB",
    )
    parser.add_argument("--split", action="append", help="only this split (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


@user_errors("prepare")
def run(args: argparse.Namespace) -> int:
    try:
        summary = prepare(
            args.src,
            args.out,
            size=args.size,
            keep_aspect=args.keep_aspect,
            warp=args.warp,
            workers=args.workers,
            splits=args.split,
            encoding=args.encoding,
            quiet=args.quiet,
        )
    except (SourceError, ImageDecodeError, ValueError, FileNotFoundError) as exc:
        print(f"alexnet prepare: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"alexnet prepare: interrupted; {args.out} keeps only the splits already complete "
            "(run the same command again to finish)",
            file=sys.stderr,
        )
        return 130
    except OSError as exc:  # a full disk, an unwritable OUT: nothing partial is left
        where = exc.filename or args.out
        print(
            f"alexnet prepare: error: cannot write {where}: {exc.strerror or exc}", file=sys.stderr
        )
        return 2
    for name, counts in summary["splits"].items():
        reused = " (already complete, reused)" if counts.get("reused") else ""
        print(
            f"{name}: seen {counts['seen']}, stored {counts['stored']}, "
            f"rejected {counts['rejected']}, encoding {counts['encoding']}{reused}"
        )
    print(
        f"total: seen {summary['seen']}, stored {summary['stored']}, "
        f"rejected {summary['rejected']} in {summary['seconds']:.1f} s -> {args.out}"
    )
    if summary["rejected"]:
        print(f"rejected files and reasons: {args.out}/rejects.tsv")
    return 0
