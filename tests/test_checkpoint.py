"""Checkpoints: atomic writes, safe loading, RNG state round trip, safetensors export."""

import random

import numpy as np
import pytest
import torch

from alexnet.train import checkpoint as ck


def _state(value: float) -> dict:
    return {
        "model": {"w": torch.full((3,), value)},
        "model_name": "cifar_fig1",
        "model_options": {"num_classes": 10},
        "preprocess": {"image_size": 8},
        "step": int(value),
    }


def test_failing_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    ck.save_atomic(_state(1.0), path)

    real_save = torch.save

    def torn_save(obj, handle):  # half a file, then the disk is "full"
        real_save(obj, handle)
        handle.truncate(10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="No space"):
        ck.save_atomic(_state(2.0), path)
    monkeypatch.undo()
    loaded = ck.load_checkpoint(path)
    assert loaded["step"] == 1 and torch.equal(loaded["model"]["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind
    ck.save_atomic(_state(3.0), path)
    assert ck.load_checkpoint(tmp_path)["step"] == 3  # a run dir resolves to last.pt


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_load_refuses_pickled_code_and_foreign_files(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({**_state(1.0), "x": _Evil()}, evil)
    with pytest.raises(ValueError, match=r"evil\.pt"):
        ck.load_checkpoint(evil)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="not an alexnet checkpoint"):
        ck.load_checkpoint(other)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ck.load_checkpoint(tmp_path / "missing")


def test_rng_state_round_trip_through_a_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # leave a cached gaussian in numpy's state
    ck.save_atomic({**_state(0.0), "rng": ck.rng_state()}, tmp_path / "c.pt")
    expected = (torch.rand(5), np.random.normal(size=3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    ck.set_rng_state(ck.load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (torch.rand(5), np.random.normal(size=3), random.random())
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1]) and got[2] == expected[2]
