"""`alexnet figures RUN_DIR`: every figure of a run into RUN_DIR/figures/, plus figures.json
(a manifest the report reads). Figures needing images (predictions, neighbours) use the run's
own prepared data (config.yaml `data`, prepared at the weights' image size) or `--data`; the
others need only the run directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from alexnet.data.preset import Preprocess
from alexnet.infer.features import prepared_splits, store_features
from alexnet.infer.weights import find_checkpoint, load_weights, read_metrics, run_data_spec
from alexnet.viz import curves, kernels, neighbours, predictions


def make_figures(
    run_dir: str | Path,
    *,
    data: str | None = None,
    out: str | Path | None = None,
    count: int = 8,
    queries: int = 4,
    index_size: int = 1000,
) -> dict[str, Any]:
    """Write the figures; return the manifest (also saved as figures.json)."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "figures"
    out.mkdir(parents=True, exist_ok=True)
    model, pre, meta = load_weights(run_dir)
    manifest: dict[str, Any] = {
        "checkpoint": meta["source"],
        "model_name": meta["model_name"],
        "skipped": [],
    }
    epochs = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("kind") == "epoch"]
    if epochs:
        curves.plot_curves(epochs, out / "curves.png")
        manifest["curves"] = {"file": "curves.png", "lr_drops": curves.lr_drops(epochs)}
    else:
        manifest["skipped"].append("no epoch records in metrics.jsonl: no training curves")
    colour = kernels.plot_kernels(model, out / "conv1_kernels.png", out / "conv1_colour.json")
    manifest["kernels"] = {
        "file": "conv1_kernels.png",
        "json": "conv1_colour.json",
        **{k: v for k, v in colour.items() if k != "per_kernel"},
    }
    spec = data or run_data_spec(run_dir)
    if spec is None:
        manifest["skipped"].append("no --data and no data in config.yaml: no image figures")
    else:
        drawn = _image_figures(
            model, pre, spec, out, count, queries, index_size, find_checkpoint(run_dir)
        )
        manifest["skipped"] += drawn.pop("skipped", [])
        manifest.update(drawn)
    (out / "figures.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def _image_figures(
    model: nn.Module,
    pre: Preprocess,
    spec: str,
    out: Path,
    count: int,
    queries: int,
    index_size: int,
    checkpoint: Path,
) -> dict[str, Any]:
    """Figure 4 left (predictions on test images) and right (fc7 neighbours in train)."""
    from alexnet.data.store import open_store

    splits = prepared_splits(spec, pre.image_size)
    test_split = next((s for s in ("test", "val") if s in splits), None)
    if "train" not in splits or test_split is None:
        return {"skipped": [f"{spec}: needs a train and a test/val split, has {sorted(splits)}"]}
    train, test = open_store(splits["train"]), open_store(splits[test_split])
    shown = neighbours.sample_indices(len(test), count, seed=1)
    predictions.plot_predictions(model, pre, test, shown, out / "predictions.png")
    key = neighbours.index_key(checkpoint, train)
    bank, bank_idx, built = neighbours.load_or_build_index(
        out / "fc7_index.npz", key, model, pre, train, index_size
    )
    q_idx = neighbours.sample_indices(len(test), queries, seed=2)
    q_feats = store_features(model, pre, test, q_idx)
    _, found = neighbours.plot_neighbours(
        [test.image(int(i)) for i in q_idx], q_feats, bank, bank_idx, train, out / "neighbours.png"
    )
    return {
        "data": spec,
        "predictions": {"file": "predictions.png", "split": test_split, "indices": shown.tolist()},
        "neighbours": {
            "file": "neighbours.png",
            "index": "fc7_index.npz",
            "index_size": len(bank_idx),
            "index_built_now": built,
            "queries": q_idx.tolist(),
            "found": np.asarray(found).tolist(),
        },
    }
