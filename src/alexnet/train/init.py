"""Fine-tuning: the weights a run starts from (`--init-from`), and what they bring with them.

`--init-from` takes a registry name (`alexnet weights list`), a run directory, a checkpoint
`.pt`, a weights `.safetensors` or a torchvision `.pth`. The run then uses the source's model
and options, with any `--model-option` given on the command line laid over them (e.g.
`dropout=0.3`; a `--model` other than the source's is an error); every layer that fits is
loaded (models/transfer.py), the rest starts afresh (the classifier, unless the source's
classes are the data's, names in order; conv1 for another channel count) and learns
`new_layer_lr` times faster (Caffe's fine-tuning example: base lr 0.001, the new fc8 x10);
`--freeze LAYER` stops updates in every layer up to LAYER. Unless `--no-init-preset`, images
are normalised as the source's preset says, at its stored and crop sizes (images smaller than
its stored size are kept at theirs and enlarged per batch), so the loaded layers see the inputs
they were trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alexnet.data.preset import Preprocess
from alexnet.data.stats import DataStats
from alexnet.train.weights import load_weights


@dataclass(frozen=True)
class InitSource:
    """The weights a fine-tuning run starts from."""

    spec: str
    model_name: str
    model_options: dict[str, Any]
    state: dict[str, torch.Tensor]
    preset: Preprocess


def load_source(spec: str) -> InitSource:
    """Read `--init-from` with the one weights loader (train/weights.py): a registry name, run
    dir, checkpoint, weights file or torchvision state dict."""
    model, pre, _ = load_weights(spec)
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
