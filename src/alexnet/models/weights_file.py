"""The package's weights file: a model's state dict in safetensors, with what rebuilds it.

Format (docs/architecture.md): the tensors are the model's state dict (plus
`preprocess.mean_image` when the net subtracts a mean image); the header metadata key `alexnet`
holds JSON with `format`, `model_name`, `model_options`, `preprocess` (without tensors),
`metrics`, and optionally `config` (the recipe that made the weights) and `origin` (where
imported weights came from). `alexnet release`, `alexnet export --format safetensors`, the end
of `alexnet train` and `alexnet weights pull|import` all write this one format.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from alexnet.data.classes import imagenet_class_names
from alexnet.data.preset import Preprocess
from alexnet.models.registry import create_model

FORMAT = "alexnet-weights/1"
META_KEY = "alexnet"
MEAN_IMAGE_KEY = "preprocess.mean_image"


def build_model(
    model_name: str, model_options: dict[str, Any], state: dict[str, torch.Tensor]
) -> nn.Module:
    """Rebuild a registered model and load its state dict strictly."""
    options = dict(model_options)
    num_classes = options.pop("num_classes", None)
    model = create_model(model_name, num_classes=num_classes, **options)
    model.load_state_dict(state, strict=True)
    return model


def default_classes(pre: Preprocess, model: nn.Module) -> None:
    """1000-class weights without their own class list get the packaged ImageNet names."""
    if not pre.classes and model.num_classes == 1000:
        pre.classes = imagenet_class_names()


def read_weights_file(path: str | Path) -> tuple[nn.Module, Preprocess, dict[str, Any]]:
    """(model, preset, header metadata) of a weights file; the model is in training mode."""
    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        header = (f.metadata() or {}).get(META_KEY)
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iter
    if header is None:
        raise ValueError(f"{path}: no '{META_KEY}' metadata; not written by alexnet release/export")
    meta = json.loads(header)
    pre_dict = dict(meta["preprocess"])
    mean_image = tensors.pop(MEAN_IMAGE_KEY, None)
    if pre_dict["normalize"] == "mean_image":
        if mean_image is None:
            raise ValueError(
                f"{path}: these weights subtract a mean image but the file has none (an "
                "`export --format safetensors` file holds only the state dict); use the file "
                "from `alexnet release` or the run directory"
            )
        pre_dict["mean_image"] = mean_image
    model = build_model(meta["model_name"], meta["model_options"], tensors)
    pre = Preprocess.from_dict(pre_dict)
    default_classes(pre, model)
    meta["kind"] = "weights"
    return model, pre, meta


def weights_metadata(
    model: nn.Module,
    pre: Preprocess,
    metrics: dict[str, Any],
    config: dict[str, Any] | None = None,
    origin: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The safetensors header for a weights file: everything inference needs but tensors."""
    meta: dict[str, Any] = {
        "format": FORMAT,
        "model_name": model.model_name,
        "model_options": dict(model.model_options),
        "preprocess": pre.to_dict(tensors=False),
        "metrics": metrics,
    }
    if config is not None:
        meta["config"] = config
    if origin is not None:
        meta["origin"] = origin
    return {META_KEY: json.dumps(meta, sort_keys=True, default=_json_default)}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in the weights metadata")


def save_weights(
    path: str | Path,
    model: nn.Module,
    pre: Preprocess,
    *,
    metrics: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    origin: dict[str, Any] | None = None,
    with_mean_image: bool = True,
) -> Path:
    """Write a weights file (state dict + metadata, + mean image if asked), atomically."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if with_mean_image and pre.mean_image is not None:
        tensors[MEAN_IMAGE_KEY] = pre.mean_image.contiguous()
    header = weights_metadata(model, pre, metrics or {}, config, origin)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a weights file is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
