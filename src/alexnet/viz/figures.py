"""`alexnet figures WEIGHTS`: every figure that the weights and the given images allow, plus
figures.json (a manifest the report reads).

WEIGHTS is anything `load_weights` takes: a run directory (figures go to RUN_DIR/figures, the
training curves are drawn, and the image figures use the run's own prepared data unless told
otherwise), a weights file with no run around it (figures go to ./figures-<stem>; no curves) or
a registry name (./figures-<name>, e.g. `alexnet figures caffe-alexnet --images DIR`).
Nothing is written, and no directory made, before the weights have loaded.

- conv1 kernels, the towers apart, with each tower's colour specificity (paper figure 3;
  `alexnet.viz.kernels`), always;
- with a prepared data set (`--data`, or the run's own): top-5 predictions on test images and
  their fc7 nearest training images (figure 4), labelled with the true classes;
- with `--images DIR`, any folder of image files: top-5 predictions and fc7 nearest neighbours
  among the folder's own images (figure 4 for whatever photos the user has).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from alexnet.data.preset import Preprocess
from alexnet.data.store import open_store
from alexnet.fileio import atomic_write_text
from alexnet.infer.features import prepared_splits, store_features
from alexnet.infer.predict import expand_inputs
from alexnet.train.weights import load_weights, read_metrics, run_data_spec
from alexnet.viz import curves, kernels, neighbours, predictions


def default_out(weights: str | Path, meta: dict[str, Any]) -> Path:
    """RUN_DIR/figures for a run; ./figures-<stem> for a weights file or a registry name."""
    if meta.get("kind") == "run":
        return Path(meta["run_dir"]) / "figures"
    return Path(f"figures-{Path(str(weights)).stem}")


def weights_label(weights: str | Path, meta: dict[str, Any]) -> str:
    """How the figures' titles name the weights: 'run NAME', the file's name, or the name given."""
    if meta.get("kind") == "run":
        return f"run {Path(meta['run_dir']).resolve().name}"
    path = Path(str(weights))
    return path.name if path.exists() else str(weights)


def make_figures(
    weights: str | Path,
    *,
    data: str | None = None,
    images: str | Path | None = None,
    out: str | Path | None = None,
    count: int = 8,
    queries: int = 4,
    index_size: int = 1000,
) -> dict[str, Any]:
    """Write the figures; return the manifest (also saved as figures.json)."""
    for name, value in (("count", count), ("queries", queries), ("index_size", index_size)):
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if images is not None:
        if not Path(images).is_dir():
            raise FileNotFoundError(f"{images}: no such image folder (--images)")
        found = len(expand_inputs([images]))
        if found < 2:
            raise ValueError(f"{images}: {found} image file(s); fc7 neighbours need at least 2")
    model, pre, meta = load_weights(weights)
    is_run = meta.get("kind") == "run"
    out = Path(out) if out is not None else default_out(weights, meta)
    label = weights_label(weights, meta)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "weights": label,
        "checkpoint": meta["source"],
        "model_name": meta["model_name"],
        "skipped": [],
    }
    if is_run:
        run_dir = Path(meta["run_dir"])
        epochs = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("kind") == "epoch"]
    else:
        epochs = []
    if epochs:
        curves.plot_curves(epochs, out / "curves.png")
        manifest["curves"] = {"file": "curves.png", "lr_drops": curves.lr_drops(epochs)}
    elif is_run:
        manifest["skipped"].append("no epoch records in metrics.jsonl: no training curves")
    else:
        manifest["skipped"].append("weights without a run: no training curves")
    colour = kernels.plot_kernels(
        model,
        out / "conv1_kernels.png",
        out / "conv1_colour.json",
        title=f"conv1 kernels of {label}",
        pre=pre,
    )
    manifest["kernels"] = {
        "file": "conv1_kernels.png",
        "json": "conv1_colour.json",
        **{k: v for k, v in colour.items() if k not in ("per_kernel", "grid_origins")},
    }
    if images is not None:
        if data is not None:
            manifest["skipped"].append(f"--data {data} not used for figure 4: --images given")
        drawn = _folder_figures(model, pre, Path(images), out, count, queries, label)
    else:
        spec = data or (run_data_spec(run_dir) if is_run else None)
        if spec is None:
            manifest["skipped"].append(
                "no --images, no --data and no data in config.yaml: no image figures"
            )
            drawn = {}
        else:
            source = Path(meta["source"])
            drawn = _image_figures(model, pre, spec, out, count, queries, index_size, source, label)
    manifest["skipped"] += drawn.pop("skipped", [])
    manifest.update(drawn)
    atomic_write_text(out / "figures.json", json.dumps(manifest, indent=2))
    manifest["out"] = str(out)
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
    label: str,
) -> dict[str, Any]:
    """Figure 4 left (predictions on test images) and right (fc7 neighbours in train)."""
    splits = prepared_splits(spec, pre.image_size)
    test_split = next((s for s in ("test", "val") if s in splits), None)
    if "train" not in splits or test_split is None:
        return {"skipped": [f"{spec}: needs a train and a test/val split, has {sorted(splits)}"]}
    train, test = open_store(splits["train"]), open_store(splits[test_split])
    shown = neighbours.sample_indices(len(test), count, seed=1)
    predictions.plot_predictions(
        model,
        pre,
        test,
        shown,
        out / "predictions.png",
        title=f"top-5 predictions of {label} on {test_split} images",
    )
    key = neighbours.index_key(checkpoint, train)
    bank, bank_idx, built = neighbours.load_or_build_index(
        out / "fc7_index.npz", key, model, pre, train, index_size
    )
    q_idx = neighbours.sample_indices(len(test), queries, seed=2)
    q_feats = store_features(model, pre, test, q_idx)
    _, found = neighbours.plot_neighbours(
        [test.image(int(i)) for i in q_idx],
        q_feats,
        bank,
        bank_idx,
        train,
        out / "neighbours.png",
        query_labels=[int(test.labels[int(i)]) for i in q_idx],
        title=f"fc7 nearest training images ({len(bank_idx)} sampled) of {test_split} images, "
        f"{label}",
    )
    return {
        "data": spec,
        "predictions": {"file": "predictions.png", "split": test_split, "indices": shown.tolist()},
        "neighbours": {
            "file": "neighbours.png",
            "distance": neighbours.DISTANCE,
            "index": "fc7_index.npz",
            "index_size": len(bank_idx),
            "index_built_now": built,
            "queries": q_idx.tolist(),
            "found": np.asarray(found).tolist(),
        },
    }


def folder_truth(rel: Path, classes: list[str]) -> int | None:
    """A file's true class when it sits in a sub-folder named after one of the classes."""
    if len(rel.parts) > 1 and rel.parts[0] in classes:
        return classes.index(rel.parts[0])
    return None


