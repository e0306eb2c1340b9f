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
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from alexnet.data.classes import imagenet_class_names
from alexnet.data.preset import Preprocess
from alexnet.fileio import atomic_path
from alexnet.models.registry import create_model

FORMAT = "alexnet-weights/1"
META_KEY = "alexnet"
MEAN_IMAGE_KEY = "preprocess.mean_image"


def build_model(
    model_name: str,
    model_options: dict[str, Any],
    state: dict[str, torch.Tensor],
    source: str | Path = "weights",
) -> nn.Module:
    """Rebuild a registered model and load its state dict strictly; anything in the file that
    does not fit (a name, options, a key, a shape, a non-finite value) is a ValueError naming
    `source`."""
    if not isinstance(model_name, str):
        raise ValueError(f"{source}: model_name {model_name!r} is not a model name")
    if not isinstance(model_options, dict) or not all(isinstance(k, str) for k in model_options):
        raise ValueError(f"{source}: model_options {model_options!r} is not a mapping of options")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source}: the weights are not a state dict of tensors")
    options = dict(model_options)
    num_classes = options.pop("num_classes", None)
    try:  # shapes first, on the meta device: no memory for options such as num_classes=1e12
        with torch.device("meta"):
            shapes = create_model(model_name, num_classes=num_classes, **options).state_dict()
    except (ValueError, TypeError, RuntimeError, OverflowError) as err:
        raise ValueError(
            f"{source}: {model_name!r} with options {model_options} cannot be built: {err}"
        ) from err
    check_state_dict(state, {k: tuple(v.shape) for k, v in shapes.items()}, source)
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise ValueError(f"{source}: non-finite weights in {', '.join(bad[:3])}")
    model = create_model(model_name, num_classes=num_classes, **options)
    model.load_state_dict(state, strict=True)
    return model


def check_state_dict(
    state: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]], source: str | Path
) -> None:
    """Raise naming `source` unless `state` has exactly the keys and shapes of `shapes`."""
    missing = [k for k in shapes if k not in state]
    extra = [k for k in state if k not in shapes]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {shapes[k]})"
        for k in shapes
        if k in state and tuple(state[k].shape) != shapes[k]
    ]
    problems = [
        f"{label} {', '.join(items[:3])}{', ...' if items[3:] else ''}"
        for label, items in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong))
        if items
    ]
    if problems:
        raise ValueError(f"{source}: weights do not fit the model: {'; '.join(problems)}")


def preset_from_dict(d: Any, source: str | Path) -> Preprocess:
    """Preprocess.from_dict of a file's `preprocess` entry; anything malformed names the file."""
    if not isinstance(d, dict):
        raise ValueError(f"{source}: preprocess is {type(d).__name__}, not a mapping")
    try:
        return Preprocess.from_dict(d)
    except (ValueError, TypeError, KeyError, RuntimeError, OverflowError) as err:
        raise ValueError(f"{source}: bad preprocess entry: {err}") from err


MAX_RESIZE = 8  # a weights file's image_size may be at most this many times its crop


def check_fit(pre: Preprocess, model: nn.Module, source: str | Path) -> None:
    """The preprocessing must feed this model: its crop and channels, a bounded resize."""
    if pre.crop_size != model.input_size or pre.in_chans != model.in_chans:
        raise ValueError(
            f"{source}: preprocess makes {pre.in_chans}x{pre.crop_size}x{pre.crop_size} crops but "
            f"the model takes {model.in_chans}x{model.input_size}x{model.input_size}"
        )
    if pre.image_size > MAX_RESIZE * pre.crop_size:
        raise ValueError(
            f"{source}: preprocess.image_size {pre.image_size} is over {MAX_RESIZE} times the "
            f"crop ({pre.crop_size})"
        )


def default_classes(pre: Preprocess, model: nn.Module) -> None:
    """1000-class weights without their own class list get the packaged ImageNet names."""
    if not pre.classes and model.num_classes == 1000:
        pre.classes = imagenet_class_names()


def read_weights_file(path: str | Path) -> tuple[nn.Module, Preprocess, dict[str, Any]]:
    """(model, preset, header metadata) of a weights file; the model is in training mode."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = (f.metadata() or {}).get(META_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iter
    except Exception as err:  # SafetensorError, OSError, ...: a truncated or foreign file
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: not a readable safetensors file ({text})") from err
    if header is None:
        raise ValueError(f"{path}: no '{META_KEY}' metadata; not written by alexnet release/export")
    try:
        meta = json.loads(header)
    except ValueError as err:
        raise ValueError(f"{path}: the '{META_KEY}' metadata is not JSON ({err})") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: the '{META_KEY}' metadata is not a JSON object")
    missing = [k for k in ("model_name", "model_options", "preprocess") if k not in meta]
    if missing:
        raise ValueError(f"{path}: the '{META_KEY}' metadata lacks {missing}")
    if not isinstance(meta["preprocess"], dict):
        raise ValueError(f"{path}: the metadata's preprocess is not a mapping")
    pre_dict = dict(meta["preprocess"])
    mean_image = tensors.pop(MEAN_IMAGE_KEY, None)
    if pre_dict.get("normalize") == "mean_image":
        if mean_image is None:
            raise ValueError(
                f"{path}: these weights subtract a mean image but the file has none (an "
                "`export --format safetensors` file holds only the state dict); use the file "
                "from `alexnet release` or the run directory"
            )
        pre_dict["mean_image"] = mean_image
    model = build_model(meta["model_name"], meta["model_options"], tensors, path)
    pre = preset_from_dict(pre_dict, path)
    check_fit(pre, model, path)
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
    with atomic_path(path) as tmp:  # 0666 less umask; a full disk leaves nothing (fileio)
        save_file(tensors, str(tmp), metadata=header)
    return path
