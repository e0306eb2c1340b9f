"""scripts/bench_gpu.py and alexnet.bench.gpu: the projection against the hand formula, the
worker choice and the budget shares, the step counting, a failing stage recorded while the next
runs, and the whole bench end to end on the CPU at tiny sizes (every field of result.json)."""

from __future__ import annotations

import importlib
import json
import math
import sys
import types
from pathlib import Path

import pytest
import torch

from alexnet.bench import gpu
from alexnet.bench.loader import ExamplesDataset

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture
def script(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module("bench_gpu")


def test_projection_is_the_hand_formula() -> None:
    # 90 epochs x 1,281,167 images = 115,305,030 images; at 1,000 img/s: 115,305.03 s
    one = gpu.project(1000.0)
    assert one["hours"] == pytest.approx(115_305.03 / 3600) == pytest.approx(32.02918, abs=1e-5)
    assert one["days"] == pytest.approx(one["hours"] / 24)
    assert one["scaling_efficiency"] == 1.0  # one GPU scales by definition
    # eight at 90%: 7,200 img/s in all
    eight = gpu.project(1000.0, gpus=8, efficiency=0.9)
    assert eight["img_per_s"] == pytest.approx(7200.0)
    assert eight["hours"] == pytest.approx(115_305.03 / 7.2 / 3600)
    assert gpu.project(500.0, gpus=2, efficiency=1.0, epochs=1, images_per_epoch=3600)[
        "hours"
    ] == pytest.approx(3600 / 1000 / 3600)
    for bad in (
        {"img_per_s": 0.0},
        {"img_per_s": 1.0, "gpus": 0},
        {"img_per_s": 1.0, "efficiency": 1.5},
    ):
        with pytest.raises(ValueError):
            gpu.project(**bad)


def test_enough_workers_is_the_fewest_within_five_percent_of_the_best() -> None:
    points = [(0, 300.0), (1, 900.0), (2, 1700.0), (4, 1950.0), (8, 2000.0)]
    rows = [{"workers": w, "img_per_s": r} for w, r in points]
    assert gpu.enough_workers(rows) == 4  # 1950 >= 0.95 * 2000 = 1900; 1700 is not
    assert gpu.enough_workers(rows, share=0.8) == 2  # 1700 >= 1600
    assert gpu.enough_workers(rows[:1]) == 0


def test_stage_budgets_share_the_total_in_proportion() -> None:
    budgets = gpu.stage_budgets(240.0)
    assert list(budgets) == list(gpu.STAGE_SHARES)
    assert sum(budgets.values()) == pytest.approx(240.0)
    total = sum(gpu.STAGE_SHARES.values())
    assert budgets["train"] == pytest.approx(240.0 * gpu.STAGE_SHARES["train"] / total)
    assert total <= 540  # room for start-up under the device tool's 600-s command limit
    with pytest.raises(ValueError, match="--budget"):
        gpu.stage_budgets(0)


def test_timed_steps_counts_warmup_apart_and_stops_at_max_steps() -> None:
    calls = []
    batches = iter(range(100))
    rate = gpu.timed_steps(
        calls.append, batches, batch=8, device=torch.device("cpu"), warmup=3, seconds=60.0,
        max_steps=5,
    )  # fmt: skip
    assert calls == list(range(8))  # 3 untimed, then 5 timed, in feed order
    assert rate["steps"] == 5
    assert rate["img_per_s"] == pytest.approx(5 * 8 / rate["seconds"])
    once = gpu.timed_steps(
        calls.append, batches, batch=8, device=torch.device("cpu"), warmup=0, seconds=0.0,
        max_steps=5,
    )  # fmt: skip
    assert once["steps"] == 1  # a block of no seconds still times one step


def test_examples_pipeline_is_torchvisions_own_where_it_imports(tmp_path, monkeypatch) -> None:
    # a stand-in torchvision that records what is built: the wiring against pytorch/examples'
    # train transform (RandomResizedCrop(224), RandomHorizontalFlip(), ToTensor(), Normalize)
    made = {}
    transforms = types.SimpleNamespace(
        Compose=lambda steps: ("Compose", steps),
        RandomResizedCrop=lambda size: ("RandomResizedCrop", size),
        RandomHorizontalFlip=lambda: ("RandomHorizontalFlip",),
        ToTensor=lambda: ("ToTensor",),
        Normalize=lambda mean, std: ("Normalize", mean, std),
    )
    datasets = types.SimpleNamespace(ImageFolder=lambda root, tf: made.update(root=root, tf=tf))
    fake = types.SimpleNamespace(__version__="0.0-test", datasets=datasets, transforms=transforms)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)
    monkeypatch.setitem(sys.modules, "torchvision.transforms", transforms)
    _, name = gpu.examples_dataset(tmp_path, [], 224)
    assert name == "torchvision 0.0-test" and made["root"] == tmp_path
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as pytorch/examples
    assert made["tf"] == (
        "Compose",
        [
            ("RandomResizedCrop", 224),
            ("RandomHorizontalFlip",),
            ("ToTensor",),
            ("Normalize", mean, std),
        ],
    )
    monkeypatch.setitem(sys.modules, "torchvision", None)  # absent: the PIL + torch copy
    data, name = gpu.examples_dataset(tmp_path, [tmp_path / "a.JPEG"], 67)
    assert name.startswith("PIL + torch") and isinstance(data, ExamplesDataset) and data.crop == 67


