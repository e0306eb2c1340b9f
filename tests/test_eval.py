"""Evaluation: top-k counting, per-class accuracy, and the paper's ten-crop test (section 4.1)."""

import numpy as np
import pytest
import torch

from alexnet.data.loader import make_loader
from alexnet.data.prepare import prepare
from alexnet.data.store import open_store
from alexnet.eval.evaluate import evaluate
from alexnet.eval.metrics import Meter, topk_correct
from alexnet.models import create_model


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    prepare("synthetic:40:16:3", out, size=16, workers=1, quiet=True)
    return open_store(out / "train"), open_store(out / "val")  # 40 and 8 images


def test_topk_and_per_class_against_brute_force():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(50, 7, generator=g), torch.randint(0, 7, (50,), generator=g)
    order = np.argsort(-logits.numpy(), axis=1)
    for k in (1, 3, 5):
        expected = sum(labels[i].item() in order[i, :k] for i in range(50))
        assert topk_correct(logits, labels, (k,)) == [expected]
    meter = Meter(7)
    meter.update(logits[:20], labels[:20], 1.0)
    meter.update(logits[20:], labels[20:], 2.0)
    result = meter.result()
    assert result["count"] == 50 and result["loss"] == pytest.approx(3.0 / 50)
    for c in range(7):
        rows = labels == c
        want = (logits[rows].argmax(1) == c).double().mean().item() if rows.any() else None
        assert result["per_class_acc"][c] == pytest.approx(want)
    assert result["top1_err"] == pytest.approx(1 - result["top1_acc"])


def test_ten_crop_against_independent_computation(store):
    train, val = store
    torch.manual_seed(0)
    model = create_model("cifar_fig1", num_classes=3, input_size=12).double()
    for layer in (model.conv1, model.conv2, model.conv3, model.fc):
        layer.reset_parameters()  # the tiny cuda-convnet init gives near-uniform outputs
    loader = make_loader(val, train=False, crop_size=12, batch_size=3, stats=train.stats,
                         ten_crop=True)  # fmt: skip
    batches = ((x.double(), y) for x, y in loader.epoch(0))
    result = evaluate(model, batches, num_classes=3, ten_crop=True)
    # independent: float64 numpy crops of (image - mean image), explicit positions
    mean = train.stats.mean_image.astype(np.float64)
    probs, labels = [], []
    for i in range(len(val)):
        img, label = val[i]
        x = np.asarray(img, np.float64) - mean  # (16, 16, 3)
        views = [x[t : t + 12, l : l + 12] for t, l in [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]]
        views += [v[:, ::-1] for v in views]
        batch = torch.from_numpy(np.stack(views).transpose(0, 3, 1, 2).copy())
        with torch.no_grad():
            probs.append(model(batch).softmax(1).mean(0))
        labels.append(label)
    probs, labels = torch.stack(probs), torch.tensor(labels)
    assert result["count"] == len(val) == 8
    assert result["top1_acc"] == pytest.approx((probs.argmax(1) == labels).double().mean().item())
    nll = -probs[torch.arange(len(labels)), labels].log().mean().item()
    assert result["loss"] == pytest.approx(nll, rel=1e-6)  # float32 crops
    assert abs(nll - np.log(3)) > 0.01  # a real prediction, not the uniform one
    centre = evaluate(model, ((x.double(), y) for x, y in make_loader(
        val, train=False, crop_size=12, batch_size=3, stats=train.stats).epoch(0)),
        num_classes=3)  # fmt: skip
    assert centre["count"] == 8 and centre["loss"] != pytest.approx(result["loss"])
