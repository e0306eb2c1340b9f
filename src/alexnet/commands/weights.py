"""`alexnet weights`: the registry of published weights; get them once into the cache.

  alexnet weights list [--json]          name, model, published top-1/top-5, size, cached or not
  alexnet weights pull NAME [--url URL]  download (progress bar), check the hash, convert, cache
  alexnet weights import FILE [--name N] the same for a file you already have (no internet)

Every verb that takes weights (predict, embed, evaluate, export, figures, ...) also takes a
registry name. $ALEXNET_OFFLINE=1 forbids downloads; $ALEXNET_WEIGHTS_MIRROR (a base URL)
fetches each file by name from a mirror; $ALEXNET_WEIGHTS_REGISTRY adds entries (a YAML file
shaped like the shipped models/pretrained/weights.yaml).
"""

from __future__ import annotations

import argparse
import json
import sys

from alexnet.commands.errors import user_errors
from alexnet.models.pretrained.registry import all_weights, get_weights
from alexnet.models.pretrained.store import import_file, is_cached, pull


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="the registry's entries and whether each is cached")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    pull = sub.add_parser("pull", help="download, check, convert and cache named weights")
    pull.add_argument("name", help="a registry name (see `alexnet weights list`)")
    pull.add_argument("--url", help="fetch from this URL instead (a mirror); the hash must match")
    pull.add_argument("--quiet", action="store_true", help="no progress bar")
    imp = sub.add_parser("import", help="check, convert and cache a file you already have")
    imp.add_argument("file", help="the publisher's file (.pth, .caffemodel, .onnx)")
    imp.add_argument("--name", help="its registry name (default: found by the file's hash)")


@user_errors("weights")
def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        rows = [
            {
                "name": e.name,
                "model": e.model,
                "model_options": e.model_options,
                "top1": e.published.get("top1"),
                "top5": e.published.get("top5"),
                "measured": e.published.get("how", ""),
                "size_mb": e.size_mb,
                "licence": e.licence,
                "url": e.url,
                "cached": is_cached(e),
                "description": e.description,
            }
            for e in all_weights().values()
        ]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"{'name':<16} {'model':<12} {'top-1':>6} {'top-5':>6} {'MiB':>6}  cached")
        for r in rows:
            size = f"{r['size_mb']:.0f}" if r["size_mb"] else "?"
            print(
                f"{r['name']:<16} {r['model']:<12} {r['top1']:>6} {r['top5']:>6} {size:>6}  "
                f"{'yes' if r['cached'] else 'no'}"
            )
        print("published ILSVRC-2012 validation accuracy (%), as each publisher measured it")
        return 0
    if args.action == "pull":
        entry = get_weights(args.name)
        path = pull(entry, url=args.url, progress=not args.quiet and sys.stderr.isatty())
    else:
        entry, path = import_file(args.file, args.name)
    print(f"{entry.name}: {entry.model} {entry.model_options or ''} cached as {path}")
    print(f"use it: alexnet predict {entry.name} PHOTO.jpg")
    return 0
