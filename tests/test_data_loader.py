"""The loader and transforms: crop positions, reflection, lighting, determinism, sharding, RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.data.loader import make_loader
from alexnet.data.prepare import prepare
from alexnet.data.preset import ten_crop
from alexnet.data.sources import ArrayReader, Source, Split
from alexnet.data.stats import DataStats
from alexnet.data.store import FORMAT, VERSION, Store, open_store
from alexnet.data.transforms import lighting_offsets
from alexnet.train.data import hold_out

SIDE, CROP = 64, 40


@pytest.fixture(scope="module")
def coded(tmp_path_factory) -> Path:
    """Images whose pixel (y, x) holds (y, x, 7 * index): crops reveal where they came from."""
    n = 13
    yy, xx = np.meshgrid(np.arange(SIDE), np.arange(SIDE), indexing="ij")
    images = np.stack([np.stack([yy, xx, np.full_like(yy, 7 * i)], axis=2) for i in range(n)])
    labels = np.arange(n, dtype=np.int64) % 3
    split = Split(
        "train", [f"img{i}" for i in range(n)], labels, ArrayReader(images.astype(np.uint8))
    )
    out = tmp_path_factory.mktemp("coded")
    prepare(Source("coded", ["a", "b", "c"], {"train": split}), out, size=SIDE, quiet=True)
    return out / "train"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    prepare("synthetic:40:64:4", out, size=SIDE, workers=1, quiet=True)
    return out


def _zero_stats(channels: int = 3) -> DataStats:
    z = np.zeros(channels)
    return DataStats(
        np.zeros((SIDE, SIDE, channels), np.float32),
        z,
        z + 1,
        np.eye(channels),
        z,
        np.eye(channels),
        1,
    )


def test_ten_crops_positions_and_reflections(coded: Path) -> None:
    store = open_store(coded)
    loader = make_loader(
        store, train=False, crop_size=CROP, batch_size=5, ten_crop=True, stats=_zero_stats()
    )
    images, labels = next(iter(loader))
    assert images.shape == (5, 10, 3, CROP, CROP) and labels.tolist() == [0, 1, 2, 0, 1]
    far, mid = SIDE - CROP, (SIDE - CROP) // 2
    for v, (top, left) in enumerate([(0, 0), (0, far), (far, 0), (far, far), (mid, mid)]):
        crop = images[2, v]
        assert torch.equal(crop[0, :, 0], torch.arange(top, top + CROP, dtype=torch.float32))
        assert torch.equal(crop[1, 0], torch.arange(left, left + CROP, dtype=torch.float32))
        assert torch.equal(images[2, v + 5], crop.flip(-1))
        assert float(crop[2, 0, 0]) == 14.0  # sample 2
    # the loader's CropWriter and the preset's ten_crop (predict's path) cut the same views
    torch_crops = ten_crop(torch.from_numpy(store[2][0].transpose(2, 0, 1).copy()), CROP)
    assert torch.equal(torch_crops.float(), images[2])


def test_train_crops_are_windows_and_flips_are_flips(coded: Path) -> None:
    loader = make_loader(
        open_store(coded),
        train=True,
        crop_size=CROP,
        batch_size=13,
        stats=_zero_stats(),
        pca_std=0.0,
        drop_last=False,
    )
    flips, tops = 0, set()
    for epoch in range(4):
        images, _ = next(loader.epoch(epoch))
        for crop in images:
            top, left = int(crop[0, 0, 0]), int(crop[1, 0, :].min())
            assert torch.equal(crop[0, :, 0], torch.arange(top, top + CROP).float())
            forward = torch.arange(left, left + CROP).float()
            flipped = bool(crop[1, 0, 0] > crop[1, 0, -1])
            assert torch.equal(crop[1, 0], forward.flip(0) if flipped else forward)
            flips, tops = flips + flipped, tops | {top}
    assert 10 < flips < 42 and len(tops) > 10  # 52 draws: both reflections, many positions


def _expected_train_sample(store, stats, seed, epoch, index, normalize) -> np.ndarray:
    """The documented recipe recomputed in float64: crop(img - mean), flip, + PCA lighting."""
    rng = np.random.Generator(np.random.PCG64([seed, epoch, index]))
    top, left = int(rng.integers(0, SIDE - CROP + 1)), int(rng.integers(0, SIDE - CROP + 1))
    flip = rng.random() < 0.5
    alpha = rng.normal(0.0, 1.0, size=3) * 0.1
    img = store[index][0].astype(np.float64)
    light = stats.eigvec.astype(np.float64) @ (alpha * np.sqrt(stats.eigval))
    if normalize == "mean_image":
        x = img - stats.mean_image.astype(np.float64) + light
    else:
        x = (img + light - stats.channel_mean) / stats.channel_std
    x = x[top : top + CROP, left : left + CROP]
    return (x[:, ::-1] if flip else x).transpose(2, 0, 1)


@pytest.mark.parametrize("normalize", ["mean_image", "channel"])
def test_train_pixels_match_the_recipe_in_float64(photos: Path, normalize: str) -> None:
    store = open_store(photos / "train")
    loader = make_loader(
        store, train=True, crop_size=CROP, batch_size=8, seed=5, normalize=normalize
    )
    images, labels = loader.batch(2, 1)
    for k, index in enumerate(loader.indices(2)[8:16]):
        expected = _expected_train_sample(store, store.stats, 5, 2, int(index), normalize)
        np.testing.assert_allclose(images[k].numpy(), expected, atol=2e-3)
        assert labels[k] == store.labels[index]


def test_val_uses_the_train_statistics(photos: Path) -> None:
    train, val = open_store(photos / "train"), open_store(photos / "val")
    with pytest.raises(ValueError, match="pass stats="):
        make_loader(val, train=False, crop_size=CROP, batch_size=4)
    loader = make_loader(val, train=False, crop_size=CROP, batch_size=4, stats=train.stats)
    images, _ = next(iter(loader))
    m = (SIDE - CROP) // 2
    expected = val[0][0].astype(np.float64) - train.stats.mean_image
    np.testing.assert_allclose(
        images[0].numpy(), expected[m : m + CROP, m : m + CROP].transpose(2, 0, 1), atol=1e-4
    )


def test_keep_aspect_store_crops_map_onto_the_mean_image(tmp_path: Path) -> None:
    rng = np.random.Generator(np.random.PCG64(2))
    images = rng.integers(0, 256, (6, 64, 96, 3), dtype=np.uint8)
    split = Split("train", [f"i{k}" for k in range(6)], np.zeros(6, np.int64), ArrayReader(images))
    prepare(
        Source("wide", ["x"], {"train": split}), tmp_path, size=48, keep_aspect=True, quiet=True
    )
    store = open_store(tmp_path / "train")
    assert store[0][0].shape == (48, 72, 3) and store.stats.mean_image.shape == (48, 48, 3)
    assert store.uniform_size() is None  # not square: no whole-batch gather
    with pytest.raises(ValueError, match="one square size"):
        store.images_chw(np.arange(2))
    centres = np.stack([store[k][0][:, 12:60] for k in range(6)]).astype(np.float64)
    np.testing.assert_allclose(store.stats.mean_image, centres.mean(axis=0), atol=1e-4)
    loader = make_loader(store, train=False, crop_size=CROP, batch_size=6)
    images, _ = next(iter(loader))
    # centre crop of the 48x72 image at (4, 16); the mean image's own centre crop at (4, 4)
    expected = store[5][0][4:44, 16:56] - store.stats.mean_image[4:44, 4:44].astype(np.float64)
    np.testing.assert_allclose(images[5].numpy(), expected.transpose(2, 0, 1), atol=1e-4)
    for batch, _ in make_loader(store, train=True, crop_size=CROP, batch_size=6).epoch(1):
        assert batch.shape == (6, 3, CROP, CROP) and torch.isfinite(batch).all()


def test_same_pixels_whatever_the_worker_count_and_resume(photos: Path) -> None:
    store = open_store(photos / "train")
    kw = {"train": True, "crop_size": CROP, "batch_size": 6, "seed": 1}
    serial = list(make_loader(store, workers=0, **kw).epoch(3))
    parallel = list(make_loader(store, workers=2, **kw).epoch(3))
    resumed = list(make_loader(store, workers=0, **kw).epoch(3, start_batch=4))
    assert len(serial) == len(parallel) == 6 and len(resumed) == 2
    for (a, la), (b, lb) in zip(serial, parallel, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    for (a, _), (b, _) in zip(serial[4:], resumed, strict=True):
        assert torch.equal(a, b)
    other_epoch = next(make_loader(store, workers=0, **kw).epoch(4))[0]
    assert not torch.equal(serial[0][0], other_epoch)


class _Subset(Store):
    """A part of a store that offers no whole-batch gather: the loader's per-sample path."""

    def __init__(self, store, indices: np.ndarray) -> None:
        self.store, self.indices = store, indices
        self.labels, self.shapes = store.labels[indices], store.shapes[indices]
        self.channels, self.path, self.stats = store.channels, store.path, store.stats

    def __len__(self) -> int:
        return len(self.indices)

    def image_chw(self, index: int) -> np.ndarray:
        return self.store.image_chw(int(self.indices[index]))

    def uniform_size(self) -> None:
        return None

    def images_chw(self, indices: np.ndarray) -> np.ndarray:
        raise AssertionError("the loader gathered from a store without uniform_size")

    def release(self) -> None:
        self.store.release()


