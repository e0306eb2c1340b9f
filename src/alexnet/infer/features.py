"""Features of prepared images, batched: fc7 for retrieval (paper figure 4, right) and pooled
conv features for anomaly scoring. Images come from a prepared store (`alexnet.data.store`)
and go through the weights' own preprocessing, centre crop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet.data.preset import Preprocess
from alexnet.train.distributed import DistContext
from alexnet.train.run import data_splits

FeatureFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def prepared_splits(spec: str, image_size: int) -> dict[str, Path]:
    """{split: store dir} of a prepared dir or a source (prepared into the cache once, at the
    weights' image size), as `alexnet train` resolves its `--data`."""
    return data_splits(spec, image_size, DistContext(), quiet=True)  # one process


def fc7(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last hidden layer (fc7 after its ReLU for the ImageNet nets): `model.embed`."""
    return model.embed(x)


def pooled_conv(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`forward_features` averaged over space: one value per conv5 map (256 for AlexNet)."""
    feats = model.forward_features(x)
    return feats.flatten(2).mean(-1) if feats.dim() == 4 else feats.flatten(1)


@torch.inference_mode()
def store_features(
    model: nn.Module,
    pre: Preprocess,
    store: object,
    indices: Sequence[int],
    *,
    fn: FeatureFn = fc7,
    batch_size: int = 64,
) -> np.ndarray:
    """float32 (len(indices), D) features of store images `indices`, in that order."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(indices), batch_size):
        batch = [pre.center(store.image(int(i))) for i in indices[start : start + batch_size]]
        out.append(fn(model, torch.stack(batch).to(device)).float().cpu().numpy())
    if not out:
        raise ValueError("no images to compute features of")
    return np.concatenate(out)


def pairwise_distances(queries: np.ndarray, bank: np.ndarray, *, exact: bool = True) -> np.ndarray:
    """Euclidean distances (Q, N) in float64. `exact`: by differences (no cancellation: an
    image's distance to itself is exactly 0); otherwise through matrix products (fast; a
    distance to itself comes out near sqrt(1e-16 |x|^2), not 0)."""
    mode = "donot_use_mm_for_euclid_dist" if exact else "use_mm_for_euclid_dist"
    b = torch.from_numpy(np.asarray(bank, np.float64))
    rows = []
    for start in range(0, len(queries), 256):  # bounded memory for big query sets
        q = torch.from_numpy(np.asarray(queries[start : start + 256], np.float64))
        rows.append(torch.cdist(q, b, compute_mode=mode).numpy())
    return np.concatenate(rows)


def nearest(queries: np.ndarray, bank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices), each (Q, k), of the k nearest bank rows to each query, nearest
    first; ties go to the lower index (a stable sort)."""
    d = pairwise_distances(queries, bank)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, axis=1), idx
