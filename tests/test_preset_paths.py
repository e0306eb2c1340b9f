"""The drift guard: one photo through every path that preprocesses (the loader's evaluation
batch from a prepared store, `predict`, `embed`, and the ONNX export run in onnxruntime with its
stored preset) gives the same probabilities / features. Training and inference preprocessing
cannot drift apart without this failing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.data.images import load_image, resize_center_crop, resize_warp
from alexnet.data.loader import Loader
from alexnet.data.prepare import prepare
from alexnet.data.preset import center_crop
from alexnet.data.store import open_store
from alexnet.infer.export import export_onnx
from alexnet.infer.predict import embed_files, predict_files
from alexnet.train.run import eval_stats
from alexnet.train.weights import load_weights
from test_infer_helpers import IMAGE, make_run, tiny_model

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize(
    ("mean_image", "warp"), [(True, False), (False, False), (False, True)],
    ids=["mean-image", "channel", "warp"],
)  # fmt: skip
def test_one_photo_every_path_same_numbers(tmp_path, mean_image, warp) -> None:
    from skimage import data

    folder = tmp_path / "photos" / "cat"
    folder.mkdir(parents=True)
    photo = folder / "chelsea.png"
    Image.fromarray(data.chelsea()).save(photo)
    run = make_run(tmp_path / "run", tiny_model(), mean_image=mean_image)
    if warp:  # Caffe's geometry: the whole photo squeezed to a square (the preset says so)
        ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
        ckpt["preprocess"]["resize"] = "warp"
        torch.save(ckpt, run / "checkpoints" / "last.pt")
    model, pre, _ = load_weights(run)
    assert pre.image_size == IMAGE

    (item,) = predict_files(model, pre, [photo], top=10)
    by_predict = torch.zeros(10, dtype=torch.float64)
    for entry in item.top:
        by_predict[entry["index"]] = entry["probability"]
    (emb,) = embed_files(model, pre, [photo])

    prepare(tmp_path / "photos", tmp_path / "store", size=IMAGE, warp=warp, workers=1,
            quiet=True)  # fmt: skip
    store = open_store(next(p for p in (tmp_path / "store").iterdir() if p.is_dir()))
    loader = Loader(store, train=False, crop_size=pre.crop_size, batch_size=1,
                    stats=eval_stats(pre), normalize=pre.normalize)  # fmt: skip
    images, _ = next(iter(loader.epoch(0)))
    with torch.no_grad():
        by_loader = model(images).softmax(1)[0].double()
        loader_features = model.embed(images)[0]

    onnx_path = tmp_path / "m.onnx"
    export_onnx(model, onnx_path, pre, with_preprocess=True)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    stored = json.loads(meta["alexnet.preset"])  # the file says how to resize and crop
    assert stored["image_size"] == IMAGE and json.loads(meta["alexnet.classes"])[0] == "class0"
    resize = resize_warp if stored.get("resize") == "warp" else resize_center_crop
    side = resize(load_image(photo), stored["image_size"])
    crop = center_crop(torch.from_numpy(side).permute(2, 0, 1), stored["crop_size"])
    (by_onnx,) = session.run(["probabilities"], {"input": crop.permute(1, 2, 0)[None].numpy()})

    assert by_loader.max() > 0.5  # a peaked softmax: a wrong pixel would move it
    assert (stored.get("resize") == "warp") == warp
    torch.testing.assert_close(by_predict, by_loader, rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(by_onnx[0]).double(), by_loader, rtol=0,
                               atol=1e-5)  # fmt: skip
    torch.testing.assert_close(torch.as_tensor(emb.features), loader_features, rtol=1e-5,
                               atol=1e-4)  # fmt: skip
    assert np.isfinite(by_onnx).all()
