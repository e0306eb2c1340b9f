"""scripts/bench_inference.py: its test-set top-1 against the evaluation module's on the
loader's batches, the change in points hand-computed, and the interleaved timer's bookkeeping."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

from alexnet.data.loader import Loader
from alexnet.data.prepare import prepare
from alexnet.data.store import open_store
from alexnet.eval.evaluate import evaluate
from alexnet.train.run import eval_stats
from alexnet.train.weights import load_weights
from test_infer_helpers import IMAGE, make_run, tiny_model

skdata = pytest.importorskip("skimage.data")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import bench_inference as bench  # noqa: E402 (a script, found through the path above)


def test_top1_matches_the_evaluation_module(tmp_path) -> None:
    for i, name in enumerate(("astronaut", "chelsea", "coffee", "rocket", "cat", "retina")):
        folder = tmp_path / "photos" / f"c{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(getattr(skdata, name)()).save(folder / f"{name}.png")
    prepare(tmp_path / "photos", tmp_path / "store", size=IMAGE, workers=1, quiet=True)
    store_dir = tmp_path / "store" / "train"
    model, pre, _ = load_weights(make_run(tmp_path / "run", tiny_model(), mean_image=False))
    got = bench.test_top1(model, pre, store_dir, batch_size=4)  # batches of 4 and 2
    loader = Loader(open_store(store_dir), train=False, crop_size=pre.crop_size, batch_size=3,
                    stats=eval_stats(pre), normalize=pre.normalize)  # fmt: skip
    want = evaluate(model, loader.epoch(0), num_classes=10)["top1_acc"]
    assert got == pytest.approx(want, abs=1e-12)
    assert 0 < got < 1  # neither all right nor all wrong: the labels did count


def test_change_in_points_hand_computed() -> None:
    acc = {"d": {"fp32": [0.5, 0.6], "bf16": [0.5, 0.61], "int8": [0.497, 0.6]}}
    out = bench.summarise(acc)["d"]
    assert out["int8"]["change_points"] == pytest.approx([-0.3, 0.0])
    assert out["int8"]["mean_change_points"] == pytest.approx(-0.15)
    assert out["bf16"]["mean_top1"] == pytest.approx(0.555)


def test_latency_times_every_net_each_round() -> None:
    calls: list[str] = []

    def net(name: str):
        return lambda x: calls.append(name)

    ms = bench.latency({"a": net("a"), "b": net("b")}, (1, 1), rounds=3, calls=2)
    assert set(ms) == {"a", "b"} and all(v >= 0 for v in ms.values())
    timed = calls[4:]  # after two warm-up calls each
    assert timed == ["a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]  # rotating
