"""Source readers: IDX and zip against the known counts, synthetic determinism, bad specs."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.data.sources import (
    FASHION_MNIST_DIR,
    SourceError,
    default_cifar10_zip,
    idx_source,
    resolve,
)


def _cifar_zip() -> Path | None:
    try:
        return default_cifar10_zip()
    except SourceError:
        return None


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_counts_and_labels() -> None:
    source = resolve("fashion-mnist")
    assert {k: len(v.ids) for k, v in source.splits.items()} == {"train": 60_000, "test": 10_000}
    assert source.classes[0] == "T-shirt/top" and source.classes[9] == "Ankle boot"
    for split, per_class in (("train", 6_000), ("test", 1_000)):  # balanced, 10 classes
        assert np.bincount(source.splits[split].labels).tolist() == [per_class] * 10
    img = source.splits["train"].read(0)
    assert img.shape == (28, 28, 1) and img.dtype == np.uint8


@pytest.mark.skipif(_cifar_zip() is None, reason="CIFAR-10 zip not present")
def test_cifar10_zip_counts_without_decoding() -> None:
    source = resolve("cifar10")
    assert {k: len(v.ids) for k, v in source.splits.items()} == {"train": 50_000, "test": 10_000}
    assert source.classes == [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    assert np.bincount(source.splits["test"].labels).tolist() == [1_000] * 10
    split = source.splits["train"]
    last = len(split.ids) - 1
    assert split.ids[last].split("/")[-2] == "truck" and split.labels[last] == 9
    assert split.read(last).shape == (32, 32, 3)


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_idx_reader_on_a_written_file(tmp_path: Path) -> None:
    images = np.random.Generator(np.random.PCG64(0)).integers(0, 256, (5, 7, 6), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))
    source = resolve(tmp_path)
    split = source.splits["train"]
    assert list(source.splits) == ["train"] and source.classes == [str(i) for i in range(6)]
    np.testing.assert_array_equal(split.read(2)[:, :, 0], images[2])
    assert split.labels.tolist() == [3, 1, 4, 1, 5]
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x0d\x01" + bytes(8))
    with pytest.raises(SourceError, match="train-labels-idx1-ubyte: not a uint8 IDX"):
        idx_source(tmp_path)


def test_zip_layout_reader(tmp_path: Path) -> None:
    path = tmp_path / "set.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for split in ("train", "test"):
            for k, name in enumerate(("dog", "cat")):
                buf = io.BytesIO()
                Image.new("RGB", (8, 6), (k * 100, 20, 30)).save(buf, "PNG")
                zf.writestr(f"root/{split}/{name}/0.png", buf.getvalue())
        zf.writestr("root/README", "not an image")
    source = resolve(path)
    assert source.classes == ["cat", "dog"]
    split = source.splits["test"]
    assert split.labels.tolist() == [0, 1] and split.ids[0] == "root/test/cat/0.png"
    assert tuple(split.read(1)[0, 0]) == (0, 20, 30)  # the dog image, colour k = 0


def test_synthetic_is_deterministic_and_validated() -> None:
    a, b = resolve("synthetic:12:16:3"), resolve("synthetic:12:16:3")
    assert len(a.splits["train"].ids) == 12 and len(a.splits["val"].ids) == 2
    np.testing.assert_array_equal(a.splits["train"].read(5), b.splits["train"].read(5))
    assert not np.array_equal(a.splits["train"].read(5), a.splits["train"].read(6))
    assert a.splits["train"].labels.tolist() == [i % 3 for i in range(12)]
    for bad in ("synthetic:x", "synthetic:0:16"):
        with pytest.raises(SourceError, match="synthetic"):
            resolve(bad)


def test_unknown_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no-such-dir"):
        resolve(tmp_path / "no-such-dir")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(SourceError, match=r"file\.txt: a file that is not a zip"):
        resolve(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no class folders"):
        resolve(tmp_path / "empty")
