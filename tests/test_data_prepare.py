"""`prepare` on a real little image folder with planted bad files; the store it writes."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.cli import main as cli_main
from alexnet.data.images import load_image, resize_center_crop
from alexnet.data.prepare import ensure_prepared, prepare, read_rejects
from alexnet.data.sources import SourceError, resolve
from alexnet.data.store import is_complete, open_store

pytest.importorskip("skimage")
from alexnet.data.photos import random_photo, write_photo_folder

SIZE = 48
GOOD_ODD = ("png_named.JPEG", "cmyk.JPEG", "grey.JPEG", "deep16.png")
BAD = ("truncated.JPEG", "empty.JPEG", "text.JPEG")


def _plant(folder: Path, rng: np.random.Generator) -> None:
    """Odd but valid files and bad files, in class folder `folder`."""
    photo = Image.fromarray(random_photo(rng, 160, 120))
    photo.save(folder / "png_named.JPEG", "PNG")
    photo.convert("CMYK").save(folder / "cmyk.JPEG", "JPEG")
    photo.convert("L").save(folder / "grey.JPEG", "JPEG")
    Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257).save(
        folder / "deep16.png"
    )
    buf = io.BytesIO()
    photo.save(buf, "JPEG")
    (folder / "truncated.JPEG").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "empty.JPEG").write_bytes(b"")
    (folder / "text.JPEG").write_text("this is not an image\n")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    write_photo_folder(root / "train", classes=3, per_class=4, width=160, height=120, seed=1)
    write_photo_folder(root / "val", classes=3, per_class=2, width=120, height=160, seed=2)
    _plant(root / "train" / "class1", np.random.Generator(np.random.PCG64(5)))
    return root


@pytest.fixture(scope="module")
def prepared(folder: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("store")
    return out, prepare(folder, out, size=SIZE, workers=2, quiet=True)


def test_rejects_exactly_the_bad_files(prepared) -> None:
    out, summary = prepared
    rows = read_rejects(out / "rejects.tsv")
    assert sorted(Path(f).name for _, f, _ in rows) == sorted(BAD)
    assert {split for split, _, _ in rows} == {"train"}
    train = summary["splits"]["train"]
    assert (train["seen"], train["stored"], train["rejected"]) == (12 + 7, 12 + 4, 3)
    assert summary["seen"] == summary["stored"] + summary["rejected"] == 19 + 6


def test_every_good_file_stored_with_its_label(folder: Path, prepared) -> None:
    out, _ = prepared
    store = open_store(out / "train")
    assert store.classes == ["class0", "class1", "class2"] and store.image_size == SIZE
    assert store.channels == 3 and store.encoding == "raw"
    for i, name in enumerate(store.files):
        image, label = store[i]
        assert name.split("/")[0] == store.classes[label]
        expected = resize_center_crop(load_image(folder / "train" / name, draft_size=SIZE), SIZE)
        np.testing.assert_array_equal(image, expected)
    stored_names = {Path(f).name for f in store.files if f.startswith("class1/")}
    assert set(GOOD_ODD) <= stored_names


def test_statistics_match_numpy_float64(prepared) -> None:
    out, _ = prepared
    store = open_store(out / "train")
    images = np.stack([store[i][0] for i in range(len(store))]).astype(np.float64)
    stats = store.stats
    np.testing.assert_allclose(stats.mean_image, images.mean(axis=0), rtol=0, atol=1e-4)
    pixels = images.reshape(-1, 3)
    cov = np.cov(pixels, rowvar=False, bias=True)
    np.testing.assert_allclose(stats.cov, cov, rtol=1e-9)
    np.testing.assert_allclose(stats.channel_mean, pixels.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats.channel_std, pixels.std(axis=0), rtol=1e-6)
    # the decomposition: cov p_i = lambda_i p_i, orthonormal, largest first
    np.testing.assert_allclose(cov @ stats.eigvec, stats.eigvec * stats.eigval, atol=1e-6)
    np.testing.assert_allclose(stats.eigvec.T @ stats.eigvec, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(stats.eigval, np.sort(np.linalg.eigvalsh(cov))[::-1], rtol=1e-9)
    assert open_store(out / "val").stats is None


def test_store_independent_of_worker_count(folder: Path, prepared, tmp_path) -> None:
    out, _ = prepared
    prepare(folder, tmp_path, size=SIZE, workers=1, quiet=True, splits=["train"])
    for name in ("data.bin", "labels.npy", "offsets.npy", "stats.npz"):
        assert (tmp_path / "train" / name).read_bytes() == (out / "train" / name).read_bytes()


def test_jpeg_encoding_and_keep_aspect(folder: Path, tmp_path) -> None:
    prepare(
        folder, tmp_path, size=SIZE, keep_aspect=True, encoding="jpeg", quiet=True, splits=["val"]
    )
    store = open_store(tmp_path / "val")
    assert store.encoding == "jpeg"
    image, _ = store[0]
    assert image.shape == (round(160 * SIZE / 120), SIZE, 3)  # portrait: width is the short side
    expected = resize_center_crop(
        load_image(folder / "val" / store.files[0], draft_size=SIZE), SIZE, keep_aspect=True
    )
    assert np.abs(image.astype(int) - expected).mean() < 2.5  # JPEG q95 4:4:4


def test_interrupted_prepare_leaves_nothing_complete(folder: Path, tmp_path, monkeypatch) -> None:
    source = resolve(folder)
    calls = {"n": 0}
    read = source.splits["train"].read

    def failing_read(index: int, draft_size: int | None = None) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt("injected")
        return read(index, draft_size)

    source.splits["train"].read = failing_read
    with pytest.raises(KeyboardInterrupt):
        prepare(source, tmp_path, size=SIZE, workers=1, quiet=True)
    assert not is_complete(tmp_path / "train")
    with pytest.raises(FileNotFoundError, match="not a complete prepared store"):
        open_store(tmp_path / "train")
    assert not list(tmp_path.glob(".train.tmp-*"))
    summary = prepare(folder, tmp_path, size=SIZE, workers=1, quiet=True)
    assert summary["stored"] == 22 and is_complete(tmp_path / "train")


def test_half_written_store_is_not_taken_as_complete(prepared, tmp_path) -> None:
    out, _ = prepared
    damaged = tmp_path / "train"
    damaged.mkdir()
    for name in ("meta.json", "labels.npy", "offsets.npy", "shapes.npy"):
        (damaged / name).write_bytes((out / "train" / name).read_bytes())
    (damaged / "data.bin").write_bytes((out / "train" / "data.bin").read_bytes()[:1000])
    with pytest.raises(ValueError, match="damaged"):
        open_store(damaged)


def test_rerun_reuses_complete_splits(folder: Path, tmp_path) -> None:
    first = ensure_prepared(folder, tmp_path, SIZE)
    stamp = os.stat(first / "train" / "meta.json").st_mtime_ns
    again = ensure_prepared(folder, tmp_path, SIZE)
    assert again == first and os.stat(first / "train" / "meta.json").st_mtime_ns == stamp
    summary = prepare(folder, first, size=SIZE, quiet=True)
    assert summary["splits"]["train"]["reused"] and summary["rejected"] == 3


def test_class_mismatch_and_unreadable_sources_are_clear_errors(tmp_path) -> None:
    write_photo_folder(tmp_path / "a" / "train", classes=2, per_class=1, width=64, height=48)
    write_photo_folder(tmp_path / "a" / "val", classes=3, per_class=1, width=64, height=48)
    with pytest.raises(SourceError, match="class2"):
        resolve(tmp_path / "a")
    (tmp_path / "b" / "cats").mkdir(parents=True)
    (tmp_path / "b" / "cats" / "x.jpg").write_text("nope")
    with pytest.raises(ValueError, match=r"no readable image.*x\.jpg"):
        prepare(tmp_path / "b", tmp_path / "out", size=SIZE, quiet=True)
    assert not is_complete(tmp_path / "out" / "train")


def test_flat_ilsvrc_val_with_ground_truth_and_names(tmp_path) -> None:
    root = tmp_path / "ilsvrc"
    write_photo_folder(root / "train", classes=2, per_class=1, width=64, height=48)
    for old, new in (("class0", "n01440764"), ("class1", "n01443537")):
        (root / "train" / old).rename(root / "train" / new)
    (root / "train" / ".ipynb_checkpoints").mkdir()  # hidden: not a class
    (root / "val").mkdir()
    rng = np.random.Generator(np.random.PCG64(0))
    for i in range(3):
        Image.fromarray(random_photo(rng, 64, 48)).save(root / "val" / f"v{i}.JPEG")
    (root / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\nv0,n01443537 1 2 3 4\nv1,n01440764 1 1 1 1\n"
        "v2,n01443537 0 0 1 1 n01443537 2 2 3 3\n"
    )
    (root / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n"
    )
    source = resolve(root)
    assert source.classes == ["n01440764", "n01443537"]
    assert source.class_names[1] == "goldfish, Carassius auratus"
    assert source.splits["val"].labels.tolist() == [1, 0, 1]
    (root / "val" / "v3.JPEG").write_bytes(b"")
    with pytest.raises(SourceError, match=r"no ground-truth label.*v3"):
        resolve(root)


def test_cli_prepare_prints_counts(folder: Path, tmp_path, capsys) -> None:
    assert (
        cli_main(
            ["prepare", str(folder), str(tmp_path), "--size", "32", "--quiet", "--workers", "1"]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "train: seen 19, stored 16, rejected 3" in text and "rejects.tsv" in text
    meta = json.loads((tmp_path / "train" / "meta.json").read_text())
    assert meta["image_size"] == 32 and meta["count"] == 16
    assert cli_main(["prepare", str(tmp_path / "missing"), str(tmp_path / "o")]) == 2
    assert "missing" in capsys.readouterr().err  # errors go to stderr


def test_store_of_another_version_is_refused_and_prepared_again(folder: Path, tmp_path) -> None:
    """A store written in an older layout is never read in the new one: open_store names the
    version, and ensure_prepared treats it as incomplete and prepares it again."""
    from alexnet.data.prepare import ensure_prepared
    from alexnet.data.store import VERSION, open_store

    root = ensure_prepared(str(folder), tmp_path, 32, quiet=True)
    meta_path = root / "train" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "version": VERSION - 1}))
    with pytest.raises(ValueError, match=f"version {VERSION - 1}"):
        open_store(root / "train")
    again = ensure_prepared(str(folder), tmp_path, 32, quiet=True)
    assert json.loads((again / "train" / "meta.json").read_text())["version"] == VERSION
    assert len(open_store(again / "train")) == meta["count"]
