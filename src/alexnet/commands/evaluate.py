"""`alexnet evaluate RUN_DIR|CHECKPOINT`: top-1/top-5 error, centre crop or ten crops.

The weights bring their own preprocessing, so the data is prepared at the size the model was
trained on; under torchrun every image counts exactly once (alexnet.infer.evaluate, the library
side; this module only adapts the flags and prints).
"""

from __future__ import annotations

import argparse
import json

from alexnet.commands.errors import user_errors
from alexnet.infer.evaluate import evaluate_weights


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", help="a run dir, a checkpoint .pt or a weights .safetensors")
    parser.add_argument("--data", help="prepared dir or source (default: the run's own data)")
    parser.add_argument("--split", help="which split (default: test, else val)")
    parser.add_argument("--ten-crop", action="store_true", help="section 4.1's ten-crop test")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--per-class", action="store_true", help="also one line per class")


@user_errors("evaluate")
def run(args: argparse.Namespace) -> int:
    result = evaluate_weights(
        args.weights, data=args.data, split=args.split, ten_crop=args.ten_crop,
        batch_size=args.batch_size, workers=args.workers, device=args.device,
        precision=args.precision,
    )  # fmt: skip
    if result is None:  # not rank 0
        return 0
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    classes = result.pop("classes")
    print(
        f"{result['split']} ({result['count']} images, {'ten crops' if args.ten_crop else 'centre'}"
        f" crop): top-1 err {result['top1_err']:.4f} (acc {result['top1_acc']:.4f}), "
        f"top-5 err {result['top5_err']:.4f} (acc {result['top5_acc']:.4f}), loss "
        f"{result['loss']:.4f}; weights: {result['weights_used']}"
    )
    if result.get("class_note"):
        print(result["class_note"])
    if args.per_class:
        for name, acc in zip(classes, result["per_class_acc"], strict=True):
            if acc is not None:  # classes without images in this split say nothing
                print(f"  {name:>24}  {acc:.4f}")
    return 0
