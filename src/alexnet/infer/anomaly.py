"""Anomaly scoring with a memory bank of features of normal images (beyond the paper).

Features: the conv stack's output (`forward_features`, conv5 after pooling for AlexNet) averaged
over space, one value per map. Score of an image: the mean Euclidean distance to its k nearest
bank features (k-NN distance; the larger, the more unusual). Evaluation: one class of a labelled
data set is held out as "the anomaly"; the bank holds training images of the other classes; the
test images are scored and the AUROC says how well the score ranks anomalies above normal ones.

AUROC by ranks (Mann-Whitney): with all scores ranked 1..n (ties share their mean rank),
AUROC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), where R_pos is the rank sum of the
anomalies; it equals P(score_anomaly > score_normal) + P(equal) / 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from alexnet.data.preset import Preprocess
from alexnet.data.store import open_store
from alexnet.infer.features import pairwise_distances, pooled_conv, prepared_splits, store_features
from alexnet.train.weights import load_weights, run_data_spec

BANK_FORMAT = "alexnet-anomaly-bank/1"


@dataclass
class Bank:
    """Pooled conv features of normal images and how they were made."""

    features: np.ndarray  # float32 (N, D)
    k: int
    meta: dict[str, Any]

    def save(self, path: str | Path) -> Path:
        """An .npz of arrays only (read back without pickle)."""
        path = Path(path)
        meta = json.dumps({"format": BANK_FORMAT, "k": self.k, **self.meta})
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, features=self.features, meta=np.array(meta))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Bank:
        try:
            with np.load(path, allow_pickle=False) as f:
                meta, feats = json.loads(str(f["meta"])), f["features"]
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(
                f"{path}: not an anomaly bank from `alexnet anomaly fit` ({err})"
            ) from err
        if meta.pop("format", None) != BANK_FORMAT:
            raise ValueError(f"{path}: not an anomaly bank ({BANK_FORMAT})")
        return cls(feats, int(meta.pop("k")), meta)

    def score(self, feats: np.ndarray) -> np.ndarray:
        """Mean distance of each row of `feats` to its k nearest bank features."""
        k = min(self.k, len(self.features))
        d = pairwise_distances(feats, self.features, exact=False)
        return np.partition(d, k - 1, axis=1)[:, :k].mean(axis=1)


def auroc(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for the binary labels, by the rank formula."""
    scores = np.asarray(scores, np.float64)
    pos = np.asarray(is_anomaly, bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes; got {n_pos} anomalies and {n_neg} normal")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    # ties: every member of a run of equal scores gets the run's mean rank
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for s, c in zip(start, counts, strict=True):
        if c > 1:
            ranks[order[s : s + c]] = s + (c + 1) / 2
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate_held_out_class(
    model: nn.Module,
    pre: Preprocess,
    train: object,
    test: object,
    anomaly_class: int,
    *,
    k: int = 5,
    max_train: int = 5000,
    max_test: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Bank from training images not of `anomaly_class`; AUROC over (a sample of) the test set."""
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(np.asarray(train.labels) != anomaly_class)
    bank_idx = np.sort(rng.choice(normal, min(max_train, len(normal)), replace=False))
    test_idx = np.sort(rng.choice(len(test), min(max_test, len(test)), replace=False))
    bank = Bank(store_features(model, pre, train, bank_idx, fn=pooled_conv), k, {})
    scores = bank.score(store_features(model, pre, test, test_idx, fn=pooled_conv))
    is_anomaly = np.asarray(test.labels)[test_idx] == anomaly_class
    return {
        "anomaly_class": anomaly_class,
        "auroc": auroc(scores, is_anomaly),
        "bank_size": len(bank_idx),
        "test_size": len(test_idx),
        "anomalies": int(is_anomaly.sum()),
        "k": k,
        "mean_score_normal": float(scores[~is_anomaly].mean()),
        "mean_score_anomaly": float(scores[is_anomaly].mean()),
    }


def held_out_class_auroc(
    weights: str | Path,
    anomaly_class: str,
    *,
    data: str | None = None,
    k: int = 5,
    max_train: int = 5000,
    max_test: int = 2000,
) -> dict[str, Any]:
    """`alexnet anomaly eval`: `weights`' AUROC with `anomaly_class` (an index or a class name)
    of `data` (default: a run's own data) held out; its train split makes the bank, its test
    (else val) split is scored."""
    model, pre, _ = load_weights(weights)
    spec = data or (run_data_spec(Path(weights)) if Path(weights).is_dir() else None)
    if spec is None:
        raise ValueError("pass --data (the weights are not a run directory)")
    splits = prepared_splits(spec, pre.image_size)
    test_split = next((s for s in ("test", "val") if s in splits), None)
    if "train" not in splits or test_split is None:
        raise ValueError(f"{spec} needs a train and a test/val split, has {sorted(splits)}")
    train, test = open_store(splits["train"]), open_store(splits[test_split])
    held_out = class_index(anomaly_class, train.classes, train.class_names)
    result = evaluate_held_out_class(
        model, pre, train, test, held_out, k=k, max_train=max_train, max_test=max_test
    )
    return {**result, "anomaly_name": train.class_names[held_out]}


def class_index(value: str, classes: list[str], names: list[str]) -> int:
    """A class given by index (`1`) or by name or folder/synset id (`automobile`, any case)."""
    if value.strip().lstrip("-").isdigit():
        index = int(value)
        if not 0 <= index < len(classes):
            raise ValueError(f"--anomaly-class {index} not in 0..{len(classes) - 1}")
        return index
    wanted = value.strip().lower()
    for i, (cls, name) in enumerate(zip(classes, names, strict=True)):
        if wanted in (str(cls).lower(), str(name).lower()):
            return i
    raise ValueError(
        f"--anomaly-class {value!r} names no class of the data; its classes: {', '.join(names)}"
    )
