"""The whole path for Caffe and ONNX files: served from 127.0.0.1, pulled (hash checked),
converted, then `alexnet predict NAME photo`; the independent truth is OpenCV's dnn module and
onnxruntime running the publisher's file on the image preprocessed as Caffe did (warp to
256x256, centre 227, BGR, minus the mean values)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from alexnet.cli import main
from alexnet.models import create_model
from alexnet.models.pretrained.registry import get_weights
from caffe_files import data_blobs, deploy_prototxt, write_caffemodel
from test_onnx_import import oracle_copy, zoo_model
from weights_server import serve

cv2 = pytest.importorskip("cv2")
ort = pytest.importorskip("onnxruntime")
MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)
CLASSES = 1000  # the registry's class table is ImageNet's


def caffe_view(photo) -> np.ndarray:
    """Caffe's ImageNet preprocessing, written out: (1, 3, 227, 227) BGR minus the means."""
    rgb = np.asarray(Image.open(photo).convert("RGB").resize((256, 256), Image.BILINEAR))
    crop = rgb[14:241, 14:241].astype(np.float32)
    return np.ascontiguousarray((crop[..., ::-1] - MEAN_BGR).transpose(2, 0, 1)[None])


def random_state(seed: int) -> dict[str, torch.Tensor]:
    """bvlc_alexnet-shaped weights, He-scaled with random biases (the LRN and biases matter)."""
    with torch.device("meta"):
        shapes = create_model("alexnet", num_classes=CLASSES).state_dict()
    rng = np.random.default_rng(seed)
    out = {}
    for key, meta in shapes.items():
        scale = 0.1 if key.endswith("bias") else (2 / meta[0].numel()) ** 0.5
        out[key] = torch.from_numpy(rng.standard_normal(meta.shape, np.float32) * scale)
    out["fc8.weight"] /= 10  # probabilities that are not one-hot
    return out


def entry(fmt: str, file_name: str, url: str, digest: tuple[str, str]) -> dict:
    shipped = get_weights("caffe-alexnet")
    return {
        "model": "alexnet", "model_options": shipped.model_options, "format": fmt,
        "url": url, "file_name": file_name, digest[0]: digest[1], "licence": "test",
        "published": {"top1": 1.0, "top5": 2.0}, "classes": "imagenet", "preset": shipped.preset,
    }  # fmt: skip


def predicted(name: str, photo, capsys) -> dict[int, float]:
    capsys.readouterr()
    assert main(["predict", name, str(photo), "--json", "--top", "5"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    return {p["index"]: p["probability"] for p in result["predictions"]}


def agree(ours: dict[int, float], probs: np.ndarray) -> None:
    top = np.argsort(-probs)[:5]
    assert list(ours) == top.tolist()
    np.testing.assert_allclose(list(ours.values()), probs[top], rtol=1e-4)


def test_caffe_and_onnx_files_pulled_and_predicted(tmp_path, monkeypatch, capsys) -> None:
    from skimage import data

    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    photo = tmp_path / "chelsea.jpg"
    Image.fromarray(data.chelsea()).save(photo, quality=92)
    files = tmp_path / "served"
    files.mkdir()
    state = random_state(0)
    caffemodel = write_caffemodel(files / "net.caffemodel", data_blobs(state), "alexnet", "layers")
    prototxt = tmp_path / "deploy.prototxt"
    prototxt.write_text(deploy_prototxt("alexnet", CLASSES, batch=1))
    bgr = dict(state, **{"conv1.weight": state["conv1.weight"].flip(1)})
    onnx_file = files / "zoo.onnx"
    import onnx

    onnx.save(zoo_model(bgr), onnx_file)
    with serve(files) as base:
        registry = tmp_path / "extra.yaml"
        registry.write_text(yaml.safe_dump({
            "caffetest": entry("caffemodel", "net.caffemodel", f"{base}/net.caffemodel",
                               ("sha1", hashlib.sha1(caffemodel.read_bytes()).hexdigest())),
            "onnxtest": entry("onnx", "zoo.onnx", f"{base}/zoo.onnx",
                              ("sha256", hashlib.sha256(onnx_file.read_bytes()).hexdigest())),
        }))  # fmt: skip
        monkeypatch.setenv("ALEXNET_WEIGHTS_REGISTRY", str(registry))
        assert main(["weights", "pull", "caffetest", "--quiet"]) == 0
        assert main(["weights", "pull", "onnxtest", "--quiet"]) == 0
    blob = caffe_view(photo)

    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setInput(blob)
    logits = net.forward("fc8").reshape(-1).astype(np.float64)
    agree(predicted("caffetest", photo, capsys), np.exp(logits - logits.max()) / np.exp(
        logits - logits.max()).sum())  # fmt: skip

    oracle = tmp_path / "oracle.onnx"
    onnx.save(oracle_copy(onnx.load(str(onnx_file)), 227), oracle)
    session = ort.InferenceSession(str(oracle), providers=["CPUExecutionProvider"])
    (probs,) = session.run(["prob_1"], {"data_0": blob})
    agree(predicted("onnxtest", photo, capsys), probs.reshape(-1).astype(np.float64))


def test_a_caffemodel_of_another_net_lands_nowhere(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    files = tmp_path / "served"
    files.mkdir()
    conv1 = {k: v for k, v in random_state(1).items() if k.startswith("conv1")}
    small = write_caffemodel(files / "small.caffemodel", data_blobs(conv1), "alexnet", "layer")
    with serve(files) as base:
        registry = tmp_path / "extra.yaml"
        registry.write_text(yaml.safe_dump({"other": entry(
            "caffemodel", "small.caffemodel", f"{base}/small.caffemodel",
            ("sha1", hashlib.sha1(small.read_bytes()).hexdigest()))}))  # fmt: skip
        monkeypatch.setenv("ALEXNET_WEIGHTS_REGISTRY", str(registry))
        assert main(["weights", "pull", "other", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no layer conv2" in err and err.count("\n") == 1
    assert list((tmp_path / "cache" / "weights").iterdir()) == []
