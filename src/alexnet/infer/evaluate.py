"""Top-1/top-5 error of any weights on a split of a data set: `alexnet evaluate`'s library side.

The weights bring their own preprocessing (image size, crop, mean image), so the data is
prepared at the size the model was trained on. The data's classes are matched to the model's by
name or synset id, never by position. Under torchrun each rank evaluates its shard and the
counts are summed: every image counts exactly once (alexnet.eval.evaluate).

It sits in infer, above train and eval, because it needs both: the weights loader and the data
splits of train, the evaluation pass of eval (train imports eval, so eval cannot import train).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from alexnet.data.classes import imagenet_classes
from alexnet.data.loader import make_loader
from alexnet.data.store import open_store
from alexnet.eval.evaluate import evaluate
from alexnet.train.distributed import barrier, cleanup, init_distributed, pick_device
from alexnet.train.run import data_splits, eval_stats
from alexnet.train.weights import load_weights, run_data_spec


def evaluate_weights(
    weights: str | Path,
    *,
    data: str | None = None,
    split: str | None = None,
    ten_crop: bool = False,
    batch_size: int = 128,
    workers: int = 0,
    device: str = "auto",
    precision: str = "fp32",
) -> dict[str, Any] | None:
    """Evaluate `weights` on `split` of `data` (default: a run's own data; test, else val); the
    result on rank 0 only (None on the other ranks). Raises ValueError / OSError naming a bad
    input (the error policy of alexnet.commands.errors)."""
    torch_device = pick_device(device, int(os.environ.get("LOCAL_RANK", "0")))
    ctx = init_distributed(torch_device)
    try:
        model, pre, meta = load_weights(weights, device=torch_device)
        spec = data or _run_data(weights)
        splits = data_splits(spec, pre.image_size, ctx, quiet=True, warp=pre.resize == "warp")
        if split is None:
            split = "test" if "test" in splits or "val" not in splits else "val"
        if split not in splits:
            raise ValueError(f"--data {spec}: no split {split!r} (has {sorted(splits)})")
        store = open_store(splits[split])
        if store.image_size != pre.image_size:
            raise ValueError(
                f"{store.path} stores {store.image_size}px images but the weights expect "
                f"{pre.image_size}px (their mean image); prepare the data at {pre.image_size}"
            )
        classes = pre.classes or [str(i) for i in range(model.num_classes)]
        synsets = [c.synset for c in imagenet_classes()] if len(classes) == 1000 else None
        mapping, note = match_classes(classes, store.classes, store.class_names, synsets)
        loader = make_loader(
            store, train=False, crop_size=pre.crop_size, batch_size=batch_size,
            rank=ctx.rank, world_size=ctx.world_size, workers=workers,
            stats=eval_stats(pre), normalize=pre.normalize, ten_crop=ten_crop,
        )  # fmt: skip
        batches = loader.epoch(0)
        if mapping is not None:
            to_model = torch.tensor(mapping, dtype=torch.int64)
            batches = ((images, to_model[labels]) for images, labels in batches)
        result = evaluate(
            model, batches, num_classes=model.num_classes, device=torch_device,
            precision=precision, ten_crop=ten_crop,
        )  # fmt: skip
        barrier(ctx)
    finally:
        cleanup(ctx)
    if not ctx.is_main:
        return None
    return {"weights": str(weights), "weights_used": weights_used(meta),
            "split": split, "ten_crop": ten_crop, "class_note": note,
            "model_name": meta.get("model_name"), **result, "classes": classes}  # fmt: skip


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


def weights_used(meta: dict[str, Any]) -> str:
    """Which weights a number comes from, in the words `alexnet train` uses for its own."""
    source = Path(str(meta.get("source", "?")))
    epoch = (meta.get("metrics") or {}).get("epoch")
    text = (
        source.name
        if meta.get("kind") == "run" or source.parent.name == "checkpoints"
        else (str(source))
    )
    return text + (f" (epoch {epoch})" if epoch is not None else "")


def _run_data(weights: str | Path) -> str:
    """The `data` a run was trained on (from its config.yaml), for `--data`'s default."""
    data = run_data_spec(Path(weights)) if Path(weights).is_dir() else None
    if not isinstance(data, str):
        raise ValueError(f"{weights}: not a run dir whose config.yaml names its data; pass --data")
    return data
