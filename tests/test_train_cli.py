"""`alexnet train` / `alexnet evaluate` end to end on a tiny prepared store, in-process."""

import json

import numpy as np
import pytest
import torch
import yaml

from alexnet.cli import main
from alexnet.data.prepare import prepare
from alexnet.data.store import open_store
from alexnet.train.data import hold_out
from alexnet.train.metrics_log import EPOCH_KEYS, read_metrics
from alexnet.train.weights import load_weights


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = tmp_path_factory.mktemp("synthetic")
    prepare("synthetic:48:16:3", data, size=16, workers=1, quiet=True)
    out = tmp_path_factory.mktemp("run") / "r"
    argv = ["train", "--data", str(data), "--out", str(out), "--model", "cifar_fig1",
            "--model-option", "input_size=12", "--epochs", "2", "--batch-size", "8",
            "--lr", "0.05", "--log-every", "2", "--quiet", "--precision", "fp32",
            "--normalize", "mean_image"]  # fmt: skip
    assert main(argv) == 0
    return data, out


def test_run_dir_describes_itself(run):
    data, out = run
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["data"] == str(data) and config["lr"] == 0.05 and config["momentum"] == 0.9
    assert "--lr 0.05" in (out / "command.txt").read_text()
    records = read_metrics(out)
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and set(EPOCH_KEYS) <= set(epochs[0])
    assert [r["step"] for r in records if r["kind"] == "step"] == [2, 4, 6, 8, 10, 12]
    assert epochs[-1]["val_top1_err"] is not None  # the synthetic source has a val split
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"], ckpt["batch_in_epoch"]) == (2, 12, 0)
    pre = ckpt["preprocess"]
    assert (pre["image_size"], pre["crop_size"], pre["in_chans"]) == (16, 12, 3)
    assert pre["classes"] == ["class0", "class1", "class2"]
    assert tuple(pre["mean_image"].shape) == (16, 16, 3)
    assert (out / "checkpoints" / "best.pt").is_file()
    assert (out / "checkpoints" / "last.pt").stat().st_mode & 0o044  # readable by others
    model, pre_w, _ = load_weights(out / "model.safetensors")  # what `alexnet predict` reads
    assert torch.equal(model.fc.weight, ckpt["model"]["fc.weight"])
    assert torch.equal(pre_w.mean_image, pre["mean_image"]) and pre_w.crop_size == 12
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["split"] == "val" and test["count"] == 9


def test_evaluate_matches_final_numbers_and_ten_crop(run, capsys):
    data, out = run
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(data),
                 "--split", "val", "--json"]) == 0  # fmt: skip
    centre = json.loads(capsys.readouterr().out)  # the run's weights: what train's numbers use
    final = json.loads((out / "test_metrics.json").read_text())
    assert centre["count"] == 9 and centre["top1_acc"] == pytest.approx(final["top1_acc"])
    assert centre["loss"] == pytest.approx(final["loss"], rel=1e-6)
    assert main(["evaluate", str(out / "checkpoints" / "last.pt"), "--data", str(data),
                 "--split", "val", "--ten-crop", "--per-class"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "ten crops" in text and "class2" in text
    assert main(["evaluate", str(out), "--data", str(data), "--split", "test"]) == 2
    assert "no split 'test'" in capsys.readouterr().err


def test_bad_flags_give_clear_errors(run, capsys):
    data, _ = run
    assert main(["train", "--data", str(data), "--schedule", "linear"]) == 2
    assert "schedule 'linear'" in capsys.readouterr().err
    assert main(["train", "--resume", str(data)]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_hold_out_is_seeded_disjoint_and_complete(run):
    data, _ = run
    store = open_store(data / "train")
    train, val = hold_out(store, 0.25, seed=3)
    assert (len(train), len(val)) == (36, 12)
    assert not set(train.indices) & set(val.indices)
    assert np.array_equal(np.sort(np.r_[train.indices, val.indices]), np.arange(48))
    assert np.array_equal(val.image_chw(0), store.image_chw(int(val.indices[0])))
    assert np.array_equal(hold_out(store, 0.25, seed=3)[1].indices, val.indices)
    with pytest.raises(ValueError, match="empty"):
        hold_out(store, 0.001, seed=0)