def test_loader_reads_any_store_like_object(photos: Path) -> None:
    store = open_store(photos / "train")
    picked = np.array([3, 8, 21, 30])
    kw = {"train": False, "crop_size": CROP, "batch_size": 4, "ten_crop": True}
    sub, _ = next(iter(make_loader(_Subset(store, picked), **kw)))
    full, _ = make_loader(store, **kw).batch(0, 0)  # batch 0 of the full store: samples 0-3
    direct = torch.stack(
        [make_loader(store, **{**kw, "batch_size": 1}).batch(0, int(i))[0][0] for i in picked]
    )
    assert torch.equal(sub, direct) and not torch.equal(sub, full)


@pytest.mark.parametrize("normalize", ["mean_image", "channel"])
@pytest.mark.parametrize("train", [True, False])
def test_whole_image_batches_are_one_gather_with_the_same_pixels(
    photos: Path, normalize: str, train: bool
) -> None:
    """Crop = stored size, no reflection, no lighting (the embedded default): the loader gathers
    the batch at once; its pixels equal the per-sample path's and the recipe in float64."""
    store = open_store(photos / "train")
    assert store.uniform_size() == SIDE
    kw = {"train": train, "crop_size": SIDE, "batch_size": 8, "seed": 3, "normalize": normalize}
    kw.update(flip=False, pca_std=0.0)
    fast = make_loader(store, **kw)
    assert fast._whole_batches  # the gather path is the one under test
    per_sample = make_loader(_Subset(store, np.arange(len(store))), **kw)
    assert not per_sample._whole_batches
    images, labels = fast.batch(1, 2)
    expected_images, expected_labels = per_sample.batch(1, 2)
    assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)
    stats = store.stats
    for k, index in enumerate(fast.indices(1)[16:24]):
        img = store[int(index)][0].astype(np.float64)
        if normalize == "mean_image":
            x = img - stats.mean_image.astype(np.float64)
        else:
            x = (img - stats.channel_mean) / stats.channel_std
        np.testing.assert_allclose(images[k].numpy(), x.transpose(2, 0, 1), atol=2e-3)
    # a per-sample draw in training (a reflection, lighting) or any smaller crop keeps the
    # per-sample path; evaluation draws nothing
    for change in ({"flip": True}, {"pca_std": 0.1}):
        assert make_loader(store, **{**kw, **change})._whole_batches is (not train)
    assert not make_loader(store, **{**kw, "crop_size": CROP})._whole_batches


