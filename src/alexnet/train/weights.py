"""One loader for every form trained weights take, always with their own preprocessing.

`load_weights(path)` accepts
- a run directory (`RUN_DIR/checkpoints/best.pt`, else `last.pt`; docs/architecture.md),
- a checkpoint `.pt` (read with `torch.load(..., weights_only=True)`: no pickled code runs),
- a weights file `.safetensors` written by `alexnet release` or `alexnet export`,
- a torchvision alexnet state dict (`.pth`), imported into `alexnet_owt`,
- a registry name (`alexnet weights list`: `torchvision`, `caffe-alexnet`, ...), downloaded and
  converted once into the cache (models/pretrained/store.py), unless a file or folder of that
  name exists here.

Weights file format: the tensors are the model's state dict (plus `preprocess.mean_image` in a
release when the net subtracts a mean image); the header metadata key `alexnet` holds JSON with
`format`, `model_name`, `model_options`, `preprocess` (without tensors), `metrics` and (in a
release) `config`, the recipe that made the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from alexnet.data.preset import Preprocess
from alexnet.models.pretrained.registry import get_weights, is_weights_name
from alexnet.models.pretrained.store import load_entry
from alexnet.models.pretrained.torchvision import import_torchvision_state_dict
from alexnet.models.weights_file import (
    build_model,
    check_fit,
    default_classes,
    preset_from_dict,
    read_weights_file,
)
from alexnet.train.metrics_log import read_metrics  # viz reads it from here


def load_weights(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Preprocess, dict[str, Any]]:
    """(model in eval mode, its preprocessing, metadata) from a run, checkpoint or weights file."""
    path = Path(path)
    if not path.exists() and is_weights_name(str(path)):
        model, pre, meta = load_entry(get_weights(str(path)))
    elif path.is_dir():
        ckpt_path = find_checkpoint(path)
        model, pre, meta = _from_checkpoint(_torch_load(ckpt_path), ckpt_path)
        meta.update(kind="run", run_dir=str(path), last_epoch=last_epoch_metrics(path))
    elif not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such run directory or weights file, nor a registry name "
            "(`alexnet weights list`)"
        )
    elif path.suffix == ".safetensors":
        model, pre, meta = read_weights_file(path)
        meta["source"] = str(path)
    else:
        obj = _torch_load(path)
        if isinstance(obj, dict) and "model_name" in obj:
            model, pre, meta = _from_checkpoint(obj, path)
        else:
            model, pre, meta = import_torchvision_state_dict(obj, source=path)
    return model.to(device).eval(), pre, meta


def find_checkpoint(run_dir: Path) -> Path:
    """The run's best checkpoint, else its last one."""
    for name in ("best.pt", "last.pt"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    raise FileNotFoundError(f"{run_dir}: no checkpoints/best.pt or checkpoints/last.pt in this run")


def last_epoch_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The last `{"kind": "epoch", ...}` record of RUN_DIR/metrics.jsonl, if any."""
    records = read_metrics(run_dir / "metrics.jsonl")
    epochs = [r for r in records if r.get("kind") == "epoch"]
    return epochs[-1] if epochs else None


def run_data_spec(run_dir: Path) -> str | None:
    """The `data` a run was trained on, from its config.yaml (None if it names none)."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        return None
    try:
        values = yaml.safe_load(config.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{config}: not YAML ({err})".replace("\n", " ")) from err
    data = values.get("data") if isinstance(values, dict) else None
    return data if isinstance(data, str) else None


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for bad or foreign files
        raise ValueError(
            f"{path}: not a loadable checkpoint ({type(err).__name__}: {err})"
        ) from err


def _from_checkpoint(
    ckpt: dict[str, Any], path: Path
) -> tuple[nn.Module, Preprocess, dict[str, Any]]:
    missing = [k for k in ("model", "model_name", "model_options", "preprocess") if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {missing} (see docs/architecture.md)")
    model = build_model(ckpt["model_name"], ckpt["model_options"], ckpt["model"], path)
    pre = preset_from_dict(ckpt["preprocess"], path)
    check_fit(pre, model, path)
    default_classes(pre, model)
    meta = {
        "kind": "checkpoint",
        "source": str(path),
        "model_name": ckpt["model_name"],
        "model_options": dict(ckpt["model_options"]),
        "metrics": {k: ckpt[k] for k in ("epoch", "step", "best_metric") if k in ckpt},
        "config": ckpt.get("config"),
    }
    return model, pre, meta
