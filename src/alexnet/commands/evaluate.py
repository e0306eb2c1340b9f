"""`alexnet evaluate RUN_DIR|CHECKPOINT`: top-1/top-5 error, centre crop or ten crops.

The weights bring their own preprocessing (image size, crop, mean image), so the data is
prepared at the size the model was trained on. Under torchrun each rank evaluates its shard and
the counts are summed: every image counts exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", help="a run dir, a checkpoint .pt or a weights .safetensors")
    parser.add_argument("--data", help="prepared dir or source (default: the run's own data)")
    parser.add_argument("--split", default="test", help="which split (default test)")
    parser.add_argument("--ten-crop", action="store_true", help="section 4.1's ten-crop test")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        result = evaluate_weights(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"alexnet evaluate: error: {err}", file=sys.stderr)
        return 2
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
        f"{result['loss']:.4f}"
    )
    for name, acc in zip(classes, result["per_class_acc"], strict=True):
        print(f"  {name:>24}  {'-' if acc is None else f'{acc:.4f}'}")
    return 0


def evaluate_weights(args: argparse.Namespace) -> dict | None:
    """Evaluate `args.weights` on `args.split` of `args.data`; the result on rank 0 only."""
    from alexnet.data.loader import make_loader
    from alexnet.data.store import open_store
    from alexnet.eval.evaluate import evaluate
    from alexnet.infer.weights import load_weights
    from alexnet.train.distributed import barrier, cleanup, init_distributed, pick_device
    from alexnet.train.run import data_splits, eval_stats

    device = pick_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    ctx = init_distributed(device)
    try:
        model, pre, meta = load_weights(args.weights, device=device)
        spec = args.data or _run_data(args.weights)
        splits = data_splits(spec, pre.image_size, ctx, quiet=True)
        if args.split not in splits:
            raise ValueError(f"--data {spec}: no split {args.split!r} (has {sorted(splits)})")
        store = open_store(splits[args.split])
        if store.image_size != pre.image_size:
            raise ValueError(
                f"{store.path} stores {store.image_size}px images but the weights expect "
                f"{pre.image_size}px (their mean image); prepare the data at {pre.image_size}"
            )
        loader = make_loader(
            store, train=False, crop_size=pre.crop_size, batch_size=args.batch_size,
            rank=ctx.rank, world_size=ctx.world_size, workers=args.workers,
            stats=eval_stats(pre), normalize=pre.normalize, ten_crop=args.ten_crop,
        )  # fmt: skip
        result = evaluate(
            model, loader.epoch(0), num_classes=model.num_classes, device=device,
            precision=args.precision, ten_crop=args.ten_crop,
        )  # fmt: skip
        barrier(ctx)
    finally:
        cleanup(ctx)
    if not ctx.is_main:
        return None
    classes = pre.classes or [str(i) for i in range(model.num_classes)]
    return {"weights": str(args.weights), "split": args.split, "ten_crop": args.ten_crop,
            "model_name": meta.get("model_name"), **result, "classes": classes}  # fmt: skip


def _run_data(weights: str) -> str:
    """The `data` a run was trained on (from its config.yaml), for `--data`'s default."""
    from pathlib import Path

    import yaml

    config = Path(weights) / "config.yaml"
    if not config.is_file():
        raise ValueError(f"{weights} is not a run dir with a config.yaml: pass --data")
    return str(yaml.safe_load(config.read_text())["data"])
