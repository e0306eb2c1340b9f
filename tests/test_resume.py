"""Kill -9 a real training process mid-epoch, resume it: the weights end bit-identical."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from alexnet.data.prepare import prepare
from alexnet.train.metrics_log import read_metrics


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    prepare("synthetic:48:16:3", out, size=16, workers=1, quiet=True)
    return out


def _train(data, out, *extra):
    # fp32, one thread: bit-identical results need the same kernels and summation order
    cmd = [sys.executable, "-m", "alexnet", "train", "--data", str(data), "--out", str(out),
           "--model", "cifar_fig1", "--model-option", "input_size=12", "--epochs", "8",
           "--batch-size", "8", "--lr", "0.05", "--ckpt-every", "1", "--log-every", "1",
           "--threads", "1", "--precision", "fp32", "--device", "cpu", "--quiet",
           "--no-safetensors", *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


@pytest.mark.slow  # three training processes: about 20 s on two idle cores
def test_sigkill_mid_epoch_then_resume_is_bit_identical(data, tmp_path):
    full = _train(data, tmp_path / "full")
    killed = _train(data, tmp_path / "killed")
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and killed.poll() is None:  # 6 steps per epoch
        if metrics.is_file() and any(r["step"] >= 9 for r in read_metrics(metrics)):
            break
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    stopped = _weights(tmp_path / "killed")
    assert stopped["step"] < 48 and stopped["epoch"] < 8
    resumed = _train(data, "unused", "--resume", str(tmp_path / "killed"))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out.decode()
    assert full.wait(timeout=300) == 0
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "killed")
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (8, 48)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    momenta = b["optimizer"]["state"]
    for key, value in a["optimizer"]["state"].items():
        assert torch.equal(value["momentum_buffer"], momenta[key]["momentum_buffer"])
    ra, rb = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "killed")
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    assert [r.get("train_loss") for r in ra] == [r.get("train_loss") for r in rb]
