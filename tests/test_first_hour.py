"""Issue 15: a new user's first hour (recipes that fit the data, one set of numbers, clean
errors). Tiny synthetic data, a few steps each."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from alexnet.cli import main
from alexnet.data.prepare import prepare
from alexnet.train.metrics_log import read_metrics
from alexnet.train.recipes import resolve_recipe

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _png(path: Path, side: int, colour: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(colour)
    img = np.clip(colour + rng.normal(0, 20, (side, side, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path)


def _cifar_like_zip(path: Path) -> Path:
    """A tiny zip in the CIFAR-10 JPEG layout: cifar10/<split>/<class>/<file>, 32 px."""
    with zipfile.ZipFile(path, "w") as zf:
        for split, n in (("train", 8), ("test", 2)):
            for c, cls in enumerate(("airplane", "cat")):
                for i in range(n):
                    img = np.full((32, 32, 3), 60 + 120 * c, np.uint8)
                    img[i % 32] = 255
                    tmp = path.parent / "x.jpg"
                    Image.fromarray(img).save(tmp)
                    zf.write(tmp, f"cifar10/{split}/{cls}/{i}.jpg")
    return path


# -- recipes that fit the data --------------------------------------------------------------


def test_small_images_get_the_small_image_recipe_at_their_own_size():
    config = resolve_recipe(None, {"data": "synthetic:20:16:3"})
    assert config.recipe["name"] == "small-images" and "16 px" in config.recipe["reason"]
    assert config.epochs == 4 and config.schedule == "cosine" and config.lr == 0.015
    assert config.image_size == 16 and config.model_options["input_size"] == 67
    assert "upscaled per batch" in config.recipe["input"]
    large = resolve_recipe(None, {"data": "synthetic:20:100:3"})
    assert large.recipe["name"] == "paper" and large.epochs == 90
    assert large.image_size == 100  # never upsampled on prepare
    explicit = resolve_recipe("paper", {"data": "synthetic:20:16:3"})
    assert explicit.recipe["name"] == "paper" and explicit.image_size == 256  # --config wins
    embedded = resolve_recipe(None, {})
    assert embedded.recipe["name"] == "fashion-mnist" and embedded.image_size == 67


def test_a_small_model_on_large_images_is_not_stored_at_256():
    config = resolve_recipe(None, {"data": "synthetic:20:100:3", "model": "cifar_fig1"})
    assert config.image_size == 36  # the paper's 256/227 margin of a 32-px input
    assert "32-px crops" in config.recipe["input"]


def test_cifar10_via_train_is_stored_at_32_px(tmp_path, cache, monkeypatch, capsys):
    monkeypatch.setenv("ALEXNET_CIFAR10", str(_cifar_like_zip(tmp_path / "c.zip")))
    out = tmp_path / "run"
    argv = ["train", "--data", "cifar10", "--out", str(out), "--max-steps", "1",
            "--batch-size", "4", "--precision", "fp32", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert text.startswith("recipe small-images: its images are 32 px")
    stores = [p for p in cache.rglob("meta.json")]
    assert stores and all(json.loads(p.read_text())["image_size"] == 32 for p in stores)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["image_size"] == 32 and config["recipe"]["name"] == "small-images"
    assert "67-px input" in config["recipe"]["input"]
    assert "held out 10% of train, 2 images" in text  # CIFAR-10 has no val split
    assert "quiet" not in config  # a resume is not silenced by an earlier --quiet
    assert "epoch 1 stopped after 1 of" in text  # --quiet keeps the epoch lines
    assert "batch/s" not in captured.err  # and hides the bar
    partial = [r for r in read_metrics(out) if r["kind"] == "partial_epoch"]
    assert partial and partial[0]["batches"] == 1 and partial[0]["epoch"] == 1
    from alexnet.train.weights import load_weights

    model, pre, _ = load_weights(out)  # inference upscales as training did
    assert (pre.image_size, pre.crop_size) == (32, 67)
    x = pre.center(np.zeros((32, 32, 3), np.uint8))
    assert x.shape == (3, 67, 67) and model(x[None]).shape == (1, 2)


def test_bad_arguments_fail_before_preparing(cache, capsys):
    assert main(["train", "--model", "alexnett", "--data", "synthetic:20:16:3"]) == 2
    assert "unknown model 'alexnett' (did you mean 'alexnet'?)" in capsys.readouterr().err
    assert main(["train", "--model-option", "dropout=2", "--data", "synthetic:20:16:3"]) == 2
    assert "dropout" in capsys.readouterr().err
    assert main(["train", "--normalize", "mean", "--data", "synthetic:20:16:3"]) == 2
    assert "normalize 'mean'" in capsys.readouterr().err
    assert main(["train", "--schedule", "linear", "--data", "synthetic:20:16:3"]) == 2
    assert not cache.exists()


def test_print_config_shows_the_resolved_recipe_and_stops(cache, capsys):
    assert main(["train", "--data", "synthetic:20:16:3", "--dry-run", "--lr", "0.1"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["lr"] == 0.1 and config["recipe"]["name"] == "small-images"
    assert not cache.exists()


def test_train_help_shows_the_defaults_in_force():
    out = subprocess.run(
        [sys.executable, "-m", "alexnet", "train", "--help"], capture_output=True, text=True,
        env={"PYTHONPATH": SRC, "COLUMNS": "200"}, check=True,
    ).stdout  # fmt: skip
    assert "(default 4; paper recipe 90)" in out and "(default 0.015; paper recipe 0.01)" in out
    assert "input_size=67" in out


def test_a_folder_without_val_holds_one_out(tmp_path, cache, capsys):
    for c in range(2):
        for i in range(10):
            _png(tmp_path / "src" / f"k{c}" / f"{i}.png", 20, 60 + 120 * c)
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "src"), "--out", str(out), "--max-steps", "1",
            "--batch-size", "4", "--precision", "fp32", "--model", "cifar_fig1",
            "--model-option", "input_size=16"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "held out 10% of train, 2 images (seeded, not stratified; 18 left" in captured.out
    assert "epoch 1/1" in captured.err  # the bar tells the real length, not 1/4
    assert yaml.safe_load((out / "config.yaml").read_text())["val_split"] == 0.1


# -- one set of numbers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """cifar_fig1 trained 2 epochs on a two-class folder with train and val splits."""
    root = tmp_path_factory.mktemp("folder")
    for split, n in (("train", 12), ("val", 4)):
        for c, cls in enumerate(("tabby", "tench")):
            for i in range(n):
                _png(root / "src" / split / cls / f"{i}.png", 16, 50 + 150 * c + i)
    out = root / "run"
    argv = ["train", "--data", str(root / "src"), "--out", str(out), "--model", "cifar_fig1",
            "--model-option", "input_size=16", "--epochs", "2", "--batch-size", "4",
            "--precision", "fp32", "--quiet", "--lr", "0.05"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "alexnet", *argv], capture_output=True, text=True,
        env={"PYTHONPATH": SRC, "ALEXNET_CACHE": str(root / "cache"), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return root, out, proc.stdout


def test_train_and_evaluate_report_the_same_weights_and_score(folder_run, capsys):
    _, out, text = folder_run
    final = next(line for line in text.splitlines() if line.startswith("final val"))
    assert "weights: best.pt (epoch" in final
    acc = float(final.split("top-1 acc ")[1].split()[0])
    assert main(["evaluate", str(out), "--split", "val"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert float(line.split("(acc ")[1].split(")")[0]) == pytest.approx(acc, abs=1e-4)
    epoch = final.split("best.pt (epoch ")[1].split(",")[0]
    assert f"weights: best.pt (epoch {epoch})" in line
    assert json.loads((out / "test_metrics.json").read_text())["weights"].startswith("best.pt")
    assert main(["evaluate", str(out)]) == 0  # no test split: val, as train's final numbers
    assert capsys.readouterr().out.startswith("val (8 images")


def test_evaluate_matches_classes_by_name_and_refuses_others(folder_run, tmp_path, capsys):
    _, out, _ = folder_run
    for i in range(3):  # only 'tench': data class 0 is the model's class 1
        _png(tmp_path / "one" / "tench" / f"{i}.png", 16, 200 + i)
    assert main(["evaluate", str(out), "--data", str(tmp_path / "one"), "--split", "train",
                 "--json"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["count"] == 3 and result["per_class_acc"][0] is None
    assert result["per_class_acc"][1] is not None and "matched by name" in result["class_note"]
    _png(tmp_path / "other" / "goldfish" / "0.png", 16, 9)
    assert main(["evaluate", str(out), "--data", str(tmp_path / "other"), "--split", "train"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("alexnet evaluate: error: the data's classes do not match")
    assert "'goldfish'" in err and len(err.splitlines()) == 1
    assert main(["evaluate", str(out), "--split", "val"]) == 0
    assert "tabby" not in capsys.readouterr().out  # per-class lines only with --per-class


def test_loss_rising_sharply_early_warns_once_naming_the_lr(capsys):
    from alexnet.train.loop import Trainer

    t = Trainer.__new__(Trainer)
    t._first_loss, t._rise_warned = None, False
    t.progress = type("P", (), {"step": 1})()
    t.schedule = type("S", (), {"lr": 0.05})()
    t.ctx = type("C", (), {"is_main": True})()
    for step, loss in enumerate((3.11, 10.93, 18.37), 1):
        t.progress.step = step
        t._watch_rise(loss)
    err = capsys.readouterr().err
    assert err.count("warning: the loss rose from 3.11 to 10.93 by step 2 at lr 0.05") == 1


def test_a_smoke_experiment_describes_its_real_data(tmp_path, capsys):
    out = tmp_path / "fig1"
    assert main(["experiment", "fig1", "--smoke", "--seeds", "1", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert "--data" not in result["command"] and "50,000" not in result["data"]
    assert result["data"].startswith("--smoke: synthetic:64") and "5,000" not in json.dumps(
        result["sweep"]
    )
    assert "synthetic" in capsys.readouterr().out
    docs = tmp_path / "docs"
    assert main(["experiment", "page", str(out), "--docs", str(docs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("alexnet experiment page: error:") and "smoke" in err
    assert len(err.splitlines()) == 1


# -- errors are one clear line -----------------------------------------------------------------


def _one_line_error(err: str, prefix: str) -> str:
    err = err.strip()
    assert "Traceback" not in err and err.splitlines()[-1].startswith(prefix), err
    return err


def test_a_misspelt_verb_gets_the_closest(capsys):
    assert main(["trian"]) == 2
    err = _one_line_error(capsys.readouterr().err, "alexnet: error: unknown verb 'trian'")
    assert "(did you mean 'train'?)" in err and len(err.splitlines()) == 1


def test_a_closed_pipe_is_not_a_traceback():
    read, write = os.pipe()
    os.close(read)  # the reader (`head`) has gone before anything is written
    proc = subprocess.run(
        [sys.executable, "-m", "alexnet", "list-models", "--json"], stdout=write,
        stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": SRC, "ALEXNET_NO_TCMALLOC": "1"},
    )  # fmt: skip
    os.close(write)
    assert proc.returncode == 0 and proc.stderr == ""


def test_numeric_options_are_usage_errors_with_the_verbs_prefix(capsys):
    for argv, prefix in (
        (["predict", "w", "x.png", "--top", "0"], "alexnet predict: error: argument --top"),
        (["bench", "--batch", "0"], "alexnet bench: error: argument --batch"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert "must be >= 1, got 0" in _one_line_error(capsys.readouterr().err, prefix)


def test_prepare_of_an_unknown_name_lists_the_known_ones(tmp_path, capsys):
    assert main(["prepare", "nope", str(tmp_path / "out")]) == 2
    err = _one_line_error(capsys.readouterr().err, "alexnet prepare: error:")
    assert "fashion-mnist, cifar10, synthetic:" in err


def test_swapped_predict_arguments_say_so(folder_run, tmp_path, capsys):
    _, out, _ = folder_run
    _png(tmp_path / "a.png", 16, 99)
    assert main(["predict", str(tmp_path / "a.png"), str(out)]) == 2
    err = _one_line_error(capsys.readouterr().err, "alexnet predict: error:")
    assert "is an image, not weights" in err


def test_anomaly_class_by_name(folder_run, capsys):
    _, out, _ = folder_run
    assert main(["anomaly", "eval", str(out), "--anomaly-class", "tench", "--k", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["anomaly_name"] == "tench"
    assert main(["anomaly", "eval", str(out), "--anomaly-class", "automobile"]) == 2
    err = _one_line_error(capsys.readouterr().err, "alexnet anomaly: error:")
    assert "tabby, tench" in err


def test_export_without_out_writes_beside_the_run(folder_run, tmp_path, capsys):
    from alexnet.commands.export import default_out

    _, out, _ = folder_run
    assert default_out(str(out), "onnx") == str(out / "model.onnx")
    assert default_out(str(out), "safetensors") == str(out / "model-export.safetensors")
    assert default_out(str(out / "model.safetensors"), "safetensors").endswith(
        "-export.safetensors"
    )
    pytest.importorskip("onnx")
    assert main(["export", str(out), "--format", "onnx"]) == 0
    assert (out / "model.onnx").is_file() and str(out / "model.onnx") in capsys.readouterr().out


def test_the_report_shows_the_test_numbers_and_their_weights(folder_run, tmp_path):
    from alexnet.viz.report import build_report

    _, out, _ = folder_run
    page = build_report(out, out=tmp_path / "r.html").read_text()
    final = json.loads((out / "test_metrics.json").read_text())
    assert "<h2>Test</h2>" in page and f"<b>{final['top1_acc']:.2%}</b>" in page
    assert "weights: best.pt (epoch" in page


# -- alexnet bench tells the truth ----------------------------------------------------------


def test_bench_photos_need_no_scikit_image(monkeypatch):
    from alexnet.data import photos

    monkeypatch.setitem(sys.modules, "skimage", None)  # `import skimage` raises ImportError
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    photos._photos.cache_clear()
    try:
        assert photos.photo_source() == "procedural"
        jpegs = photos.photo_jpegs(3, seed=1)
        assert jpegs == photos.photo_jpegs(3, seed=1) and len(set(jpegs)) == 3
        assert all(20_000 < len(j) < 200_000 for j in jpegs)  # photo-like JPEG sizes at 500x375
    finally:
        photos._photos.cache_clear()


def test_bench_tables_say_the_sizes_and_not_noise():
    from alexnet.bench.run import QUICK
    from alexnet.bench.text import format_results

    lrn = {"layer": "conv1", "precision": "fp32", "shape": [2, 96, 55, 55], "fused_ms": 0.1,
           "nn_ms": 1.0, "floor_ms": 0.2, "x_floor": 0.46, "speedup_vs_nn": 10.0,
           "below_resolution": True}  # fmt: skip
    results = {
        "machine": {
            "cpu": "x",
            "cpu_kind": "avx2",
            "cpu_flags": [],
            "threads": 2,
            "allocator": "-",
            "cuda": None,
            "lrn_backend": "cpp",
            "best_precision": "fp32",
            "torch": "2",
            "load_avg": [0.0],
            "photos": "procedural",
        },
        "settings": {
            "batch": QUICK.batch, "repeats": QUICK.repeats, "input_size": 99, "matmul_n": 128,
        },
        "lrn": [lrn],
        "train": [],
        "data": {"precision": "fp32", "rows": [], "loader_img_s_per_core": {}},
        "step_shares": {},
        "infer": [],
        "targets": [],
    }  # fmt: skip
    text = format_results(results)
    assert "batch 2, 1 round per table" in text and "input 99 px" in text
    assert "below resolution" in text and "0.46" not in text
    assert "issue" not in text
    help_text = subprocess.run(
        [sys.executable, "-m", "alexnet", "bench", "--help"], capture_output=True, text=True,
        env={"PYTHONPATH": SRC, "COLUMNS": "200"}, check=True,
    ).stdout  # fmt: skip
    assert f"batch {QUICK.batch}, {QUICK.repeats} round, a {QUICK.input_size}-px input" in help_text
    assert not QUICK.all_precisions


def test_resume_is_not_quiet_and_replaces_the_partial_record(tmp_path, cache, capsys):
    out = tmp_path / "run"
    common = ["--max-steps", "1", "--batch-size", "8", "--precision", "fp32"]
    argv = ["train", "--data", "synthetic:40:16:2", "--out", str(out), "--model", "cifar_fig1",
            "--model-option", "input_size=16", "--quiet", *common]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--max-steps", "2"]) == 0
    captured = capsys.readouterr()
    assert "resuming at step 1 (epoch 1); recipe small-images" in captured.out
    assert "epoch 1/1" in captured.err  # the bar is back: --quiet was not saved
    partial = [r for r in read_metrics(out) if r["kind"] == "partial_epoch"]
    assert [r["step"] for r in partial] == [2]


def test_another_model_keeps_its_own_options_and_a_prepared_size_is_fixed(tmp_path):
    config = resolve_recipe(None, {"model": "cifar_fig1"})
    assert (
        config.model_options == {} and "cifar_fig1's own model options" in config.recipe["reason"]
    )
    fm = resolve_recipe(None, {"data": "fashion-mnist"})
    assert fm.recipe["name"] == "fashion-mnist" and fm.image_size == 67 and fm.val_split == 0.0
    prepare("synthetic:10:16:2", tmp_path / "p", size=16, workers=1, quiet=True)
    with pytest.raises(ValueError, match="prepared at 16 px; --image-size 32 cannot"):
        resolve_recipe(None, {"data": str(tmp_path / "p"), "image_size": 32})


@pytest.mark.slow  # the whole quick bench: about a minute on two cores
def test_bench_quick_runs_without_scikit_image(tmp_path):
    blocked = tmp_path / "blocked" / "skimage"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('scikit-image is not installed')\n")
    env = {"PYTHONPATH": f"{tmp_path / 'blocked'}:{SRC}", "XDG_CACHE_HOME": str(tmp_path),
           "ALEXNET_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "alexnet", "bench", "--quick"], capture_output=True, text=True,
        env=env, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "photos procedural" in out.stdout and "Traceback" not in out.stderr


def test_predict_on_a_missing_device_is_one_line(folder_run, tmp_path, capsys):
    _, out, _ = folder_run
    _png(tmp_path / "a.png", 16, 99)
    for device in ("bogus", *(() if torch.cuda.is_available() else ("cuda",))):
        assert main(["predict", str(out), str(tmp_path / "a.png"), "--device", device]) == 2
        err = _one_line_error(capsys.readouterr().err, f"alexnet predict: error: --device {device}")
        assert len(err.splitlines()) == 1