class ScriptedBench:
    """A bench whose blocks return scripted img/s: the stages' logic without training."""

    def __init__(self, rates, sizes: gpu.Sizes) -> None:
        self.rates, self.sizes, self.calls = rates, sizes, []

    def block(self, model: str, feed: str, workers: int, seconds: float) -> dict[str, float]:
        self.calls.append((model, feed, workers))
        rate = self.rates(model, feed, workers, len(self.calls))
        return {"img_per_s": rate, "steps": 1, "seconds": 1.0}


def test_worker_sweep_stops_once_img_per_s_stops_rising() -> None:
    store = {0: 1000.0, 1: 2000.0, 2: 3500.0, 4: 3600.0, 8: 9999.0}  # 4: under 5% above 2
    examples = {0: 100.0, 1: 200.0, 2: 400.0, 4: 800.0, 8: 1600.0}
    bench = ScriptedBench(
        lambda model, feed, w, n: (store if feed == "store" else examples)[w], gpu.Sizes()
    )
    out = gpu.workers_stage(bench, gpu.Stage("workers", 1e6))
    assert [p["workers"] for p in out["store"]["points"]] == [0, 1, 2, 4]  # 8 never measured
    assert out["store"]["stopped"] == "gain under 5%"
    assert out["store"]["enough"] == 2  # 3500 >= 0.95 * 3600
    assert out["store"]["model"] == "alexnet" and out["examples"]["model"] == "alexnet_owt"
    assert [p["img_per_s"] for p in out["examples"]["points"]] == list(examples.values())
    assert out["examples"]["enough"] == 8 and out["examples"]["stopped"] == "end of sweep"
    late = gpu.workers_stage(bench, gpu.Stage("workers", 0.0))  # out of time: one point each
    assert [len(late[f]["points"]) for f in ("store", "examples")] == [1, 1]
    assert late["store"]["stopped"] == "stage budget"


def test_train_stage_takes_per_round_ratios_and_stops_when_out_of_time() -> None:
    # round r (1-based): synthetic 100 r, store 50, owt synthetic 200, owt examples 25 r
    def rates(model, feed, workers, n):
        r = (n - 1) // 4 + 1
        return {"synthetic": (100.0 if model == "alexnet" else 200.0) * r}.get(
            feed, 50.0 if feed == "store" else 25.0 * r
        )

    bench = ScriptedBench(rates, gpu.Sizes(rounds=3))
    out = gpu.train_stage(bench, gpu.Stage("train", 1e6))
    assert len(out["rounds"]) == 3 and len(bench.calls) == 12
    assert [w for _, feed, w in bench.calls[:4]] == [0, 8, 0, 8]  # loaders get train_workers
    # store/synthetic per round: 0.5, 0.25, 1/6: median 0.25 (medians' ratio: 50/200)
    assert out["store_over_synthetic"] == pytest.approx(0.25)
    # store / examples per round: 2, 1, 2/3: median 1
    assert out["paper_over_examples"] == pytest.approx(1.0)
    assert out["median_img_per_s"]["alexnet_owt/examples"] == pytest.approx(50.0)
    short = gpu.train_stage(ScriptedBench(rates, gpu.Sizes(rounds=3)), gpu.Stage("train", 0.0))
    assert len(short["rounds"]) == 1  # no time for a second round: one, not none


