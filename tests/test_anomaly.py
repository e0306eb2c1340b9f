"""Anomaly scoring: the rank AUROC, the memory bank, and the held-out-class evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alexnet.cli import main
from alexnet.data.store import open_store
from alexnet.infer.anomaly import (
    Bank,
    auroc,
    class_index,
    evaluate_held_out_class,
    held_out_class_auroc,
)
from alexnet.train.weights import load_weights
from test_infer_helpers import make_run, photos, prepared_data


def brute_force_auroc(scores: np.ndarray, pos: np.ndarray) -> float:
    """P(anomaly scores above normal) + P(tie) / 2, by counting every pair."""
    p, n = scores[pos], scores[~pos]
    wins = (p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()
    return wins / (len(p) * len(n))


@pytest.mark.parametrize("seed", range(5))
def test_rank_auroc_equals_the_pairwise_count(seed: int) -> None:
    g = np.random.default_rng(seed)
    scores = g.integers(0, 12, 300).astype(float)  # many ties
    pos = g.random(300) < 0.2 + 0.1 * seed
    assert auroc(scores, pos) == pytest.approx(brute_force_auroc(scores, pos), abs=1e-12)


def test_auroc_extremes_and_errors() -> None:
    labels = np.array([0, 0, 1, 1], bool)
    assert auroc(np.array([1.0, 2, 3, 4]), labels) == 1.0
    assert auroc(np.array([4.0, 3, 2, 1]), labels) == 0.0
    assert auroc(np.ones(4), labels) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        auroc(np.ones(3), np.zeros(3, bool))


def test_bank_score_is_the_mean_of_the_k_smallest_distances(tmp_path: Path) -> None:
    g = np.random.default_rng(0)
    bank = Bank(g.normal(size=(50, 8)).astype(np.float32), 3, {"weights": "w"})
    queries = g.normal(size=(7, 8)).astype(np.float32)
    d = np.sqrt(((queries[:, None].astype(np.float64) - bank.features[None]) ** 2).sum(-1))
    want = np.sort(d, axis=1)[:, :3].mean(1)
    loaded = Bank.load(bank.save(tmp_path / "b.npz"))
    assert loaded.k == 3 and loaded.meta == {"weights": "w"}
    np.testing.assert_allclose(loaded.score(queries), want, rtol=1e-5)
    (tmp_path / "x.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"x\.npz"):
        Bank.load(tmp_path / "x.npz")


def test_held_out_class_of_coloured_noise_is_found(tmp_path: Path, capsys) -> None:
    data = prepared_data(tmp_path / "data")
    run = make_run(tmp_path / "run")
    model, pre, _ = load_weights(run)
    train, test = open_store(data / "train"), open_store(data / "val")
    result = evaluate_held_out_class(model, pre, train, test, anomaly_class=2, k=1)
    # the classes differ by colour: even random conv features separate them
    assert result["bank_size"] == 36 and result["anomalies"] == 1 and result["test_size"] == 8
    assert result["auroc"] > 0.8
    # `alexnet anomaly eval` (the class by its name) is the same evaluation from the files
    name = train.class_names[2]
    assert main(["anomaly", "eval", str(run), "--anomaly-class", name.upper(), "--data",
                 str(data), "--k", "1"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out) == {**result, "anomaly_name": name}
    assert held_out_class_auroc(run, "2", data=str(data), k=1) == {**result, "anomaly_name": name}


def test_class_index_by_index_or_name() -> None:
    classes, names = ["n01", "n02", "n03"], ["cat", "dog", "bird"]
    assert [class_index(v, classes, names) for v in ("1", "DOG", "n03", " cat ")] == [1, 1, 2, 0]
    with pytest.raises(ValueError, match=r"--anomaly-class 3 not in 0\.\.2"):
        class_index("3", classes, names)
    with pytest.raises(ValueError, match="'fish' names no class of the data; its classes: cat"):
        class_index("fish", classes, names)


def test_fit_and_score_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    files = photos(tmp_path / "photos")
    run = make_run(tmp_path / "run")
    bank = tmp_path / "bank.npz"
    normal = [str(files[k]) for k in ("jpeg", "png", "grey")]
    assert main(["anomaly", "fit", str(run), *normal, "--out", str(bank), "--k", "1"]) == 0
    capsys.readouterr()
    assert main(["anomaly", "score", str(bank), str(files["jpeg"]), str(files["cmyk"]),
                 str(files["corrupt"]), "--json"]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    rows = {Path(r["file"]).name: r for r in doc["results"]}
    assert "error" in rows["corrupt.jpg"]
    assert rows["chelsea.jpg"]["score"] < 1e-3 * rows["coffee_cmyk.jpg"]["score"]  # in the bank
