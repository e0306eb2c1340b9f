"""Data parallelism with 2 CPU processes (gloo): same weights as one process at the same global
batch, and distributed evaluation that counts every sample of an odd-sized split exactly once."""

import json
import os
import subprocess
import sys

import pytest
import torch

from alexnet.data.prepare import prepare

pytestmark = pytest.mark.slow  # each test starts torchrun with two processes


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    prepare("synthetic:48:16:3", out, size=16, workers=1, quiet=True)  # val: 9 images
    return out


def _run(args, nproc=1):
    launcher = [sys.executable, "-m", "alexnet"]
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={nproc}", "-m", "alexnet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, *args], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _train_args(data, out):
    # cifar_fig1 has no dropout, so both runs draw the same numbers; 4 steps of global batch 8
    return ["train", "--data", str(data), "--out", str(out), "--model", "cifar_fig1",
            "--model-option", "input_size=12", "--epochs", "2", "--max-steps", "4",
            "--batch-size", "8", "--lr", "0.05", "--threads", "1", "--precision", "fp32",
            "--device", "cpu", "--quiet", "--no-safetensors", "--log-every", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def single(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    _run(_train_args(data, out))
    return out


def test_two_processes_match_one_at_the_same_global_batch(data, single, tmp_path):
    _run(_train_args(data, tmp_path / "two"), nproc=2)
    one = torch.load(single / "checkpoints" / "last.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)
    assert one["step"] == two["step"] == 4
    for key, value in one["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-5, atol=1e-6)
    # rank 0 logged the loss averaged over both ranks: the single process's loss
    losses = [[r["loss"] for r in map(json.loads, (d / "metrics.jsonl").open())
               if r["kind"] == "step"] for d in (single, tmp_path / "two")]  # fmt: skip
    assert len(losses[0]) == 4 and losses[1] == pytest.approx(losses[0], rel=1e-5)


def test_distributed_evaluation_counts_each_sample_once(data, single):
    args = ["evaluate", str(single), "--data", str(data), "--split", "val", "--json",
            "--device", "cpu"]  # fmt: skip
    single = json.loads(_run(args))
    double = json.loads(_run(args, nproc=2))
    assert single["count"] == double["count"] == 9  # odd: 5 + 4 on two ranks, no padding
    for key in ("top1_acc", "top5_acc", "loss"):
        assert double[key] == pytest.approx(single[key], rel=1e-6)
    assert double["per_class_acc"] == pytest.approx(single["per_class_acc"])


STOP_SCRIPT = """
import sys

from alexnet.train.config import make_config
from alexnet.train.run import train

data, out = sys.argv[1:]
config = make_config({
    "data": data, "out": out, "model": "cifar_fig1", "model_options": {"input_size": 12},
    "epochs": 3, "batch_size": 8, "lr": 0.05, "threads": 1, "precision": "fp32",
    "device": "cpu", "quiet": True, "safetensors": False,
})
train(config, stop=lambda records: len(records) == 1)  # only rank 0 is given the records
"""


def test_every_rank_stops_where_rank_0s_stop_condition_says(data, tmp_path):
    """A rank that went on alone would wait for the others forever (the timeout fails it)."""
    script = tmp_path / "stop.py"
    script.write_text(STOP_SCRIPT)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2", str(script), str(data), str(tmp_path / "run")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(launcher, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert ckpt["epoch"] == 1 and [r["epoch"] for r in records if r["kind"] == "epoch"] == [1]