def test_no_cuda_is_one_line_and_status_2(script, tmp_path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert script.main(["--out", str(tmp_path / "out"), "--device", "cuda", "--tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "bench_gpu.py: error: --device cuda: no CUDA device here (--device cpu --tiny checks)"
    ]
    assert not (tmp_path / "out").exists()
    assert script.main(["--out", str(tmp_path / "out"), "--device", "tpu:0", "--tiny"]) == 2
    assert "--device tpu:0" in capsys.readouterr().err
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert script.main(["--out", str(blocked), "--device", "cpu", "--tiny"]) == 2
    assert str(blocked) in capsys.readouterr().err  # refused before any measuring


def test_a_failing_stage_is_recorded_and_the_next_runs(
    script, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))

    def boom(bench, stage):
        raise RuntimeError("no kernel image for this GPU")

    def after(bench, stage):  # shaped as the towers smoke run's result
        return {
            "rc": 0,
            "seconds": float(len(bench.store)),
            "img_per_s": None,
            "budget": stage.budget_s,
        }

    monkeypatch.setattr(gpu, "STAGES", {"inference": boom, "towers": after})
    out = tmp_path / "out"
    assert script.main(["--out", str(out), "--device", "cpu", "--tiny", "--budget", "100"]) == 1
    result = json.loads((out / "result.json").read_text())
    failed = result["stages"]["inference"]
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: no kernel image for this GPU"
    assert "boom" in failed["traceback"]
    assert result["stages"]["towers"]["status"] == "ok"
    assert result["towers"]["seconds"] == 16  # the stage after the failure saw the data
    assert result["towers"]["budget"] == pytest.approx(100 * 60 / 480)
    assert result["projection"] is None  # no train stage, nothing to project from
    assert "inference failed" in capsys.readouterr().out


@pytest.mark.slow  # two `alexnet train` processes and 20 tiny steps: 75 s on two loaded cores
def test_tiny_bench_on_the_cpu_end_to_end(script, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    scratch.mkdir()
    argv = ["--out", str(out), "--scratch", str(scratch), "--device", "cpu", "--tiny"]
    assert script.main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["command"] == ["scripts/bench_gpu.py", *argv]
    assert list(scratch.iterdir()) == []  # photos, store and runs removed; OUT holds the JSON
    assert [p.name for p in out.iterdir()] == ["result.json"]
    assert {name: s["status"] for name, s in result["stages"].items()} == dict.fromkeys(
        ["data", "train", "inference", "workers", "ddp", "towers"], "ok"
    )
    m = result["machine"]
    assert m["device"] == "cpu" and m["cpus"] >= 1 and m["torch"] == torch.__version__
    assert m["examples_pipeline"].startswith(("torchvision", "PIL + torch"))
    assert result["data"]["images"] == 16 and result["data"]["encoding"] in ("raw", "jpeg")

    train = result["train"]
    assert set(train["median_img_per_s"]) == set(gpu.SIDES)
    assert len(train["rounds"]) == 1 and all(v > 0 for v in train["rounds"][0].values())
    r = train["rounds"][0]  # one round: each ratio is that round's quotient
    assert train["paper_over_examples"] == pytest.approx(
        r["alexnet/store"] / r["alexnet_owt/examples"]
    )
    assert train["store_over_synthetic"] == pytest.approx(
        r["alexnet/store"] / r["alexnet/synthetic"]
    )

    for name in ("alexnet", "alexnet_owt"):
        row = result["inference"][name]
        assert row["batch1_ms"] > 0 and row["batch"] == 2 and row["img_per_s"] > 0
        assert row["batch1_img_per_s"] == pytest.approx(1e3 / row["batch1_ms"])
    for feed in ("store", "examples"):
        sweep = result["workers"][feed]
        counts = [p["workers"] for p in sweep["points"]]
        assert counts == [0, 1][: len(counts)] and sweep["enough"] in counts

    ddp = result["ddp"]
    assert ddp["in_process"]["backend"] == "gloo" and ddp["in_process"]["all_reduce"] == 1.0
    assert ddp["in_process"]["ddp_over_plain"] > 0
    for smoke in (ddp["torchrun"], result["towers"]):
        assert smoke["rc"] == 0 and not smoke["timed_out"] and smoke["img_per_s"] > 0
    assert "torch.distributed.run" in ddp["torchrun"]["command"]
    assert "cpu,cpu" in result["towers"]["command"]

    p = result["projection"]
    rate = train["median_img_per_s"]["alexnet/store"]
    assert p["per_gpu_img_per_s"] == rate
    assert p["one_gpu"]["hours"] == pytest.approx(90 * 1_281_167 / rate / 3600)
    assert p["eight_gpus"]["hours"] == pytest.approx(90 * 1_281_167 / (8 * 0.9 * rate) / 3600)
    assert p["loader_workers_for_eight"] == 8 * result["workers"]["store"]["enough"]
    assert result["total_seconds"] > 0 and math.isfinite(result["total_seconds"])
    table = capsys.readouterr().out
    assert "alexnet+store / owt+examples" in table and "90 ImageNet epochs" in table
