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

from alexnet.commands.errors import error_line


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


def run(args: argparse.Namespace) -> int:
    try:
        result = evaluate_weights(args)
    except (ValueError, OSError) as err:  # the error policy: alexnet.commands.errors
        print(f"alexnet evaluate: error: {error_line(err)}", file=sys.stderr)
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
        f"{result['loss']:.4f}; weights: {result['weights_used']}"
    )
    if result.get("class_note"):
        print(result["class_note"])
    if args.per_class:
        for name, acc in zip(classes, result["per_class_acc"], strict=True):
            if acc is not None:  # classes without images in this split say nothing
                print(f"  {name:>24}  {acc:.4f}")
    return 0


def _keys(name: str) -> set[str]:
    """Ways a class can be named: as given, lower case, its first comma-separated name."""
    name = str(name).strip()
    return {name, name.lower(), name.split(",")[0].strip().lower()} - {""}


def match_classes(
    model_classes: list[str],
    data_classes: list[str],
    data_names: list[str],
    model_synsets: list[str] | None = None,
) -> tuple[list[int] | None, str]:
    """(model index of each data class, or None when the order is already the same; a note).

    Classes are matched by name or synset id, never by position: a data class that names no
    model class (or names several) raises ValueError naming it."""
    if list(data_names) == list(model_classes) or list(data_classes) == list(model_classes):
        return None, ""
    index: dict[str, set[int]] = {}
    for j, name in enumerate(model_classes):
        for key in _keys(name) | ({model_synsets[j]} if model_synsets else set()):
            index.setdefault(key, set()).add(j)
    mapping, unmatched = [], []
    for cls, name in zip(data_classes, data_names, strict=True):
        hits = [index[k] for k in (cls, *_keys(name), *_keys(cls)) if k in index]
        exact = next((h for h in hits if len(h) == 1), None)
        if exact is None:
            unmatched.append(name if name == cls else f"{cls} ({name})")
        else:
            mapping.append(next(iter(exact)))
    if unmatched:
        shown = ", ".join(repr(u) for u in unmatched[:5])
        more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
        raise ValueError(
            f"the data's classes do not match the model's: {shown}{more} name no class of the "
            f"model ({len(model_classes)} classes, e.g. {', '.join(model_classes[:3])})"
        )
    if len(set(mapping)) != len(mapping):
        raise ValueError("two of the data's classes name the same class of the model")
    return mapping, f"classes matched by name: the data's {len(mapping)} onto the model's " + str(
        len(model_classes)
    )


def evaluate_weights(args: argparse.Namespace) -> dict | None:
    """Evaluate `args.weights` on `args.split` of `args.data`; the result on rank 0 only."""
    from alexnet.data.loader import make_loader
    from alexnet.data.store import open_store
    from alexnet.eval.evaluate import evaluate
    from alexnet.train.distributed import barrier, cleanup, init_distributed, pick_device
    from alexnet.train.run import data_splits, eval_stats
    from alexnet.train.weights import load_weights

    device = pick_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    ctx = init_distributed(device)
    try:
        model, pre, meta = load_weights(args.weights, device=device)
        spec = args.data or _run_data(args.weights)
        splits = data_splits(spec, pre.image_size, ctx, quiet=True, warp=pre.resize == "warp")
        if args.split is None:
            args.split = "test" if "test" in splits or "val" not in splits else "val"
        if args.split not in splits:
            raise ValueError(f"--data {spec}: no split {args.split!r} (has {sorted(splits)})")
        store = open_store(splits[args.split])
        if store.image_size != pre.image_size:
            raise ValueError(
                f"{store.path} stores {store.image_size}px images but the weights expect "
                f"{pre.image_size}px (their mean image); prepare the data at {pre.image_size}"
            )
        classes = pre.classes or [str(i) for i in range(model.num_classes)]
        synsets = None
        if len(classes) == 1000:
            from alexnet.data.classes import imagenet_classes

            synsets = [c.synset for c in imagenet_classes()]
        mapping, note = match_classes(classes, store.classes, store.class_names, synsets)
        loader = make_loader(
            store, train=False, crop_size=pre.crop_size, batch_size=args.batch_size,
            rank=ctx.rank, world_size=ctx.world_size, workers=args.workers,
            stats=eval_stats(pre), normalize=pre.normalize, ten_crop=args.ten_crop,
        )  # fmt: skip
        batches = loader.epoch(0)
        if mapping is not None:
            import torch

            to_model = torch.tensor(mapping, dtype=torch.int64)
            batches = ((images, to_model[labels]) for images, labels in batches)
        result = evaluate(
            model, batches, num_classes=model.num_classes, device=device,
            precision=args.precision, ten_crop=args.ten_crop,
        )  # fmt: skip
        barrier(ctx)
    finally:
        cleanup(ctx)
    if not ctx.is_main:
        return None
    return {"weights": str(args.weights), "weights_used": weights_used(meta),
            "split": args.split, "ten_crop": args.ten_crop, "class_note": note,
            "model_name": meta.get("model_name"), **result, "classes": classes}  # fmt: skip


def weights_used(meta: dict) -> str:
    """Which weights a number comes from, in the words `alexnet train` uses for its own."""
    from pathlib import Path

    source = Path(str(meta.get("source", "?")))
    epoch = (meta.get("metrics") or {}).get("epoch")
    text = (
        source.name
        if meta.get("kind") == "run" or source.parent.name == "checkpoints"
        else (str(source))
    )
    return text + (f" (epoch {epoch})" if epoch is not None else "")


def _run_data(weights: str) -> str:
    """The `data` a run was trained on (from its config.yaml), for `--data`'s default."""
    from pathlib import Path

    from alexnet.train.weights import run_data_spec

    data = run_data_spec(Path(weights)) if Path(weights).is_dir() else None
    if not isinstance(data, str):
        raise ValueError(f"{weights}: not a run dir whose config.yaml names its data; pass --data")
    return data
