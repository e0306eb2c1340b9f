"""scripts/bench_finetune.py: steps to a threshold read off the val curve (hand-computed), the
per-arm analysis, and the whole measurement on tiny synthetic data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_finetune.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_finetune", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CURVE = [(10, 0.4), (20, 0.6), (30, 0.8)]  # (step, val accuracy) at epoch ends


def test_steps_to_hand_computed(bench) -> None:
    # between (10, 0.4) and (20, 0.6): 10 + (0.5 - 0.4) / (0.6 - 0.4) * 10 = 15
    assert bench.steps_to(CURVE, 0.5, chance=0.2) == (pytest.approx(15.0), 20)
    # before the first epoch end: from (0, chance 0.2) to (10, 0.4): 0.1 / 0.2 * 10 = 5
    assert bench.steps_to(CURVE, 0.3, chance=0.2) == (pytest.approx(5.0), 10)
    assert bench.steps_to(CURVE, 0.6, chance=0.2) == (pytest.approx(20.0), 20)  # exactly on it
    assert bench.steps_to(CURVE, 0.9, chance=0.2) == (None, None)  # never reached
    # a dip: the crossing is from the last point below, (20, 0.4) -> (30, 0.7): 20 + 2/3 * 10
    dip = [(10, 0.5), (20, 0.4), (30, 0.7)]
    at, end = bench.steps_to(dip, 0.6, chance=0.2)
    assert at == pytest.approx(26.6667, abs=1e-3) and end == 30


def test_analyse_thresholds_and_ratio(bench) -> None:
    run = {"seconds": 1.0, "test_top1_acc": None, "run": "x"}
    runs = {
        "finetune": [{**run, "curve": [(10, 0.5), (20, 0.7), (30, 0.75)]}],
        "scratch": [{**run, "curve": [*CURVE[:2], (30, 0.65)]}],
    }
    result = bench.analyse(runs, num_classes=5, fixed=[0.5])
    scratch_final, fixed = result["thresholds"]
    assert scratch_final["levels"] == [0.65]
    # scratch: (20, 0.6) -> (30, 0.65): 30; fine-tuned: (10, 0.5) -> (20, 0.7): 10 + 0.15/0.2*10
    assert scratch_final["arms"]["scratch"]["interpolated"]["per_seed"] == [pytest.approx(30.0)]
    assert scratch_final["arms"]["finetune"]["interpolated"]["per_seed"] == [pytest.approx(17.5)]
    assert scratch_final["scratch_over"]["finetune"]["per_seed"] == [pytest.approx(30 / 17.5)]
    # 0.5: scratch (10, 0.4) -> (20, 0.6) at 15; fine-tuned (0, 0.2) -> (10, 0.5) at 10
    assert fixed["scratch_over"]["finetune"]["per_seed"] == [pytest.approx(1.5)]
    assert fixed["arms"]["finetune"]["epoch_end"] == [10]
    assert result["arms"]["finetune"]["final_val_top1_acc"]["per_seed"] == [0.75]


def test_measure_on_synthetic_data(bench, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    args = bench.parse_args([
        "--out", str(out), "--source-data", "synthetic:48:16:3",
        "--target-data", "synthetic:40:16:4", "--num-classes", "4", "--image-size", "16",
        "--model-option", "input_size=12", "--source-epochs", "1", "--epochs", "2",
        "--batch-size", "8", "--source-batch-size", "8", "--lr", "0.05", "--seeds", "1",
        "--freeze", "conv2", "--log-every", "1",
    ])  # fmt: skip
    result = bench.measure(args)
    assert set(result["arms"]) == {"finetune", "scratch", "freeze-conv2"}
    saved = json.loads((out / "result.json").read_text())
    assert saved["arms"]["scratch"]["steps"] == [10]  # 2 epochs of 40 images in batches of 8
    for arm in saved["arms"].values():
        assert [s for s, _ in arm["curves"][0]] == [5, 10]
    config = (out / "target" / "finetune-seed0" / "config.yaml").read_text()
    assert f"init_from: {out / 'source'}" in config
    assert saved["thresholds"][0]["levels"] == [saved["arms"]["scratch"]["curves"][0][-1][1]]


def test_the_results_page_keeps_hand_written_sections(tmp_path) -> None:
    from alexnet.experiments.results_page import publish

    docs = tmp_path / "docs"
    (docs / "results").mkdir(parents=True)
    section = "## Fine-tuning (transfer from a source task)\n\nmeasured by a script\n"
    (docs / "results" / "finetune.md").write_text(section)
    page = publish([], docs).read_text()
    assert section.strip() + "\n" in page
    assert publish([], docs).read_text() == page  # rewriting the page keeps it, once


def test_a_diverged_run_reaches_nothing(bench) -> None:
    run = {"seconds": 1.0, "test_top1_acc": 0.2, "run": "x"}
    runs = {
        "finetune": [{**run, "curve": [(10, 0.55), (20, 0.2)], "diverged": True}],
        "scratch": [{**run, "curve": CURVE, "diverged": False}],
    }
    result = bench.analyse(runs, num_classes=5, fixed=[0.5])
    assert result["thresholds"][1]["arms"]["finetune"]["interpolated"]["per_seed"] == [None]
    assert result["arms"]["finetune"]["final_val_top1_acc"]["per_seed"] == [None]
    assert "diverged" in bench.table(result)
