"""One loader for every form trained weights take, always with their own preprocessing.

`load_weights(path)` accepts
- a run directory (`RUN_DIR/checkpoints/best.pt`, else `last.pt`; docs/architecture.md),
- a checkpoint `.pt` (read with `torch.load(..., weights_only=True)`: no pickled code runs),
- a weights file `.safetensors` written by `alexnet release` or `alexnet export`,
- a torchvision alexnet state dict (`.pth`), imported into `alexnet_owt`.

Weights file format: the tensors are the model's state dict (plus `preprocess.mean_image` in a
release when the net subtracts a mean image); the header metadata key `alexnet` holds JSON with
`format`, `model_name`, `model_options`, `preprocess` (without tensors), `metrics` and (in a
release) `config`, the recipe that made the weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexnet.infer.preprocess import Preprocess

FORMAT = "alexnet-weights/1"
META_KEY = "alexnet"
MEAN_IMAGE_KEY = "preprocess.mean_image"


def load_weights(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Preprocess, dict[str, Any]]:
    """(model in eval mode, its preprocessing, metadata) from a run, checkpoint or weights file."""
    path = Path(path)
    if path.is_dir():
        ckpt_path = find_checkpoint(path)
        model, pre, meta = _from_checkpoint(_torch_load(ckpt_path), ckpt_path)
        meta.update(kind="run", run_dir=str(path), last_epoch=last_epoch_metrics(path))
    elif not path.is_file():
        raise FileNotFoundError(f"{path}: no such run directory or weights file")
    elif path.suffix == ".safetensors":
        model, pre, meta = _from_safetensors(path)
    else:
        obj = _torch_load(path)
        if isinstance(obj, dict) and "model_name" in obj:
            model, pre, meta = _from_checkpoint(obj, path)
        else:
            from alexnet.infer.torchvision_compat import import_torchvision_state_dict

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
    """The `data` a run was trained on, from its config.yaml (None if it has none)."""
    import yaml

    config = run_dir / "config.yaml"
    if not config.is_file():
        return None
    return (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl; a torn last line (a run killed mid-write) is skipped."""
    if not path.is_file():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if n == len(lines) - 1:
                continue
            raise ValueError(f"{path}:{n + 1}: not JSON ({err})") from err
    return records


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for bad or foreign files
        raise ValueError(
            f"{path}: not a loadable checkpoint ({type(err).__name__}: {err})"
        ) from err


def build_model(
    model_name: str, model_options: dict[str, Any], state: dict[str, torch.Tensor]
) -> nn.Module:
    """Rebuild a registered model and load its state dict strictly."""
    from alexnet.models import create_model

    options = dict(model_options)
    num_classes = options.pop("num_classes", None)
    model = create_model(model_name, num_classes=num_classes, **options)
    model.load_state_dict(state, strict=True)
    return model


def _from_checkpoint(
    ckpt: dict[str, Any], path: Path
) -> tuple[nn.Module, Preprocess, dict[str, Any]]:
    missing = [k for k in ("model", "model_name", "model_options", "preprocess") if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {missing} (see docs/architecture.md)")
    model = build_model(ckpt["model_name"], ckpt["model_options"], ckpt["model"])
    pre = Preprocess.from_dict(ckpt["preprocess"])
    _default_classes(pre, model)
    meta = {
        "kind": "checkpoint",
        "source": str(path),
        "model_name": ckpt["model_name"],
        "model_options": dict(ckpt["model_options"]),
        "metrics": {k: ckpt[k] for k in ("epoch", "step", "best_metric") if k in ckpt},
        "config": ckpt.get("config"),
    }
    return model, pre, meta


def _from_safetensors(path: Path) -> tuple[nn.Module, Preprocess, dict[str, Any]]:
    from safetensors import safe_open

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
    _default_classes(pre, model)
    meta.update(kind="weights", source=str(path))
    return model, pre, meta


def _default_classes(pre: Preprocess, model: nn.Module) -> None:
    """1000-class weights without their own class list get the packaged ImageNet names."""
    if not pre.classes and model.num_classes == 1000:
        from alexnet.infer.classes import imagenet_class_names

        pre.classes = imagenet_class_names()


def weights_metadata(
    model: nn.Module,
    pre: Preprocess,
    metrics: dict[str, Any],
    config: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The safetensors header for a weights file: everything inference needs but tensors."""
    meta = {
        "format": FORMAT,
        "model_name": model.model_name,
        "model_options": dict(model.model_options),
        "preprocess": pre.to_dict(tensors=False),
        "metrics": metrics,
    }
    if config is not None:
        meta["config"] = config
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
    with_mean_image: bool = True,
) -> Path:
    """Write a weights file (state dict + metadata, + mean image if asked), atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if with_mean_image and pre.mean_image is not None:
        tensors[MEAN_IMAGE_KEY] = pre.mean_image.contiguous()
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=weights_metadata(model, pre, metrics or {}, config))
    tmp.replace(path)
    return path
