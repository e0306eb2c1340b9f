"""Issue 16, the run and weights side: nothing lost, nothing run, no traceback.

A fresh `--out` into an existing run, two runs into one directory, a torn metrics line, Ctrl-C,
stale temporary files, NaN weights, bad weights files, bad options, bad stores and bad outputs:
each ends in one line naming the file or value (exit 2; 130 for Ctrl-C; 3 for the NaN stop).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from alexnet.cli import main
from alexnet.data.prepare import prepare
from alexnet.fileio import atomic_write_text, remove_stale_temp
from alexnet.train.metrics_log import read_metrics
from alexnet.train.rundir import lock_run_dir

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = ["--model", "cifar_fig1", "--model-option", "input_size=12", "--batch-size", "8",
        "--lr", "0.05", "--quiet", "--precision", "fp32", "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    prepare("synthetic:48:16:3", out, size=16, workers=1, quiet=True)
    return out


def train_argv(data, out, *extra):
    return ["train", "--data", str(data), "--out", str(out), *TINY, *extra]


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A finished one-epoch run (best.pt, last.pt, model.safetensors)."""
    out = tmp_path_factory.mktemp("run") / "r"
    assert main(train_argv(data, out, "--epochs", "1", "--log-every", "1")) == 0
    return out


def one_error_line(capsys, code, rc, *needles):
    err = capsys.readouterr().err
    assert rc == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def cli(*args, env=None, **kwargs):
    env = {**os.environ, "PYTHONPATH": SRC, "ALEXNET_NO_TCMALLOC": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "alexnet", *args], capture_output=True, text=True, env=env,
        timeout=300, **kwargs,
    )  # fmt: skip


