"""Evaluation: top-k counting, per-class accuracy, and the paper's ten-crop test (section 4.1)."""

import numpy as np
import pytest
import torch

from alexnet.data.loader import make_loader
from alexnet.data.prepare import prepare
from alexnet.data.preset import Preprocess
from alexnet.data.store import open_store
from alexnet.eval.evaluate import evaluate
from alexnet.eval.metrics import Meter, topk_correct
from alexnet.infer.evaluate import evaluate_weights, match_classes
from alexnet.models import create_model
from alexnet.models.weights_file import save_weights
from alexnet.train.run import make_preprocess


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    prepare("synthetic:40:16:3", out, size=16, workers=1, quiet=True)
    return open_store(out / "train"), open_store(out / "val")  # 40 and 8 images


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model("cifar_fig1", num_classes=3, input_size=12)
    for layer in (model.conv1, model.conv2, model.conv3, model.fc):
        layer.reset_parameters()  # the tiny cuda-convnet init gives near-uniform outputs
    return model


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
    model = _model().double()
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


def test_evaluate_weights_against_the_stored_images(store, tmp_path):
    """The typed library function behind `alexnet evaluate`: a weights file on a prepared split
    gives the top-1 and loss of the float64 net on (image - mean image)'s centre crops."""
    train, val = store
    model = _model()
    pre = Preprocess.from_dict(make_preprocess(train, 12, "mean_image", train.stats))
    weights = save_weights(tmp_path / "w.safetensors", model, pre)
    result = evaluate_weights(weights, data=str(val.path.parent), split="val", batch_size=3)
    assert result["split"] == "val" and result["count"] == len(val) == 8
    assert result["classes"] == list(train.class_names) and result["class_note"] == ""
    mean = train.stats.mean_image.astype(np.float64)
    x = np.stack([np.asarray(val[i][0], np.float64) - mean for i in range(len(val))])[
        :, 2:14, 2:14
    ]  # the centre 12 of 16
    labels = torch.tensor([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        logits = model.double()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    assert result["top1_acc"] == pytest.approx((logits.argmax(1) == labels).double().mean().item())
    nll = torch.nn.functional.cross_entropy(logits, labels).item()
    assert result["loss"] == pytest.approx(nll, rel=1e-5)
    assert abs(nll - np.log(3)) > 0.01  # a real prediction, not the uniform one
    with pytest.raises(ValueError, match="no split 'test'"):
        evaluate_weights(weights, data=str(val.path.parent), split="test")
    with pytest.raises(ValueError, match="pass --data"):
        evaluate_weights(weights)  # a weights file has no run's data to default to


def test_match_classes_by_name_or_synset_never_by_position():
    model = ["cat", "dog", "tench, Tinca tinca"]
    assert match_classes(model, ["a", "b", "c"], model) == (None, "")  # same order: no mapping
    mapping, note = match_classes(model, ["n2", "n3", "n1"], ["Dog", "tench", "cat"])
    assert mapping == [1, 2, 0] and "3 onto the model's 3" in note
    mapping, _ = match_classes(model, ["n03", "n01"], ["?", "?"], ["n01", "n02", "n03"])
    assert mapping == [2, 0]  # by synset id where the names say nothing
    with pytest.raises(ValueError, match=r"'n9 \(bird\)' name no class"):
        match_classes(model, ["n1", "n9"], ["cat", "bird"])
    with pytest.raises(ValueError, match="the same class"):
        match_classes(model, ["n1", "n2"], ["cat", "CAT"])
