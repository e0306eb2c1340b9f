"""The paper's-claims experiments: their arithmetic against hand-computed values, the results
page against the numbers it is generated from, and each experiment alive in smoke mode."""

from __future__ import annotations

import json
import statistics
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.cli import main
from alexnet.experiments import EXPERIMENTS
from alexnet.experiments.common import fit, held_out_zip, merged, summary
from alexnet.experiments.fig1 import epochs_to
from alexnet.experiments.results_page import publish
from alexnet.experiments.towers import measure, permutation_p, tower_gap


def test_epochs_to_interpolates_between_epoch_ends() -> None:
    # 0.3 after epoch 2, 0.2 after epoch 3: 25% is crossed half-way, at 2.5; first whole epoch 3
    assert epochs_to([0.6, 0.3, 0.2]) == pytest.approx((2.5, 3))
    # from chance (0.9 at x = 0) to 0.1 after epoch 1: (0.9 - 0.25) / 0.8 of the way
    assert epochs_to([0.1]) == pytest.approx((0.8125, 1))
    assert epochs_to([0.5, 0.4, 0.26]) == (None, None)


def test_summary_matches_statistics_and_counts_missing() -> None:
    values = [6.5, 5.25, None, 7.0]
    out = summary(values)
    have = [6.5, 5.25, 7.0]
    assert out["mean"] == pytest.approx(statistics.fmean(have))
    assert out["std"] == pytest.approx(statistics.stdev(have))
    assert (out["n"], out["missing"], out["min"], out["max"]) == (3, 1, 5.25, 7.0)
    assert summary([None]) == {"per_seed": [None], "n": 0, "missing": 1}


def test_merged_layers_merge_model_options_key_by_key() -> None:
    base = {"lr": 0.01, "model_options": {"input_size": 67, "init": "kaiming"}}
    arm = {"model_options": {"pool": "nonoverlap"}, "lr": 0.02}
    out = merged(base, arm)
    assert out["model_options"] == {"input_size": 67, "init": "kaiming", "pool": "nonoverlap"}
    assert out["lr"] == 0.02 and base["model_options"] == {"input_size": 67, "init": "kaiming"}


def _cifar_like_zip(path: Path) -> Path:
    """c10/<split>/<class>/<file>: 20 train and 5 test files per class, each holding its name."""
    with zipfile.ZipFile(path, "w") as zf:
        for split, per_class in (("train", 20), ("test", 5)):
            for cls in ("cat", "dog"):
                for i in range(per_class):
                    zf.writestr(f"c10/{split}/{cls}/{i:04d}.jpg", f"{split}{cls}{i}".encode())
    return path


def test_held_out_zip_splits_train_per_class_and_drops_test(tmp_path: Path) -> None:
    src = _cifar_like_zip(tmp_path / "src.zip")
    out = held_out_zip(src, tmp_path / "held.zip", fraction=0.25, seed=3)
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        contents = {n: zf.read(n) for n in names}
    for cls in ("cat", "dog"):
        val = [n for n in names if n.startswith(f"val/{cls}/")]
        train = [n for n in names if n.startswith(f"train/{cls}/")]
        assert len(val) == 5 and len(train) == 15  # a quarter of each class's 20
        assert {n.rsplit("/", 1)[1] for n in val + train} == {f"{i:04d}.jpg" for i in range(20)}
    assert not [n for n in names if "test" in n]  # the test split never reaches a sweep
    assert all(v == f"train{n.split('/')[1]}{int(n[-8:-4])}".encode() for n, v in contents.items())