def _folder_figures(
    model: nn.Module,
    pre: Preprocess,
    folder: Path,
    out: Path,
    count: int,
    queries: int,
    label: str,
) -> dict[str, Any]:
    """Figure 4 for a folder of image files: predictions and fc7 neighbours among them."""
    result = neighbours.folder_neighbours(model, pre, folder, queries=queries)
    rel = [f.relative_to(folder) for f in result.files]
    shown = neighbours.sample_indices(len(result.files), count, seed=1)
    truths = [folder_truth(rel[int(i)], pre.classes) for i in shown]
    top = predictions.plot_file_predictions(
        model,
        pre,
        [result.files[int(i)] for i in shown],
        [str(rel[int(i)]) for i in shown],
        out / "predictions.png",
        truths=truths if any(t is not None for t in truths) else None,
        title=f"top-5 predictions of {label} on {folder.name or folder}/",
    )
    neighbours.plot_folder_neighbours(
        model,
        pre,
        result,
        folder,
        out / "neighbours.png",
        title=f"fc7 nearest neighbours among the {len(result.files)} images of "
        f"{folder.name or folder}/, {label}",
    )
    return {
        "images": str(folder),
        "skipped": [f"unreadable, left out: {e}" for e in result.errors],
        "predictions": {
            "file": "predictions.png",
            "files": [str(rel[int(i)]) for i in shown],
            "top5": top,
        },
        "neighbours": {
            "file": "neighbours.png",
            "distance": neighbours.DISTANCE,
            "embedded": len(result.files),
            "queries": [str(rel[int(q)]) for q in result.queries],
            "found": [[str(rel[int(i)]) for i in row] for row in result.found],
            "distances": [[round(float(d), 6) for d in row] for row in result.distances],
        },
    }
