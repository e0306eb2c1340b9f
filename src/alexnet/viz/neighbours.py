"""Paper figure 4, right: for query images, the images whose fc7 activations are nearest in
Euclidean distance (the paper: "the retrieved images ... are often not close in pixel space",
which is the point of the figure). The distance is d(q, x) = ||fc7(q) - fc7(x)||_2, fc7 taken
after its ReLU (`model.embed`), the centre crop under the weights' own preprocessing, computed
in float64 (`alexnet.infer.features.nearest`).

Two sources of images: a run's prepared data (queries from test/val, neighbours from a sample
of train, labelled with their true classes), or any folder of image files (`--images DIR`:
every readable file is embedded, queries are a fixed-seed sample of them, and each query's
neighbours are the other files, itself left out; labelled with file names and the net's
top-1 class).

The fc7 index of the training images is built once and stored as RUN_DIR/figures/fc7_index.npz
(features, the store indices they belong to, and a key naming the checkpoint and the store);
later calls reuse it while the key matches.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import nn

from alexnet.data.images import load_image
from alexnet.data.preset import Preprocess
from alexnet.infer.features import nearest, pairwise_distances, store_features
from alexnet.infer.predict import embed_files, expand_inputs, predict_files
from alexnet.viz.common import display_image, new_figure, save

NEIGHBOURS = 6
CELL = 150  # pixels per image
CAPTION_H = 36  # pixels above each image for its caption (up to three lines)
TITLE_H = 44  # pixels above the rows: title and the distance's definition
DISTANCE = "d = ||fc7(query) - fc7(image)||_2 (Euclidean, fc7 after ReLU, centre crop)"


def sample_indices(count: int, limit: int, seed: int = 0) -> np.ndarray:
    """Up to `limit` of range(count), drawn without replacement with a fixed seed, sorted."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, limit, replace=False))