def test_held_out_zip_reduces_train_keeps_test_and_refuses_counts_that_do_not_fit(
    tmp_path: Path,
) -> None:
    src = _cifar_like_zip(tmp_path / "src.zip")
    out = held_out_zip(
        src, tmp_path / "reduced.zip", val_per_class=3, train_per_class=6, keep_test=True
    )
    with zipfile.ZipFile(out) as zf:
        contents = {n: zf.read(n) for n in zf.namelist()}
    for cls in ("cat", "dog"):
        val = {n.rsplit("/", 1)[1] for n in contents if n.startswith(f"val/{cls}/")}
        train = {n.rsplit("/", 1)[1] for n in contents if n.startswith(f"train/{cls}/")}
        test = {n.rsplit("/", 1)[1] for n in contents if n.startswith(f"test/{cls}/")}
        assert len(val) == 3 and len(train) == 6 and not val & train  # disjoint, stratified
        assert test == {f"{i:04d}.jpg" for i in range(5)}  # the whole test split
    for name, data in contents.items():  # bytes unchanged, each from its own source split
        split, cls, file = name.split("/")
        source = "test" if split == "test" else "train"
        assert data == f"{source}{cls}{int(file[:4])}".encode()
    for val, train in ((-1, 5), (3, 0), (5, 16)):
        with pytest.raises(ValueError, match="cannot hold out"):
            held_out_zip(src, tmp_path / f"bad{val}{train}.zip", val_per_class=val,
                         train_per_class=train)  # fmt: skip
        assert not (tmp_path / f"bad{val}{train}.zip").exists()
    assert not list(tmp_path.glob(".*tmp-*"))  # no partial zip left behind


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--train-per-class", "0"], "--train-per-class must be >= 1"),
        (["--train-per-class", "5", "--val-per-class", "0"], "--val-per-class must be >= 1"),
        (["--runs", "shared"], "go with --train-per-class"),
    ],
)
def test_experiment_refuses_bad_overfit_options_before_preparing(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["experiment", "dropout", "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_tower_gap_and_permutation_test() -> None:
    split = np.r_[np.full(48, 0.1), np.full(48, 0.9)]  # tower 1 grey, tower 2 colour
    assert tower_gap(split) == pytest.approx(0.8)
    assert permutation_p(split, permutations=500) == pytest.approx(1 / 501)
    mixed = np.tile([0.1, 0.9], 48)  # both towers hold the same values: no gap at all
    assert tower_gap(mixed) == pytest.approx(0.0)
    assert permutation_p(mixed, permutations=200) == 1.0


def test_towers_measure_finds_the_start_a_run_drew(tmp_path: Path) -> None:
    """The start the measure rebuilds is the run's own: trained with a vanishing lr and no
    momentum or decay, conv1 ends where it began (cosine 1, learned part ~0); a wrong seed or
    option would give an unrelated random start (cosine near 0)."""
    from alexnet.experiments.common import prepared

    data = str(prepared("synthetic:16:67:3", 67))
    layer = {
        "data": data, "image_size": 67, "model": "alexnet", "lr": 1e-12, "momentum": 0.0,
        "weight_decay": 0.0, "batch_size": 8, "precision": "fp32", "seed": 3, "flip": False,
        "model_options": {"input_size": 67, "init": "kaiming_paper_conv1"}, "threads": 1,
    }  # fmt: skip
    fit(layer, tmp_path / "run", epochs=1)
    m = measure(tmp_path / "run", tmp_path / "kernels.png")
    assert m["start_cosine"] == pytest.approx(1.0, abs=1e-9)
    trained = fit({**layer, "lr": 0.05, "seed": 4}, tmp_path / "moved", epochs=2)
    assert (
        trained["records"]
        and measure(tmp_path / "moved", tmp_path / "k2.png")["start_cosine"] < 1 - 1e-4
    )


def test_fit_stops_at_the_target_and_continues_a_stopped_run(tmp_path: Path) -> None:
    from alexnet.experiments.common import prepared
    from alexnet.experiments.fig1 import base_layer

    data = str(prepared("synthetic:64:32:10", 32, view=tmp_path / "data"))
    layer = {**base_layer("relu", data), "batch_size": 32, "lr": 0.01}
    first = fit(layer, tmp_path / "run", epochs=3, until=lambda records: True)
    assert [r["epoch"] for r in first["records"]] == [1] and first["test"] is None
    second = fit(layer, tmp_path / "run", epochs=2)  # picks the run up from its checkpoint
    assert [r["epoch"] for r in second["records"]] == [1, 2]
    assert second["records"][0] == first["records"][0] and not second["cut_short"]
    late = fit(layer, tmp_path / "run", epochs=4, deadline=time.time())  # no epoch may start
    assert len(late["records"]) == 2 and late["cut_short"]


def test_fit_is_one_training_call_and_a_stopped_run_continues_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target stops the trainer itself (one `train` call, not one per epoch); the stopped run,
    continued by `resume`, ends with the weights of a run that never stopped."""
    from alexnet.experiments import common
    from alexnet.experiments.fig1 import base_layer

    data = str(common.prepared("synthetic:64:32:10", 32, view=tmp_path / "data"))
    layer = {**base_layer("relu", data), "batch_size": 16, "lr": 0.01}
    calls: list[str] = []
    for name in ("train", "resume"):
        real = getattr(common, name)
        monkeypatch.setattr(
            common, name, lambda *a, _r=real, _n=name, **k: calls.append(_n) or _r(*a, **k)
        )
    stopped = fit(layer, tmp_path / "stopped", epochs=3, until=lambda records: len(records) == 2)
    assert calls == ["train"] and len(stopped["records"]) == 2 and not stopped["cut_short"]
    continued = fit(layer, tmp_path / "stopped", epochs=3)
    assert calls == ["train", "resume"] and len(continued["records"]) == 3
    straight = fit(layer, tmp_path / "straight", epochs=3)
    assert [r["train_loss"] for r in continued["records"]] == [
        r["train_loss"] for r in straight["records"]
    ]
    a, b = (
        torch.load(tmp_path / run / "checkpoints" / "last.pt", weights_only=True)["model"]
        for run in ("stopped", "straight")
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_longer_lrn_run_is_the_shorter_one_carried_on(tmp_path: Path) -> None:
    """lrn's schedule is constant, so asking the same run for more epochs (a later invocation)
    ends where one uninterrupted run of that length ends, bit for bit."""
    from alexnet.experiments import lrn
    from alexnet.experiments.common import prepared

    data = str(prepared("synthetic:64:32:10", 32))
    layer = merged({**lrn.base_layer(data, 0.01, "fp32"), "batch_size": 32, "threads": 1},
                   lrn.ARMS["with LRN"], {"seed": 0})  # fmt: skip
    fit(layer, tmp_path / "carried", 1)
    carried = fit(layer, tmp_path / "carried", 2)
    straight = fit(layer, tmp_path / "straight", 2)
    assert len(carried["records"]) == len(straight["records"]) == 2
    a = torch.load(tmp_path / "carried/checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert carried["test"]["top1_err"] == straight["test"]["top1_err"]


def test_a_deadline_leaves_both_arms_of_a_seed_at_the_same_epoch(tmp_path: Path) -> None:
    from alexnet.experiments import lrn
    from alexnet.experiments.common import Context, prepared
    from alexnet.experiments.compare import lagging, run_comparison

    data = str(prepared("synthetic:64:32:10", 32))
    base = {**lrn.base_layer(data, 0.01, "fp32"), "batch_size": 32}
    # the deadline of an earlier invocation stopped one arm after two epochs, the other after one
    ahead = fit(
        merged(base, lrn.ARMS["with LRN"], {"seed": 0}), tmp_path / "runs/with-LRN-seed0", 2
    )
    fit(merged(base, lrn.ARMS["without LRN"], {"seed": 0}), tmp_path / "runs/without-LRN-seed0", 1)
    ctx = Context("lrn", tmp_path, smoke=True, seeds=1, deadline=time.time())  # no epoch may start
    info = {"claim": "c", "paper": lrn.PAPER, "title": "t"}
    result = run_comparison(ctx, base, lrn.ARMS, 3, info)
    for arm in result["arms"].values():
        assert arm["epochs_run"] == [2] and arm["cut_short"] == [True]
        assert arm["test_top1_err"]["per_seed"][0] is not None
    with_lrn = result["arms"]["with LRN"]["test_top1_err"]["per_seed"][0]
    assert with_lrn == pytest.approx(ahead["test"]["top1_err"])  # the arm ahead was left alone
    diverged = {"records": [{}] * 5, "diverged": True}
    runs = {"a seed 0": {"records": [{}] * 2, "diverged": False}, "b seed 0": diverged}
    assert lagging(runs, ["a", "b"], 1) == {}  # a diverged run sets no level


def _fake_result(name: str, finished: str, errs: list[float], figure: Path) -> dict:
    numbers = summary(errs)
    return {
        "experiment": name,
        "claim": f"claim of {name}",
        "finished": finished,
        "smoke": False,
        "rows": [{"what": "test top-1 error", "paper": "11%", "ours": numbers, "unit": "%"}],
        "epochs": 4,
        "seeds": len(errs),
        "wall_seconds": 90.0,
        "git_commit": "abc123",
        "command": f"alexnet experiment {name} --out x",
        "figure": figure.name,
        "hardware": {"cpu": "Test CPU", "cores": 2, "gpu": None, "torch": "2"},
        "load_average_at_end": [1.5, 1.0, 1.0],
    }


def test_page_is_generated_from_the_published_results(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    runs = []
    for i, (stamp, errs) in enumerate(
        [("2026-01-01T00:00:00Z", [0.30, 0.32]), ("2026-01-02T00:00:00Z", [0.20, 0.25, 0.27])]
    ):
        run = tmp_path / f"run{i}"
        run.mkdir()
        (run / "lrn.png").write_bytes(b"\x89PNG fake")
        (run / "result.json").write_text(
            json.dumps(_fake_result("lrn", stamp, errs, run / "lrn.png"))
        )
        runs.append(run)
    page = publish(runs, docs).read_text()
    # at a glance: the row with a paper value, the current result's mean
    assert "| lrn | test top-1 error | 11% | 24.0% ± 3.6 (n=3) | 4 |" in page
    # current: mean 24.0%, sd of (20, 25, 27) = 3.6 points; each seed listed
    assert "24.0% ± 3.6 (n=3)" in page
    assert "20.0%, 25.0%, 27.0%" in page
    assert "Superseded: 2026-01-01T00:00:00Z" in page and "31.0%" in page
    assert (docs / "figures" / "lrn-20260102T000000Z.png").read_bytes() == b"\x89PNG fake"
    assert "](figures/lrn-20260102T000000Z.png)" in page
    for other in set(EXPERIMENTS) - {"lrn"}:
        assert f"alexnet experiment {other} --out" in page  # listed as not yet run
    smoke = tmp_path / "smoke"
    smoke.mkdir()
    (smoke / "result.json").write_text(
        json.dumps({**_fake_result("fig1", "t", [0.1], smoke), "smoke": True})
    )
    with pytest.raises(ValueError, match="smoke"):
        publish([smoke], docs)


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_experiment_smoke(name: str, tmp_path: Path) -> None:
    out = tmp_path / name
    assert main(["experiment", name, "--smoke", "--seeds", "1", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["experiment"] == name and result["smoke"] is True
    assert result["command"].startswith("alexnet experiment") and result["git_commit"]
    assert result["hardware"]["cores"] >= 1 and (out / "log.txt").is_file()
    figure = out / result["figure"]
    assert figure.read_bytes()[:4] == b"\x89PNG" and figure.stat().st_size < 200_000
    for row in result["rows"]:
        assert len(row["ours"]["per_seed"]) == 1
    # a recipe whose inputs and init disagree in scale blows up at once (the ablations' Kaiming
    # init on 0-255 pixels: a loss of ~1e4 after two steps); a sane start stays near ln(10)
    records = [
        json.loads(line)
        for path in out.glob("**/metrics.jsonl")
        for line in path.read_text().splitlines()
    ]
    losses = [r["train_loss"] for r in records if r["kind"] == "epoch"]
    assert losses and all(np.isfinite(loss) and loss < 10 for loss in losses), losses


def test_prepared_view_repoints_a_link_left_to_another_store(tmp_path: Path) -> None:
    from alexnet.experiments.common import prepared

    stale = tmp_path / "old-cache" / "train"
    stale.mkdir(parents=True)  # e.g. a store since prepared again under another key
    (tmp_path / "view").mkdir()
    (tmp_path / "view" / "train").symlink_to(stale, target_is_directory=True)
    view = prepared("synthetic:64:32:10", 32, view=tmp_path / "view")
    target = (view / "train").resolve()
    assert target != stale.resolve() and (target / "meta.json").is_file()


def test_workers_and_threads_reach_every_run_and_the_command(tmp_path: Path) -> None:
    out = tmp_path / "lrn"
    argv = ["experiment", "lrn", "--smoke", "--seeds", "1", "--workers", "1", "--threads", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert "--workers 1" in result["command"] and "--threads 1" in result["command"]
    configs = sorted((out / "runs").glob("*/config.yaml"))
    assert len(configs) == 2  # one run per arm
    for path in configs:
        text = path.read_text()
        assert "workers: 1" in text.splitlines() and "threads: 1" in text.splitlines()


@pytest.mark.parametrize("flag", ["--jobs", "--workers"])
def test_experiment_refuses_a_bad_process_count(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["experiment", "lrn", "--smoke", flag, "-1", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert f"{flag} must be" in capsys.readouterr().err


def test_git_state_takes_a_named_commit_over_the_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess

    from alexnet.experiments import common

    def no_git(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 128, "", "fatal: not a git repository")

    monkeypatch.setattr(common.subprocess, "run", no_git)
    monkeypatch.delenv("ALEXNET_SOURCE_COMMIT", raising=False)
    assert common.git_state() == ("unknown", [])
    monkeypatch.setenv("ALEXNET_SOURCE_COMMIT", "0123456789ab")
    commit, dirty = common.git_state()
    assert commit.startswith("0123456789ab (") and "ALEXNET_SOURCE_COMMIT" in commit
    assert dirty == []
    monkeypatch.undo()  # real git again: the named commit still wins over the checkout's HEAD
    monkeypatch.setenv("ALEXNET_SOURCE_COMMIT", "0123456789ab")
    assert common.git_state()[0].startswith("0123456789ab (")


def test_page_names_the_runs_the_budget_cut_short_and_the_notes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "p.png").write_bytes(b"\x89PNG fake")
    arms = {
        "overlap": {"cut_short": [True, False], "epochs_run": [9, 10]},
        "non-overlap": {"cut_short": [False, False], "epochs_run": [10, 10]},
    }
    result = {**_fake_result("pooling", "2026-01-03T00:00:00Z", [0.2, 0.3], run / "p.png")}
    result.update(arms=arms, epochs=10, notes=["ran on a borrowed GPU"])
    (run / "result.json").write_text(json.dumps(result))
    towers = tmp_path / "towers"
    towers.mkdir()
    (towers / "k.png").write_bytes(b"\x89PNG fake")
    one_arm = {**_fake_result("towers", "2026-01-03T00:00:00Z", [0.1, 0.1], towers / "k.png")}
    one_arm.update(epochs=10, cut_short=[True, True], epochs_run=[6, 5])
    (towers / "result.json").write_text(json.dumps(one_arm))
    page = publish([run, towers], tmp_path / "docs").read_text()
    assert "planned: 10 epochs): overlap (9, 10 epochs by seed)." in page
    assert "| 9-10 (planned 10) |" in page and "| 5-6 (planned 10) |" in page  # at a glance
    assert "non-overlap (" not in page  # not cut: not listed
    assert "every seed (6, 5 epochs by seed)" in page
    assert "**Note.** ran on a borrowed GPU" in page


def test_page_headlines_the_claims_row_and_an_open_ended_runs_cap(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    for stamp, ratios in (("2026-01-01T00:00:00Z", [3.0, 5.0]), ("2026-01-02T00:00:00Z", [6.0])):
        run = tmp_path / stamp[:10]
        run.mkdir()
        result = _fake_result("fig1", stamp, [0.1], run / "none.png")
        del result["epochs"], result["figure"]  # figure 1 stops at a target, up to a cap
        ratio = {"what": "ratio tanh / ReLU", "paper": "about 6x", "ours": summary(ratios)}
        result["rows"] = [{**result["rows"][0], "paper": None}, {**ratio, "unit": "x"}]
        result.update(epoch_cap=40, cut_short=[True], epochs_run=[16])
        (run / "result.json").write_text(json.dumps(result))
        publish([run], docs)
    page = (docs / "results.md").read_text()
    # the ratio row (the one the paper gives a number for) heads both the glance and the history
    row = "| fig1 | ratio tanh / ReLU | about 6x | 6.00x ± 0.00 (n=1) | 16 (planned up to 40) |"
    assert row in page
    assert (
        "Superseded: 2026-01-01T00:00:00Z, `abc123`: ratio tanh / ReLU 4.00x ± 1.41 (n=2)" in page
    )
    assert "(planned: up to 40 epochs): every seed (16 epochs by seed)" in page