def _raw_chw(store_dir: Path, indices: np.ndarray) -> np.ndarray:
    """Images `indices` read straight from data.bin by the documented layout (planar uint8,
    image i at offsets[i]), not through the store's own reads."""
    data = np.fromfile(store_dir / "data.bin", np.uint8)
    offsets = np.load(store_dir / "offsets.npy")
    shapes = np.load(store_dir / "shapes.npy")
    return np.stack(
        [data[offsets[i] : offsets[i + 1]].reshape(shapes[i][[2, 0, 1]]) for i in indices]
    )


@pytest.mark.parametrize("normalize", ["mean_image", "channel"])
@pytest.mark.parametrize("part", ["train", "val"])
def test_a_held_out_split_keeps_the_whole_batch_gather(
    photos: Path, normalize: str, part: str
) -> None:
    """--val-split's parts of train (alexnet.train.data.hold_out) gather whole batches like the
    full store: the same pixels as the per-sample path and as data.bin's bytes in float64."""
    store = open_store(photos / "train")
    parts = dict(zip(("train", "val"), hold_out(store, 0.25, seed=5), strict=True))
    subset = parts[part]
    kw = {"train": part == "train", "crop_size": SIDE, "batch_size": 4, "seed": 2}
    kw.update(normalize=normalize, flip=False, pca_std=0.0, stats=store.stats)
    fast = make_loader(subset, **kw)
    assert fast._whole_batches  # the gather path is the one under test
    per_sample = make_loader(_Subset(store, subset.indices), **kw)
    assert not per_sample._whole_batches
    for number in range(len(fast)):
        images, labels = fast.batch(1, number)
        expected_images, expected_labels = per_sample.batch(1, number)
        assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)
    order = subset.indices[fast.indices(1)]  # store indices, in the epoch's order
    images = torch.cat([batch for batch, _ in fast.epoch(1)]).numpy()
    labels = torch.cat([batch for _, batch in fast.epoch(1)]).numpy()
    raw = _raw_chw(photos / "train", order).astype(np.float64)
    stats = store.stats
    if normalize == "mean_image":
        x = raw - stats.mean_image.astype(np.float64).transpose(2, 0, 1)
    else:
        x = (raw - stats.channel_mean[:, None, None]) / stats.channel_std[:, None, None]
    assert len(images) == len(order) - (len(order) % 4 if part == "train" else 0)
    np.testing.assert_allclose(images, x[: len(images)], atol=2e-3)
    assert np.array_equal(labels, np.load(photos / "train" / "labels.npy")[order][: len(images)])


