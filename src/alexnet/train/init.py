"""Fine-tuning: the weights a run starts from (`--init-from`), and what they bring with them.

`--init-from` takes a registry name (`alexnet weights list`), a run directory, a checkpoint
`.pt`, a weights `.safetensors` or a torchvision `.pth`. The run then uses the source's model
and options; every layer that fits is loaded (models/transfer.py), the rest starts afresh (the
classifier, unless the source's classes are the data's, names in order; conv1 for another
channel count) and learns `new_layer_lr` times faster (Caffe's fine-tuning example: base lr
0.001, the new fc8 x10); `--freeze LAYER` stops updates in every layer up to LAYER. Unless
`--no-init-preset`, images are normalised as the source's preset says, at its stored and crop
sizes, so the loaded layers see the inputs they were trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.data.preset import Preprocess
from alexnet.data.stats import DataStats
from alexnet.models.pretrained.registry import get_weights, is_weights_name
from alexnet.models.pretrained.store import load_entry
from alexnet.models.pretrained.torchvision import import_torchvision_state_dict
from alexnet.models.weights_file import build_model, read_weights_file
from alexnet.train.checkpoint import resolve_checkpoint


@dataclass(frozen=True)
class InitSource:
    """The weights a fine-tuning run starts from."""

    spec: str
    model_name: str
    model_options: dict[str, Any]
    state: dict[str, torch.Tensor]
    preset: Preprocess


def load_source(spec: str) -> InitSource:
    """Read `--init-from`: a registry name, run dir, checkpoint, weights file or torchvision."""
    path = Path(spec)
    if not path.exists() and is_weights_name(spec):
        model, pre, _ = load_entry(get_weights(spec))
    elif path.suffix == ".safetensors" and path.is_file():
        model, pre, _ = read_weights_file(path)
    else:
        file = resolve_checkpoint(path, "best.pt" if (path / "checkpoints/best.pt").is_file()
                                  else "last.pt")  # fmt: skip
        try:
            obj = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for foreign files
            raise ValueError(f"--init-from {file}: not loadable weights ({err})") from err
        if isinstance(obj, dict) and "model_name" in obj and "preprocess" in obj:
            model = build_model(obj["model_name"], obj["model_options"], obj["model"])
            pre = Preprocess.from_dict(obj["preprocess"])
        else:
            model, pre, _ = import_torchvision_state_dict(obj, source=file)
    options = {k: v for k, v in model.model_options.items() if k not in ("num_classes", "in_chans")}
    return InitSource(spec, model.model_name, options, model.state_dict(), pre)


def preset_stats(pre: Preprocess, data: DataStats) -> DataStats:
    """The loader's statistics with the source's normalisation and the data's PCA (lighting
    noise is a property of the new data's colours)."""
    c = int(pre.in_chans)
    mean = np.asarray(pre.mean if pre.mean is not None else np.zeros(c), np.float32)
    std = np.asarray(pre.std if pre.std is not None else np.ones(c), np.float32)
    mean_image = (
        pre.mean_image.numpy().astype(np.float32)
        if pre.mean_image is not None
        else np.zeros((pre.image_size, pre.image_size, c), np.float32)
    )
    return DataStats(mean_image, mean, std, data.cov, data.eigval, data.eigvec, data.pixel_count)


def param_groups(
    model: torch.nn.Module, fresh: tuple[str, ...], new_layer_lr: float
) -> list[dict[str, Any]]:
    """Optimizer groups: loaded layers at the base lr, fresh ones at `new_layer_lr` times it;
    frozen parameters (requires_grad False) are left out."""
    loaded, new = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (new if name.rsplit(".", 1)[0] in fresh else loaded).append(p)
    groups = [{"params": loaded, "lr_mult": 1.0}]
    if new:
        groups.append({"params": new, "lr_mult": float(new_layer_lr)})
    return [g for g in groups if g["params"]]
