"""Paper figure 4, right: for query images, the training images whose fc7 activations are
nearest in Euclidean distance (the paper: "the retrieved images ... are often not close in
pixel space", which is the point of the figure).

The fc7 index of the training images is built once and stored as RUN_DIR/figures/fc7_index.npz
(features, the store indices they belong to, and a key naming the checkpoint and the store);
later calls reuse it while the key matches.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch import nn

from alexnet.data.preset import Preprocess
from alexnet.infer.features import nearest, store_features
from alexnet.viz.common import display_image, new_figure, save

NEIGHBOURS = 6
CELL = 150  # pixels per image


def sample_indices(count: int, limit: int, seed: int = 0) -> np.ndarray:
    """Up to `limit` of range(count), drawn without replacement with a fixed seed, sorted."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, limit, replace=False))


def index_key(checkpoint: Path, store: object) -> str:
    """What the index depends on: the checkpoint file (path, size, mtime) and the store."""
    st = checkpoint.stat()
    return json.dumps(
        [
            str(checkpoint.resolve()),
            st.st_size,
            st.st_mtime_ns,
            str(Path(store.path).resolve()),
            len(store),
        ]
    )


def load_or_build_index(
    path: Path, key: str, model: nn.Module, pre: Preprocess, store: object, limit: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(features, store indices, built_now) of the training-image fc7 index at `path`."""
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) == key and int(f["limit"]) == limit:
                return f["features"], f["indices"], False
    indices = sample_indices(len(store), limit)
    feats = store_features(model, pre, store, indices)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, features=feats, indices=indices, key=np.array(key), limit=np.array(limit))
    tmp.replace(path)
    return feats, indices, True


def plot_neighbours(
    queries: list[np.ndarray],
    query_feats: np.ndarray,
    bank: np.ndarray,
    bank_indices: np.ndarray,
    train_store: object,
    path: Path,
) -> tuple[Path, np.ndarray]:
    """One row per query: the query, then its NEIGHBOURS nearest training images.
    Returns the figure path and the neighbours' store indices (Q, NEIGHBOURS)."""
    dist, idx = nearest(query_feats, bank, NEIGHBOURS)
    found = bank_indices[idx]
    fig = new_figure(CELL * (NEIGHBOURS + 1), CELL * len(queries))
    axes = fig.subplots(len(queries), NEIGHBOURS + 1, squeeze=False)
    for r, query in enumerate(queries):
        axes[r, 0].imshow(display_image(query), cmap="gray")
        axes[r, 0].set_title("query", fontsize=9, color="tab:red")
        for c in range(NEIGHBOURS):
            axes[r, c + 1].imshow(display_image(train_store.image(int(found[r, c]))), cmap="gray")
            axes[r, c + 1].set_title(f"d={dist[r, c]:.3g}", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.05, hspace=0.25)
    return save(fig, path), found
