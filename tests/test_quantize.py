"""Reduced-precision inference (`--precision bf16|int8`, `export --quantize int8`): agreement
with fp32 on real photos (scikit-image's), onnxruntime's float evaluation of the quantized graph
as the reference for its int8 kernels, and bad values as one line with exit status 2."""

from __future__ import annotations

import copy
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.cli import main
from alexnet.data.prepare import prepare
from alexnet.infer.predict import embed_files, predict_files
from alexnet.infer.quantize import (
    cached_int8,
    calibration_data,
    for_inference,
    int8_key,
    session,
)
from alexnet.train.weights import load_weights
from test_infer_helpers import IMAGE, make_run, tiny_model

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
skdata = pytest.importorskip("skimage.data")

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "hubble_deep_field", "retina")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny run, a folder of real photos in two classes, and that folder prepared (the
    calibration data); the int8 graphs cached in a cache of this module's own."""
    tmp = tmp_path_factory.mktemp("quant")
    patch = pytest.MonkeyPatch()
    patch.setenv("ALEXNET_CACHE", str(tmp / "cache"))
    for i, name in enumerate(PHOTOS):
        folder = tmp / "photos" / f"c{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(getattr(skdata, name)()).save(folder / f"{name}.png")
    run = make_run(tmp / "run", tiny_model(), mean_image=False)
    prepare(tmp / "photos", tmp / "store", size=IMAGE, workers=1, quiet=True)
    yield tmp, run
    patch.undo()


def _probs(items) -> np.ndarray:
    """(N, classes) probabilities from predict items listing every class."""
    out = []
    for item in items:
        row = np.zeros(len(item.top))
        for entry in item.top:
            row[entry["index"]] = entry["probability"]
        out.append(row)
    return np.stack(out)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def nets(setup):
    """The run's fp32 model and preset, its calibration batches, and its bf16 and int8 nets
    (one quantization per graph for the whole module: each takes seconds)."""
    tmp, run = setup
    model, pre, _ = load_weights(run)
    calibration = calibration_data(str(run), pre, str(tmp / "store"))
    cpu = torch.device("cpu")
    reduced = {p: for_inference(model, p, cpu, calibration) for p in ("bf16", "int8")}
    return model, pre, calibration, reduced


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_agrees_with_fp32_on_photos(setup, nets, precision) -> None:
    """Same top-1 on every photo, logits within 2% of fp32's spread and fc7 features at cosine
    >= 0.999 (bf16 keeps 8 mantissa bits; int8 ranges calibrated on these photos)."""
    tmp, _ = setup
    model, pre, _, reduced = nets
    net = reduced[precision]
    paths = sorted((tmp / "photos").rglob("*.png"))
    want = _probs(predict_files(model, pre, paths, top=10))
    got = _probs(predict_files(net, pre, paths, top=10))
    assert (got.argmax(1) == want.argmax(1)).all()
    x = torch.stack([pre.center(np.asarray(Image.open(p).convert("RGB"))) for p in paths])
    with torch.no_grad():
        fp32_logits, logits = model(x), net(x)
    spread = float(fp32_logits.max() - fp32_logits.min())
    assert 0 < float((logits - fp32_logits).abs().max()) <= 0.02 * spread
    fp32_feats = np.stack([i.features for i in embed_files(model, pre, paths)])
    feats = np.stack([i.features for i in embed_files(net, pre, paths)])
    assert _cosine(feats, fp32_feats).min() >= 0.999
    assert not np.array_equal(feats, fp32_feats)  # the reduced precision did run


