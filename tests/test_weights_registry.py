"""Named weights: the registry, pull from a local server (hash checked, converted, cached),
import without a network, every failure leaving nothing in the cache that looks complete."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from alexnet.cli import main
from alexnet.models import create_model
from alexnet.models.pretrained.registry import all_weights, get_weights
from weights_server import serve

TV_PRESET = get_weights("torchvision").preset


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory) -> Path:
    """A torchvision-keyed AlexNet state dict with seeded random weights (as the real file)."""
    torch.manual_seed(0)
    model = create_model("alexnet_owt")
    path = tmp_path_factory.mktemp("files") / "tv-test.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ALEXNET_OFFLINE", raising=False)
    monkeypatch.delenv("ALEXNET_WEIGHTS_MIRROR", raising=False)
    return tmp_path / "cache"


def registry_file(tmp_path: Path, monkeypatch, **entries: dict) -> Path:
    path = tmp_path / "extra.yaml"
    path.write_text(yaml.safe_dump(entries))
    monkeypatch.setenv("ALEXNET_WEIGHTS_REGISTRY", str(path))
    return path


def tv_entry(url: str, digest: str, **extra) -> dict:
    return {
        "model": "alexnet_owt", "format": "torchvision", "url": url,
        "file_name": "tv-test.pth", "sha256": digest, "licence": "test",
        "published": {"top1": 1.0, "top5": 2.0, "how": "made up"}, "classes": "imagenet",
        "preset": TV_PRESET, **extra,
    }  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_files(cache: Path) -> list[str]:
    root = cache / "weights"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_shipped_entries_are_complete() -> None:
    entries = all_weights()
    assert "torchvision" in entries
    for e in entries.values():
        assert e.url.startswith(("http://", "https://")) and e.file_name in e.url
        assert len(e.digest) in (40, 64)  # a whole sha1 or sha256
        assert e.published["top1"] < e.published["top5"] < 100
        assert len(e.meta["categories"]) == 1000
        pre = e.transforms()
        with torch.device("meta"):
            model = create_model(e.model, **e.model_options)
        assert pre.crop_size == model.input_size and pre.in_chans == model.in_chans
    tv = entries["torchvision"]
    assert tv.digest.startswith("7be5be79") and tv.published == {
        "top1": 56.522, "top5": 79.066, "how": tv.published["how"],
    }  # fmt: skip
    # torchvision's normalisation in the 0-255 scale: (x/255 - m)/s == (x - 255m)/(255s)
    np.testing.assert_allclose(tv.preset["mean"], [255 * 0.485, 255 * 0.456, 255 * 0.406])
    np.testing.assert_allclose(tv.preset["std"], [255 * 0.229, 255 * 0.224, 255 * 0.225])


def test_pull_convert_predict_through_a_local_server(
    torchvision_file, cache, tmp_path, monkeypatch, capsys
) -> None:
    with serve(torchvision_file.parent) as base:
        registry_file(tmp_path, monkeypatch, tvtest=tv_entry(
            f"{base}/tv-test.pth", sha256(torchvision_file)))  # fmt: skip
        assert main(["weights", "pull", "tvtest", "--quiet"]) == 0
    assert cache_files(cache) == ["tvtest.safetensors"]  # the download itself is not kept
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), np.uint8)).save(photo)
    capsys.readouterr()
    assert main(["predict", "tvtest", str(photo), "--json", "--top", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # the independent truth: the published file loaded by torch into the same layout, fed
    # torchvision's transform written out here (shorter side 256, centre 224, /255, mean/std)
    model = create_model("alexnet_owt").eval()
    model.load_state_dict(torch.load(torchvision_file, weights_only=True))
    img = Image.open(photo).convert("RGB").resize((341, 256), Image.BILINEAR)
    x = torch.tensor(np.asarray(img), dtype=torch.float64)[16:240, 58:282] / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64)) / torch.tensor(
        [0.229, 0.224, 0.225], dtype=torch.float64
    )
    with torch.no_grad():
        probs = model.double()(x.permute(2, 0, 1)[None]).softmax(1)[0]
    top = probs.topk(3)
    got = doc["results"][0]["predictions"]
    assert [e["index"] for e in got] == top.indices.tolist()
    np.testing.assert_allclose([e["probability"] for e in got], top.values, rtol=1e-3)
    # the same weights from Python, with the entry's preset and class names attached
    net = create_model("alexnet_owt", weights="tvtest")
    assert torch.equal(net.features[0].weight, model.features[0].weight.float())
    assert net.preset.crop_size == 224 and net.weights.meta["categories"][0] == "tench"


def test_cut_connection_wrong_hash_and_foreign_file_leave_nothing(
    torchvision_file, cache, tmp_path, monkeypatch, capsys
) -> None:
    other = torchvision_file.parent / "other.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3)}, other)
    with serve(torchvision_file.parent) as base:
        good = sha256(torchvision_file)
        registry_file(
            tmp_path, monkeypatch,
            cut=tv_entry(f"{base}/cut/tv-test.pth", good),
            wrong=tv_entry(f"{base}/tv-test.pth", "0" * 64),
            foreign=tv_entry(f"{base}/other.pth", sha256(other), file_name="other.pth"),
        )  # fmt: skip
        for name, says in [
            ("cut", "truncated"),
            ("wrong", "not the published file"),
            ("foreign", "not a torchvision alexnet state dict"),
        ]:
            assert main(["weights", "pull", name, "--quiet"]) == 2
            err = capsys.readouterr().err
            assert says in err and err.count("\n") == 1, err
            assert cache_files(cache) == [], name
        # the real entry through a mirror serving another file: the registry's hash refuses it
        monkeypatch.setenv("ALEXNET_WEIGHTS_MIRROR", base)
        (torchvision_file.parent / "alexnet-owt-7be5be79.pth").write_bytes(b"not the file")
        assert main(["weights", "pull", "torchvision", "--quiet"]) == 2
        assert "7be5be79" in capsys.readouterr().err and cache_files(cache) == []


def test_offline_import_and_errors(torchvision_file, cache, tmp_path, monkeypatch, capsys) -> None:
    registry_file(tmp_path, monkeypatch, tvtest=tv_entry(
        "http://127.0.0.1:9/tv-test.pth", sha256(torchvision_file)))  # fmt: skip
    assert main(["weights", "pull", "tvtest", "--quiet"]) == 2  # nothing listens on port 9
    assert "download of http://127.0.0.1:9/tv-test.pth failed" in capsys.readouterr().err
    assert cache_files(cache) == []
    monkeypatch.setenv("ALEXNET_OFFLINE", "1")
    assert main(["predict", "tvtest", str(torchvision_file)]) == 2
    err = capsys.readouterr().err
    assert "alexnet weights import tv-test.pth --name tvtest" in err and "127.0.0.1:9" in err
    assert main(["weights", "import", str(torchvision_file)]) == 0  # found by its hash
    assert "tvtest" in capsys.readouterr().out and cache_files(cache) == ["tvtest.safetensors"]
    assert main(["weights", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["tvtest"]["cached"] and not rows["torchvision"]["cached"]
    # a file matching no entry, a name that does not exist
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk")
    assert main(["weights", "import", str(junk)]) == 2
    assert main(["weights", "import", str(junk), "--name", "nope"]) == 2
    assert main(["weights", "import", str(junk), "--name", "tvtest"]) == 2
    assert "unknown weights 'nope'; known:" in capsys.readouterr().err


def test_registry_file_errors(tmp_path, monkeypatch) -> None:
    for text, says in [
        ("x: [", "not YAML"),
        ("'../x': {}", "not a usable weights name"),
        ("x: {model: alexnet}", "lacks"),
    ]:
        path = tmp_path / "r.yaml"
        path.write_text(text)
        monkeypatch.setenv("ALEXNET_WEIGHTS_REGISTRY", str(path))
        with pytest.raises(ValueError, match=says):
            all_weights()
