"""Batched prediction and feature extraction over image files, each file failing on its own.

Images are decoded by `alexnet.data.images.load_image` (the decoder `alexnet prepare` uses, so
inference sees the pixels training saw) and preprocessed by the weights' own `Preprocess`.
A file that cannot be read yields an error entry; the other files still get their results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alexnet.data.classes import imagenet_classes
from alexnet.data.images import is_image_file, load_image
from alexnet.data.preset import Preprocess
from alexnet.infer.features import FeatureFn, fc7
from alexnet.infer.quantize import as_inference_net


@dataclass
class Item:
    """One input file: its result (`top` or `features`) or the reason it failed."""

    file: str
    error: str | None = None
    top: list[dict[str, Any]] = field(default_factory=list)
    features: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON schema of `alexnet predict --json`: {file, predictions} or {file, error}."""
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, "predictions": self.top}


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, directories expanded to their image files (recursive, sorted).

    A named file is kept whatever its extension, so an unreadable one is reported, not skipped.
    """
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths.extend(sorted(p for p in item.rglob("*") if p.is_file() and is_image_file(p)))
        else:
            paths.append(item)
    return paths


def _load(path: Path, pre: Preprocess, views: Callable[[np.ndarray], torch.Tensor]) -> torch.Tensor:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return views(load_image(path, draft_size=pre.image_size))


def _batches(
    paths: list[Path], pre: Preprocess, views: Callable[[np.ndarray], torch.Tensor], batch_size: int
) -> Iterator[tuple[list[Item], torch.Tensor | None]]:
    """Decode files into batches of views; failed files come back as items with an error."""
    items: list[Item] = []
    tensors: list[torch.Tensor] = []
    for path in paths:
        item = Item(str(path))
        try:
            tensors.append(_load(path, pre, views))
        except (OSError, ValueError) as err:  # ImageDecodeError is a ValueError
            item.error = str(err)
        items.append(item)
        if len(tensors) == batch_size:
            yield items, torch.stack(tensors)
            items, tensors = [], []
    if items:
        yield items, torch.stack(tensors) if tensors else None


@torch.inference_mode()
def predict_files(
    model: nn.Module,
    pre: Preprocess,
    paths: list[Path],
    *,
    top: int = 5,
    ten_crop: bool = False,
    batch_size: int = 32,
) -> Iterator[Item]:
    """Top-k classes with probabilities for each file, in order; ten-crop averages the softmax
    of the ten patches (paper section 4.1). `model`: a net from `alexnet.infer.quantize.
    for_inference` (any precision), or a plain model (run as it is, fp32)."""
    net = as_inference_net(model)
    k = min(top, net.num_classes)
    views = pre.ten_crop if ten_crop else pre.center
    for items, x in _batches(paths, pre, views, batch_size):
        if x is not None:
            n_views = 10 if ten_crop else 1
            logits = net(x.flatten(0, 1) if ten_crop else x)
            probs = logits.float().softmax(-1).view(-1, n_views, logits.shape[-1]).mean(1)
            p, idx = probs.topk(k, dim=-1)
            rows = iter(zip(p.tolist(), idx.tolist(), strict=True))
        for item in items:
            if item.error is None:
                ps, ids = next(rows)
                item.top = [
                    _entry(rank, i, q, pre.classes)
                    for rank, (q, i) in enumerate(zip(ps, ids, strict=True), 1)
                ]
            yield item


def _entry(rank: int, index: int, prob: float, classes: list[str]) -> dict[str, Any]:
    label = classes[index] if index < len(classes) else str(index)
    entry = {"rank": rank, "index": index, "label": label, "probability": prob}
    if len(classes) == 1000:  # ImageNet: the synset id disambiguates "crane" and "maillot"
        table = imagenet_classes()
        if table[index].name == label:
            entry["synset"] = table[index].synset
    return entry


@torch.inference_mode()
def embed_files(
    model: nn.Module,
    pre: Preprocess,
    paths: list[Path],
    *,
    batch_size: int = 32,
    fn: FeatureFn = fc7,
) -> Iterator[Item]:
    """Features of each file's centre crop: by default `model.embed` (fc7 after its ReLU for
    the ImageNet nets); `fn=pooled_conv` for the anomaly bank. `model` as for `predict_files`."""
    net = as_inference_net(model)
    for items, x in _batches(paths, pre, pre.center, batch_size):
        feats = iter(fn(net, x).float().cpu().numpy()) if x is not None else None
        for item in items:
            if item.error is None:
                item.features = next(feats)
            yield item