# -- 5. an existing --out -------------------------------------------------------------------
def test_fresh_train_into_an_existing_run_is_refused(data, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(train_argv(data, out, "--epochs", "1")) == 0
    before = (out / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()
    rc = main(train_argv(data, out, "--max-steps", "1"))
    one_error_line(capsys, 2, rc, str(out), "--resume", "--overwrite")
    assert (out / "checkpoints" / "last.pt").read_bytes() == before  # untouched
    (out / "notes.txt").write_text("mine")
    assert main(train_argv(data, out, "--max-steps", "1", "--overwrite")) == 0
    assert not (out / "checkpoints" / "best.pt").exists()  # the old run's best is gone
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 1
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files are cleared
    assert "--overwrite" in (out / "command.txt").read_text()
    assert len((out / "command.txt").read_text().splitlines()) == 1
    capsys.readouterr()
    rc = main(["train", "--resume", str(out), "--overwrite"])
    one_error_line(capsys, 2, rc, "--overwrite")


def test_an_empty_or_foreign_directory_is_fine(data, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "README").write_text("x")
    assert main(train_argv(data, out, "--max-steps", "1", "--no-safetensors")) == 0


# -- 6. two runs into one --out -------------------------------------------------------------
def test_second_run_into_a_locked_dir_names_the_holder(data, tmp_path, capsys):
    out = tmp_path / "r"
    with lock_run_dir(out):
        rc = main(train_argv(data, out, "--max-steps", "1"))
        one_error_line(capsys, 2, rc, str(out), f"process {os.getpid()}")
        assert not (out / "config.yaml").exists()
        rc = main(["train", "--resume", str(out)])  # no checkpoint yet: the lock comes after
        assert rc == 2
        capsys.readouterr()
    assert main(train_argv(data, out, "--max-steps", "1")) == 0  # released


def test_two_processes_one_out(data, tmp_path):
    out = tmp_path / "r"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from alexnet.train.rundir import lock_run_dir\n"
         f"with lock_run_dir(__import__('pathlib').Path({str(out)!r})):\n"
         "    print('held', flush=True); time.sleep(60)"],
        env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        result = cli(*train_argv(data, out, "--max-steps", "1"))
        assert result.returncode == 2, result.stderr
        assert f"process {holder.pid}" in result.stderr and "Traceback" not in result.stderr
    finally:
        holder.kill()
        holder.wait()


# -- 7. a torn metrics line, one reader -----------------------------------------------------
def test_resume_drops_a_torn_metrics_line(data, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(train_argv(data, out, "--max-steps", "2", "--log-every", "1")) == 0
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "step", "epoch": 0, "st')  # a full disk mid-line
    assert [r["step"] for r in read_metrics(out) if r["kind"] == "step"] == [1, 2]
    assert main(["train", "--resume", str(out), "--max-steps", "4"]) == 0, capsys.readouterr()
    text = (out / "metrics.jsonl").read_text()
    assert text.endswith("\n")
    assert [r["step"] for r in read_metrics(out) if r["kind"] == "step"] == [1, 2, 3, 4]


def test_one_metrics_reader(tmp_path):
    from alexnet.experiments.common import epoch_records
    from alexnet.train import metrics_log, weights

    assert weights.read_metrics is metrics_log.read_metrics
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "epoch", "epoch": 1, "step": 3}\n{"kind": "ep')
    assert epoch_records(tmp_path) == [{"kind": "epoch", "epoch": 1, "step": 3}]
    path.write_text('{"kind": "epoch", "epoch": 1, "step": 3}\n[1, 2]\n')  # complete but no object
    assert len(read_metrics(path)) == 1
    path.write_text('{"kind": "step"\n{"kind": "epoch", "epoch": 1, "step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:1"):
        read_metrics(path)
    assert read_metrics(tmp_path / "missing") == []


# -- 8. Ctrl-C ------------------------------------------------------------------------------
def test_ctrl_c_saves_says_so_and_resumes(data, tmp_path):
    out = tmp_path / "r"
    argv = [sys.executable, "-m", "alexnet", *train_argv(data, out, "--epochs", "500",
            "--log-every", "1", "--threads", "1", "--no-safetensors")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "ALEXNET_NO_TCMALLOC": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(read_metrics(metrics)) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("alexnet train: interrupted at epoch ") and " step " in line, line
    assert f"saved {out / 'checkpoints' / 'last.pt'}" in line
    assert f"continue with alexnet train --resume {out}" in line
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    step = ckpt["step"]
    assert step >= 3 and f"step {step};" in line
    assert max(r["step"] for r in read_metrics(out)) == step  # log and checkpoint agree
    assert not list((out / "checkpoints").glob(".*.tmp"))
    result = cli("train", "--resume", str(out), "--max-steps", str(step + 2), "--quiet")
    assert result.returncode == 0, result.stderr
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == step + 2


# -- 9. stale temporary files ---------------------------------------------------------------
def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_stale_checkpoint_temporaries_are_removed_on_resume(data, tmp_path):
    out = tmp_path / "r"
    assert main(train_argv(data, out, "--max-steps", "1", "--no-safetensors")) == 0
    ckpts = out / "checkpoints"
    dead = ckpts / f".last.pt.{_dead_pid()}.k2j4xq.tmp"
    legacy = ckpts / ".last.pt.x8k2j4qz.tmp"  # the mkstemp name of earlier versions
    alive = ckpts / f".best.pt.{os.getppid()}.aaaaaa.tmp"
    for path in (dead, legacy, alive):
        path.write_bytes(b"partial")
    assert main(["train", "--resume", str(out), "--max-steps", "2"]) == 0
    assert not dead.exists() and not legacy.exists() and alive.exists()


def test_remove_stale_temp_keeps_live_writers(tmp_path):
    mine = tmp_path / f".x.{os.getpid()}.abc.tmp"
    gone = tmp_path / f".x.{_dead_pid()}.abc.tmp"
    plain = tmp_path / "x.tmp"
    for p in (mine, gone, plain):
        p.write_text("")
    assert remove_stale_temp(tmp_path) == [gone]
    assert mine.exists() and plain.exists()


# -- 10. NaN --------------------------------------------------------------------------------
def test_nan_lr_is_refused_before_any_data(tmp_path, capsys):
    out = tmp_path / "r"
    rc = main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(out), "--lr", "nan"])
    one_error_line(capsys, 2, rc, "lr", "nan")
    assert not out.exists()


def test_non_finite_weights_are_never_saved(data, tmp_path, capsys, monkeypatch):
    from alexnet.train.loop import Trainer

    step = Trainer.train_step

    def poisoned(self, images, labels):
        result = step(self, images, labels)
        with torch.no_grad():
            next(self.core.parameters()).fill_(float("nan"))  # a finite loss, NaN weights
        return result

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    out = tmp_path / "r"
    rc = main(train_argv(data, out, "--max-steps", "1"))
    line = one_error_line(capsys, 3, rc, "non-finite", "not saved", "no checkpoint")
    assert "last.pt" not in line
    assert not (out / "checkpoints" / "last.pt").exists()
    assert not (out / "model.safetensors").exists() and not (out / "test_metrics.json").exists()


def test_nan_loss_names_only_existing_files(data, tmp_path, capsys, monkeypatch):
    from alexnet.train.loop import Trainer

    out = tmp_path / "r"
    assert main(train_argv(data, out, "--max-steps", "2", "--no-safetensors")) == 0
    forward = Trainer._forward_loss

    def nan_loss(self, images, labels):
        logits, loss = forward(self, images, labels)
        return logits, loss * float("nan")

    monkeypatch.setattr(Trainer, "_forward_loss", nan_loss)
    capsys.readouterr()
    rc = main(["train", "--resume", str(out), "--max-steps", "4"])
    one_error_line(capsys, 3, rc, "loss became nan", str(out / "checkpoints" / "last.pt"))


# -- weights files ------------------------------------------------------------------------
def _safetensors_parts(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write_safetensors(path: Path, header: dict, body: bytes) -> Path:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)
    return path


def _edit_meta(run, tmp_path, name, edit):
    header, body = _safetensors_parts(run / "model.safetensors")
    meta = json.loads(header["__metadata__"]["alexnet"])
    result = edit(meta)
    header["__metadata__"]["alexnet"] = result if isinstance(result, str) else json.dumps(meta)
    return _write_safetensors(tmp_path / name, header, body)


def bad_weights(run: Path, tmp_path: Path) -> dict[str, Path]:
    """One file per case of the issue's list."""
    from safetensors.torch import load_file, save_file

    src = run / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(src), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(src)
    cases: dict[str, Path] = {}

    def variant(name, change):
        t = dict(tensors)
        change(t)
        save_file(t, str(tmp_path / name), metadata=metadata)
        cases[name] = tmp_path / name

    variant("shape.safetensors", lambda t: t.update({"fc.weight": torch.zeros(3, 5)}))
    variant("missing.safetensors", lambda t: t.pop("fc.bias"))
    variant("extra.safetensors", lambda t: t.update({"surplus": torch.zeros(2)}))
    raw = src.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(raw[: len(raw) // 2])
    cases["truncated.safetensors"] = tmp_path / "truncated.safetensors"
    (tmp_path / "huge.safetensors").write_bytes(struct.pack("<Q", 2**62) + raw[8:])
    cases["huge.safetensors"] = tmp_path / "huge.safetensors"
    cases["nopre.safetensors"] = _edit_meta(run, tmp_path, "nopre.safetensors",
                                            lambda m: m.pop("preprocess"))  # fmt: skip
    cases["garbage.safetensors"] = _edit_meta(run, tmp_path, "garbage.safetensors",
                                              lambda m: "{not json")  # fmt: skip
    cases["optstr.safetensors"] = _edit_meta(run, tmp_path, "optstr.safetensors",
                                             lambda m: m.update(model_options="x=0"))  # fmt: skip
    cases["classes.safetensors"] = _edit_meta(
        run, tmp_path, "classes.safetensors",
        lambda m: m["model_options"].update(num_classes=10**12),
    )  # fmt: skip
    cases["classes_float.safetensors"] = _edit_meta(
        run, tmp_path, "classes_float.safetensors",
        lambda m: m["model_options"].update(num_classes=1e12),
    )  # fmt: skip
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    other = dict(ckpt, model_name="alexnet")
    torch.save(other, tmp_path / "other.pt")
    cases["other.pt"] = tmp_path / "other.pt"
    nan_bias = torch.full_like(ckpt["model"]["fc.bias"], float("nan"))
    nan = dict(ckpt, model={**ckpt["model"], "fc.bias": nan_bias})
    torch.save(nan, tmp_path / "nan.pt")
    cases["nan.pt"] = tmp_path / "nan.pt"
    missing = dict(ckpt, model={k: v for k, v in ckpt["model"].items() if k != "fc.weight"})
    torch.save(missing, tmp_path / "noweight.pt")
    cases["noweight.pt"] = tmp_path / "noweight.pt"
    return cases


CASES = ["shape", "missing", "extra", "truncated", "huge", "nopre", "garbage", "optstr",
         "classes", "classes_float", "other", "noweight", "nan"]  # fmt: skip


@pytest.fixture(scope="module")
def weights_cases(run, tmp_path_factory):
    return bad_weights(run, tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "a.png"
    Image.fromarray(np.full((20, 20, 3), 99, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("case", CASES)
def test_bad_weights_files_are_one_line(case, weights_cases, image, data, tmp_path, capsys):
    path = next(p for name, p in weights_cases.items() if name.split(".")[0] == case)
    rc = main(["predict", str(path), str(image)])
    one_error_line(capsys, 2, rc, str(path))
    rc = main(["evaluate", str(path), "--data", str(data), "--split", "val", "--device", "cpu"])
    one_error_line(capsys, 2, rc, str(path))
    rc = main(["release", str(path), "--out", str(tmp_path / "rel")])
    one_error_line(capsys, 2, rc, str(path))
    rc = main(["export", str(path), "--format", "safetensors", "--out", str(tmp_path / "x.st")])
    one_error_line(capsys, 2, rc, str(path))
    assert not (tmp_path / "x.st").exists() and not list((tmp_path).glob(".*.tmp"))


def test_resume_of_foreign_checkpoints_is_one_line(run, tmp_path, capsys):
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    cases = {
        "norng": {k: v for k, v in ckpt.items() if k != "rng"},
        "other": dict(ckpt, model={k: v[:1] for k, v in ckpt["model"].items()}),
        "badrng": dict(ckpt, rng={"torch": "x"}),
    }
    for name, obj in cases.items():
        path = tmp_path / name / "checkpoints" / "last.pt"
        path.parent.mkdir(parents=True)
        torch.save(obj, path)
        rc = main(["train", "--resume", str(tmp_path / name), "--max-steps", "1"])
        one_error_line(capsys, 2, rc, str(tmp_path / name))


# -- options ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--device", "tpu9"], "tpu9"),
        (["--model-option", "activation"], "activation"),
        (["--image-size", "0"], "image_size"),
        (["--workers", "-1"], "workers"),
        (["--max-steps", "-1"], "max_steps"),
        (["--ckpt-every", "-5"], "ckpt_every"),
        (["--log-every", "-1"], "log_every"),
        (["--pca-std", "-1"], "pca_std"),
        (["--model-option", "dropout=[1"], "dropout"),
    ],
)
def test_bad_train_options_before_any_data(flags, needle, tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))  # where it would be prepared
    rc = main(["train", "--data", "synthetic:8:16:3", "--out", str(out), *flags])
    one_error_line(capsys, 2, rc, needle)
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_malformed_config_yaml(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("lr: [0.1\nepochs: 2\n")
    rc = main(["train", "--config", str(recipe), "--out", str(tmp_path / "r")])
    one_error_line(capsys, 2, rc, str(recipe), "line")
    recipe.write_text("model_options: dropout\n")
    rc = main(["train", "--config", str(recipe), "--out", str(tmp_path / "r")])
    one_error_line(capsys, 2, rc, "model_options")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("verb", ["predict", "embed"])
def test_cuda_without_cuda(verb, run, image, tmp_path, capsys):
    extra = ["--out", str(tmp_path / "f.npy")] if verb == "embed" else []
    rc = main([verb, str(run), str(image), "--device", "cuda", *extra])
    one_error_line(capsys, 2, rc, "CUDA")
    rc = main([verb, str(run), str(image), "--device", "tpu9", *extra])
    one_error_line(capsys, 2, rc, "tpu9")


# -- stores -------------------------------------------------------------------------------
def test_label_out_of_range_is_named_when_the_store_opens(data, tmp_path, capsys):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    labels = np.load(copy / "train" / "labels.npy")
    labels[5] = 7
    np.save(copy / "train" / "labels.npy", labels)
    rc = main(train_argv(copy, tmp_path / "r", "--max-steps", "1"))
    one_error_line(capsys, 2, rc, str(copy / "train"), "out of range", "7")


# -- outputs ------------------------------------------------------------------------------
def test_export_and_release_outputs(run, tmp_path, capsys):
    rc = main(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "no/x.st")])
    one_error_line(capsys, 2, rc, str(tmp_path / "no"))
    (tmp_path / "file").write_text("x")
    rc = main(["release", str(run), "--out", str(tmp_path / "file")])
    one_error_line(capsys, 2, rc, str(tmp_path / "file"))
    rc = main(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "file/x")])
    one_error_line(capsys, 2, rc, str(tmp_path / "file"))
    rc = main(["embed", str(run), str(run), "--out", str(tmp_path / "file/f")])
    one_error_line(capsys, 2, rc, str(tmp_path / "file"))
    assert (
        main(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "e.st")]) == 0
    )
    assert (tmp_path / "e.st").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_unwritable_output_directory(run, image, tmp_path, capsys):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for argv in (
            ["export", str(run), "--format", "safetensors", "--out", str(locked / "x.st")],
            ["release", str(run), "--out", str(locked)],
            ["embed", str(run), str(image), "--out", str(locked / "f.npy")],
        ):
            one_error_line(capsys, 2, main(argv), str(locked))
    finally:
        locked.chmod(0o700)