@pytest.mark.parametrize("train", [True, False])
def test_distributed_shards_disjoint_and_complete(photos: Path, train: bool) -> None:
    store, world = open_store(photos / "train"), 3
    loaders = [
        make_loader(
            store,
            train=train,
            crop_size=CROP,
            batch_size=4,
            rank=r,
            world_size=world,
            drop_last=False,
        )
        for r in range(world)
    ]
    shards = [np.concatenate([l.indices(7)]) for l in loaders]
    seen = np.concatenate(shards)
    assert len(set(seen.tolist())) == len(seen)  # disjoint
    if train:  # equal shards; the 40 mod 3 = 1 left-over sample sits this epoch out
        assert {len(s) for s in shards} == {13} and len(seen) == 39
    else:  # every sample exactly once, no padding
        assert sorted(seen.tolist()) == list(range(40))
        labels = torch.cat([y for l in loaders for _, y in l.epoch(0)])
        assert sorted(labels.tolist()) == sorted(store.labels.tolist())
    assert [len(l) for l in loaders] == [-(-len(s) // 4) for s in shards]


def test_lighting_offsets_carry_the_data_covariance() -> None:
    rng = np.random.Generator(np.random.PCG64(0))
    a = rng.normal(size=(3, 3))
    cov = a @ a.T * 100
    eigval, eigvec = np.linalg.eigh(cov)
    alpha = rng.normal(0, 0.1, size=(5, 3))
    offsets = lighting_offsets(alpha, eigval, eigvec)
    # independent truth: the offset's covariance over alpha ~ N(0, 1) is the data covariance
    np.testing.assert_allclose(eigvec @ np.diag(eigval) @ eigvec.T, cov, atol=1e-9)
    # each offset is sum_i p_i * alpha_i * sqrt(lambda_i), written out in float64
    expected = np.stack(
        [sum(eigvec[:, i] * a[i] * eigval[i] ** 0.5 for i in range(3)) for a in alpha]
    )
    np.testing.assert_allclose(offsets, expected, rtol=1e-5, atol=1e-4)
    many = lighting_offsets(rng.normal(size=(200_000, 3)), eigval, eigvec).astype(np.float64)
    np.testing.assert_allclose(np.cov(many, rowvar=False), cov, rtol=0.03, atol=2.0)


RSS_SCRIPT = """
import json, sys, numpy as np
from alexnet.data.store import FORMAT, VERSION, Store, open_store
from alexnet.data.loader import make_loader
from alexnet.data.stats import DataStats
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) // 1024
s = open_store(sys.argv[1])
z = np.zeros(3)
stats = DataStats(np.zeros((256, 256, 3), np.float32), z, z + 1, np.eye(3), z, np.eye(3), 1)
loader = make_loader(s, train=True, crop_size=224, batch_size=32, stats=stats)
next(loader.epoch(0))
base = status("VmRSS")
for i, _ in enumerate(loader.epoch(1)):
    if i == 30:
        break
print(json.dumps({"base": base, "peak": status("VmHWM"), "touched_mb": 31 * 32 * 192 // 1024}))
"""


@pytest.mark.slow
def test_loader_rss_stays_bounded_over_a_10gb_store(tmp_path: Path) -> None:
    """A sparse 10 GB raw store (no disk used): 30 shuffled batches touch ~190 MB of it, and the
    process's peak RSS grows by less than that (the map is released after every batch; without
    the release the same run grows by the ~190 MB it touched plus the ~40 MB of batches)."""
    n, d = 54_614, tmp_path / "big"
    d.mkdir()
    with open(d / "data.bin", "wb") as f:
        f.truncate(n * 256 * 256 * 3)
    np.save(d / "offsets.npy", np.arange(n + 1, dtype=np.int64) * 256 * 256 * 3)
    np.save(d / "shapes.npy", np.tile(np.array([256, 256, 3], np.int32), (n, 1)))
    np.save(d / "labels.npy", np.zeros(n, np.int64))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "count": n,
        "classes": ["x"],
        "image_size": 256,
        "channels": 3,
        "encoding": "raw",
    }
    (d / "meta.json").write_text(json.dumps(meta))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RSS_SCRIPT), str(d)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result = json.loads(run.stdout)
    assert (d / "data.bin").stat().st_size >= 10 * 10**9
    assert result["peak"] - result["base"] < 100, result
