"""`alexnet anomaly fit|score|eval`: how unusual images are, against a bank of normal ones.

  fit WEIGHTS IMAGE_OR_DIR... --out bank.npz   pooled conv features of normal images
  score BANK IMAGE_OR_DIR... [--json]           k-NN distance of each image (higher: stranger)
  eval WEIGHTS --anomaly-class C [--data D]     AUROC with class C of D held out as the anomaly

The bank records the weights it was made with; `score` loads those (or --weights).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from torch import nn

from alexnet.commands.errors import user_errors
from alexnet.infer.anomaly import Bank, held_out_class_auroc
from alexnet.infer.features import pooled_conv
from alexnet.infer.predict import Item, embed_files, expand_inputs
from alexnet.train.weights import load_weights


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fit = sub.add_parser("fit", help="build a memory bank from images of normal things")
    fit.add_argument("weights", help="RUN_DIR, checkpoint .pt or weights .safetensors")
    fit.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    fit.add_argument("--out", required=True, help="bank file (.npz)")
    fit.add_argument("--k", type=int, default=5, help="neighbours averaged in the score")
    score = sub.add_parser("score", help="score images against a bank")
    score.add_argument("bank", help="bank file from `anomaly fit`")
    score.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    score.add_argument("--weights", help="use these weights instead of the bank's own")
    score.add_argument("--json", action="store_true", help="print one JSON document")
    ev = sub.add_parser("eval", help="AUROC with one class held out as the anomaly")
    ev.add_argument("weights", help="RUN_DIR, checkpoint .pt or weights .safetensors")
    ev.add_argument("--anomaly-class", required=True, help="class held out: its index or its name")
    ev.add_argument("--data", help="prepared dir or source (default: the run's own data)")
    ev.add_argument("--k", type=int, default=5)
    ev.add_argument("--max-train", type=int, default=5000, help="bank size (a seeded sample)")
    ev.add_argument("--max-test", type=int, default=2000, help="test images (a seeded sample)")
    for p in (fit, score, ev):
        p.add_argument("--batch-size", type=int, default=64)


@user_errors("anomaly")
def run(args: argparse.Namespace) -> int:
    return {"fit": _fit, "score": _score, "eval": _eval}[args.action](args)


def _features(weights: str, inputs: list[str], batch_size: int) -> tuple[list[Item], nn.Module]:
    model, pre, _ = load_weights(weights)
    items = list(
        embed_files(model, pre, expand_inputs(inputs), batch_size=batch_size, fn=pooled_conv)
    )
    for item in items:
        if item.error is not None:
            print(f"error: {item.error}", file=sys.stderr)
    return items, model


def _fit(args: argparse.Namespace) -> int:
    items, model = _features(args.weights, args.inputs, args.batch_size)
    ok = [i for i in items if i.error is None]
    if not ok:
        print("error: no image could be read: the bank would be empty", file=sys.stderr)
        return 1
    meta = {
        "weights": str(args.weights),
        "model_name": model.model_name,
        "files": [i.file for i in ok],
    }
    bank = Bank(np.stack([i.features for i in ok]).astype(np.float32), args.k, meta)
    print(f"wrote {bank.save(args.out)} ({len(ok)} images, {bank.features.shape[1]}-d features)")
    return 0


def _score(args: argparse.Namespace) -> int:
    bank = Bank.load(args.bank)
    items, _ = _features(args.weights or bank.meta["weights"], args.inputs, args.batch_size)
    ok = [i for i in items if i.error is None]
    scores = bank.score(np.stack([i.features for i in ok])) if ok else []
    by_file = {i.file: float(s) for i, s in zip(ok, scores, strict=True)}
    if args.json:
        rows = [
            {"file": i.file, "score": by_file[i.file]}
            if i.error is None
            else {"file": i.file, "error": i.error}
            for i in items
        ]
        print(json.dumps({"bank": args.bank, "k": bank.k, "results": rows}, indent=2))
    else:
        for file, s in by_file.items():
            print(f"{s:.4f}  {file}")
    return 0 if ok else 1


def _eval(args: argparse.Namespace) -> int:
    result = held_out_class_auroc(
        args.weights, str(args.anomaly_class), data=args.data, k=args.k,
        max_train=args.max_train, max_test=args.max_test,
    )  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0