def index_key(checkpoint: Path, store: object) -> str:
    """What the index depends on: the checkpoint file (path, size, mtime) and the store."""
    checkpoint = Path(checkpoint)
    st = checkpoint.stat() if checkpoint.is_file() else None
    return json.dumps(
        [
            str(checkpoint.resolve()),
            st.st_size if st else None,
            st.st_mtime_ns if st else None,
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


def figure_size(queries: int, k: int = NEIGHBOURS) -> tuple[int, int]:
    """Pixel size of a neighbours figure: a row per query, the query and k neighbours."""
    return CELL * (k + 1), (CELL + CAPTION_H) * queries + TITLE_H


def neighbours_figure(
    queries: Sequence[np.ndarray],
    query_captions: Sequence[str],
    rows: Sequence[Sequence[np.ndarray]],
    captions: Sequence[Sequence[str]],
    distances: np.ndarray,
    *,
    title: str = "fc7 nearest neighbours",
) -> Any:
    """The figure: row r is query r (`query_captions[r]`, red frame) then its neighbours,
    nearest first, each captioned with its label and its distance d; the title and the
    distance's definition on top."""
    k = max((len(r) for r in rows), default=0)
    width, height = figure_size(len(queries), k)
    fig = new_figure(width, height)
    fig.suptitle(title, x=0.005, y=1 - 4 / height, ha="left", va="top", fontsize=11)
    fig.text(0.005, 1 - 24 / height, DISTANCE, ha="left", va="top", fontsize=8.5)
    row_h = CELL + CAPTION_H
    for r, query in enumerate(queries):
        images = [query, *rows[r]]
        texts = [query_captions[r]]
        texts += [f"{captions[r][c]}\nd = {distances[r, c]:.4g}" for c in range(len(rows[r]))]
        for c, (img, text) in enumerate(zip(images, texts, strict=True)):
            bottom = height - TITLE_H - (r + 1) * row_h
            ax = fig.add_axes(
                [
                    (c * CELL + 3) / width,
                    (bottom + 3) / height,
                    (CELL - 6) / width,
                    (CELL - 6) / height,
                ]
            )
            ax.imshow(display_image(img), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(c == 0)
                spine.set_color("tab:red")
                spine.set_linewidth(2)
            ax.set_title(text, fontsize=7.5, color="tab:red" if c == 0 else "black", pad=2)
    return fig


def plot_neighbours(
    queries: list[np.ndarray],
    query_feats: np.ndarray,
    bank: np.ndarray,
    bank_indices: np.ndarray,
    train_store: object,
    path: Path,
    *,
    query_labels: Sequence[int] | None = None,
    title: str = "fc7 nearest training images of test images",
) -> tuple[Path, np.ndarray]:
    """One row per query: the query, then its NEIGHBOURS nearest training images, labelled with
    their classes. Returns the figure path and the neighbours' store indices (Q, NEIGHBOURS)."""
    dist, idx = nearest(query_feats, bank, NEIGHBOURS)
    found = bank_indices[idx]
    names = getattr(train_store, "class_names", None) or []

    def name(label: int) -> str:
        return names[label] if label < len(names) else f"class {label}"

    if query_labels is not None:
        q_caps = [f"query, true: {name(int(q))}" for q in query_labels]
    else:
        q_caps = ["query" for _ in queries]
    rows = [[train_store.image(int(i)) for i in row] for row in found]
    caps = [[f"true: {name(int(train_store.labels[int(i)]))}" for i in row] for row in found]
    fig = neighbours_figure(queries, q_caps, rows, caps, dist, title=title)
    return save(fig, path), found


@dataclass
class FolderNeighbours:
    """fc7 neighbours within a folder: `files` embedded (row order of `features`), `queries`
    (row indices), per query the k nearest other rows `found` and their `distances`."""

    files: list[Path]
    features: np.ndarray
    queries: np.ndarray
    found: np.ndarray
    distances: np.ndarray
    errors: list[str] = field(default_factory=list)


def folder_neighbours(
    model: nn.Module,
    pre: Preprocess,
    folder: str | Path,
    *,
    queries: int = 4,
    k: int = NEIGHBOURS,
    seed: int = 2,
) -> FolderNeighbours:
    """Embed every image file under `folder` (`alexnet embed`'s path: decoder, preprocessing,
    centre crop); pick `queries` of them (fixed seed); for each, the k nearest other files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such image folder")
    files, feats, errors = [], [], []
    for item in embed_files(model, pre, expand_inputs([folder])):
        if item.error is not None:
            errors.append(item.error)
        else:
            files.append(Path(item.file))
            feats.append(item.features)
    if len(files) < 2:
        raise ValueError(f"{folder}: {len(files)} readable image(s); neighbours need at least 2")
    features = np.stack(feats).astype(np.float32)
    q = sample_indices(len(files), queries, seed=seed)
    k = min(k, len(files) - 1)
    d = pairwise_distances(features[q], features)
    d[np.arange(len(q)), q] = np.inf  # a query is not its own neighbour
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return FolderNeighbours(files, features, q, idx, np.take_along_axis(d, idx, axis=1), errors)


def thumbnail(path: Path, side: int = 256) -> np.ndarray:
    """The whole image, shrunk to at most side x side, for display."""
    img = Image.fromarray(load_image(path, draft_size=side))
    img.thumbnail((side, side))
    return np.asarray(img)


def top1_names(model: nn.Module, pre: Preprocess, paths: Sequence[Path]) -> list[str]:
    """'name (probability)' of the net's top class for each file."""
    return [
        f"{i.top[0]['label'][:20]} ({i.top[0]['probability']:.2f})" if i.top else "?"
        for i in predict_files(model, pre, list(paths), top=1)
    ]


def plot_folder_neighbours(
    model: nn.Module,
    pre: Preprocess,
    result: FolderNeighbours,
    folder: Path,
    path: Path,
    *,
    title: str = "fc7 nearest neighbours",
) -> Path:
    """The figure of `folder_neighbours`: file names (relative to the folder) and predicted
    classes under every image."""
    shown = sorted({int(i) for i in result.queries} | {int(i) for i in result.found.flat})
    preds = dict(zip(shown, top1_names(model, pre, [result.files[i] for i in shown]), strict=True))

    def caption(i: int) -> str:
        rel = (
            result.files[i].relative_to(folder)
            if result.files[i].is_relative_to(folder)
            else (result.files[i])
        )
        text = str(rel)
        return f"{text if len(text) <= 24 else '...' + text[-21:]}\npred: {preds[i]}"

    q_caps = [f"query: {caption(int(q))}" for q in result.queries]
    rows = [[thumbnail(result.files[int(i)]) for i in row] for row in result.found]
    caps = [[caption(int(i)) for i in row] for row in result.found]
    fig = neighbours_figure(
        [thumbnail(result.files[int(q)]) for q in result.queries],
        q_caps,
        rows,
        caps,
        result.distances,
        title=title,
    )
    return save(fig, path)