def test_embed_prints_the_path_it_wrote(run, image, tmp_path, capsys):
    out = tmp_path / "feats"
    assert main(["embed", str(run), str(image), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}.npy " in said and (tmp_path / "feats.npy").is_file()
    assert np.load(tmp_path / "feats.npy").shape[0] == 1
    assert (tmp_path / "feats.files.txt").read_text().strip() == str(image)


def test_run_files_are_world_readable(run):
    want = 0o666 & ~_umask()
    for name in ("model.safetensors", "config.yaml", "test_metrics.json", "checkpoints/last.pt"):
        assert (run / name).stat().st_mode & 0o777 == want, name
    assert yaml.safe_load((run / "config.yaml").read_text())["out"] == str(run)


def _limited(limit: int):
    def setup():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return setup


def test_full_disk_during_checkpoint_save(data, tmp_path):
    out = tmp_path / "r"
    result = cli(*train_argv(data, out, "--max-steps", "1"), preexec_fn=_limited(100_000))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(out / "checkpoints" / "last.pt") in lines[0]
    assert not (out / "checkpoints" / "last.pt").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_full_disk_during_release_and_export(run, tmp_path):
    for args in (
        ["release", str(run), "--out", str(tmp_path / "rel")],
        ["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "x.st")],
    ):
        result = cli(*args, preexec_fn=_limited(50_000))
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "File too large" in result.stderr
    assert not (tmp_path / "x.st").exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing partial anywhere


def test_full_disk_during_the_final_safetensors(data, tmp_path, capsys, monkeypatch):
    import errno

    import alexnet.models.weights_file

    def short_write(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(alexnet.models.weights_file, "save_file", short_write)
    out = tmp_path / "r"
    rc = main(train_argv(data, out, "--max-steps", "1"))
    capsys.readouterr()
    assert rc == 2
    assert not (out / "model.safetensors").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert (out / "checkpoints" / "last.pt").is_file()  # the checkpoint is kept


def test_atomic_write_leaves_the_old_file(tmp_path):
    from alexnet.fileio import WriteError, atomic_path

    target = tmp_path / "a.json"
    atomic_write_text(target, "old")
    with pytest.raises(WriteError, match=r"a\.json"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk gone")
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.json"]


def test_train_out_under_a_file_is_one_line(data, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    rc = main(train_argv(data, tmp_path / "file" / "r", "--max-steps", "1"))
    one_error_line(capsys, 2, rc, str(tmp_path / "file"))
    rc = main(train_argv(data, tmp_path / "file", "--max-steps", "1"))
    one_error_line(capsys, 2, rc, str(tmp_path / "file"))


# -- the error policy ---------------------------------------------------------------------
def test_bugs_keep_their_traceback(data, monkeypatch, tmp_path):
    import alexnet.commands.train

    def buggy(*args, **kwargs):
        return {}["x"]

    monkeypatch.setattr(alexnet.commands.train, "train", buggy)  # the name the verb calls
    with pytest.raises(KeyError):
        main(["train", "--data", str(data), "--out", str(tmp_path / "r")])


def test_a_full_metrics_append_names_the_file(tmp_path):
    from alexnet.fileio import WriteError
    from alexnet.train.metrics_log import RunLog

    log = RunLog(tmp_path)
    log.path = tmp_path / "missing-dir" / "metrics.jsonl"
    with pytest.raises(WriteError, match="missing-dir"):
        log.step(epoch=0, step=1, loss=1.0, lr=0.1, img_per_s=1.0)
    log.close()


def test_export_without_out_writes_beside_the_weights(run, tmp_path, capsys):
    import shutil

    weights = tmp_path / "w.safetensors"
    shutil.copy(run / "model.safetensors", weights)
    assert main(["export", str(weights), "--format", "torchvision"]) == 2  # not alexnet_owt
    assert not list(tmp_path.glob("*.pth")) and not list(tmp_path.glob(".*.tmp"))
    assert main(["export", str(weights), "--format", "torchscript"]) == 0, capsys.readouterr()
    assert (tmp_path / "w.torchscript.pt").is_file()