def test_export_int8_is_the_predict_int8_model(setup, nets, capsys) -> None:
    """`export --quantize int8` writes the graph `predict --precision int8` runs (the same
    logits, the preset in its metadata), and its int8 kernels (QLinearConv, QGemm: onnxruntime
    optimised) match the quantized graph's definition (every optimisation off: quantize and
    dequantize nodes run as float ops around float convolutions)."""
    tmp, run = setup
    model, pre, calibration, reduced = nets
    out = tmp / "cli-int8.onnx"
    store = str(tmp / "store")
    args = ["export", str(run), "--format", "onnx", "--quantize", "int8", "--calibrate", store]
    assert main([*args, "--out", str(out)]) == 0
    assert "top-1 agrees with fp32 on 100.0%" in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["alexnet.preset"])["crop_size"] == pre.crop_size
    x = calibration[0]
    fast = session(out).run(None, {"input": x})[0]
    np.testing.assert_array_equal(fast, reduced["int8"](torch.from_numpy(x)).numpy())
    reference = session(out, optimize=False).run(None, {"input": x})[0]
    with torch.no_grad():
        fp32 = model(torch.from_numpy(x)).numpy()
    spread = float(fp32.max() - fp32.min())
    assert np.abs(fast - reference).max() <= 0.01 * spread
    assert 0 < np.abs(fast - fp32).max() <= 0.02 * spread  # about a quantization step


def test_predict_cli_int8_json(setup, capsys) -> None:
    tmp, run = setup
    photo = str(tmp / "photos" / "c1" / "chelsea.png")
    assert main(["predict", str(run), photo, "--top", "1", "--json"]) == 0
    fp32 = json.loads(capsys.readouterr().out)["results"][0]["predictions"][0]
    store = str(tmp / "store")
    rc = main(["predict", str(run), photo, "--top", "1", "--json", "--precision", "int8",
               "--calibrate", store])  # fmt: skip
    assert rc == 0
    int8 = json.loads(capsys.readouterr().out)["results"][0]["predictions"][0]
    assert int8["index"] == fp32["index"]
    assert int8["probability"] == pytest.approx(fp32["probability"], abs=0.05)


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["predict", "{run}", "{photo}", "--precision", "fp16"], "fp16"),
        (["embed", "{run}", "{photo}", "--out", "{tmp}/f.npy", "--precision", "int4"], "int4"),
        (["predict", "{run}", "{photo}", "--precision", "int8"], "--calibrate"),
        (["export", "{run}", "--format", "onnx", "--quantize", "int4"], "int4"),
        (["export", "{run}", "--format", "torchscript", "--quantize", "int8"], "torchscript"),
    ],
    ids=["predict-fp16", "embed-int4", "int8-no-data", "export-int4", "export-torchscript"],
)
def test_bad_values_are_one_line_exit_2(setup, capsys, argv, names) -> None:
    tmp, run = setup
    photo = tmp / "photos" / "c1" / "chelsea.png"
    argv = [a.format(run=run, photo=photo, tmp=tmp) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and names in err[0], err


def test_int8_without_onnxruntime_names_the_extra(setup, capsys, monkeypatch) -> None:
    tmp, run = setup
    for name in ("onnxruntime", "onnxruntime.quantization"):
        monkeypatch.setitem(sys.modules, name, None)  # `import` now raises ImportError
    photo = str(tmp / "photos" / "c1" / "chelsea.png")
    argv = ["predict", str(run), photo, "--precision", "int8", "--calibrate", str(tmp / "store")]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "alexnet[onnx]" in line


def test_int8_graphs_are_cached_per_weights_and_calibration(setup, nets) -> None:
    """The fixture's int8 logits graph is in the cache; the same weights and images find it
    again, other weights (one bias changed) or other images make a new one."""
    tmp, _ = setup
    model, _, calibration, reduced = nets
    reduced["int8"](torch.from_numpy(calibration[0]))  # built (or found) the logits graph
    path = cached_int8(model, calibration, "logits")
    assert path.parent == tmp / "cache" / "int8"
    assert cached_int8(model, calibration, "logits") == path
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.fc8.bias[0] += 1.0
    assert int8_key(other, calibration, "logits") != int8_key(model, calibration, "logits")
    half = [calibration[0][:4]]
    assert int8_key(model, half, "logits") != int8_key(model, calibration, "logits")
    assert int8_key(model, calibration, "features") != int8_key(model, calibration, "logits")
