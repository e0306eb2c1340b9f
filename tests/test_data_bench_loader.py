"""The loader benchmark's pieces: the reimplemented RandomResizedCrop and the measurements."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("skimage")
from alexnet.bench.loader import (
    IMAGENET_MEAN,
    build_benchmark_data,
    examples_recipe,
    measure_examples_recipe,
    measure_store_loader,
    random_resized_crop_box,
)


def test_random_resized_crop_box_obeys_scale_and_ratio() -> None:
    rng = np.random.Generator(np.random.PCG64(0))
    areas = []
    for _ in range(500):
        left, top, w, h = random_resized_crop_box(rng, 500, 375)
        assert left >= 0 and left + w <= 500 and top >= 0 and top + h <= 375
        areas.append(w * h / (500 * 375))
        # rounding w and h moves the ratio and area a little beyond the drawn values
        assert 3 / 4 * 0.97 <= w / h <= 4 / 3 * 1.03
    assert min(areas) >= 0.08 * 0.9 and max(areas) <= 1.0
    assert min(areas) < 0.12 and max(areas) > 0.9  # the whole scale range is drawn
    # a 10:1 strip never fits the allowed ratios at scale 1: the central fallback crop
    assert random_resized_crop_box(rng, 1000, 100, scale=(1.0, 1.0)) == (433, 0, 133, 100)
    assert math.isclose(133 / 100, 4 / 3, rel_tol=0.01)


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory) -> dict:
    return build_benchmark_data(tmp_path_factory.mktemp("bench"), 16, workers=1)


def test_examples_recipe_output(bench_data: dict) -> None:
    x = examples_recipe(bench_data["files"][0], np.random.Generator(np.random.PCG64(1)))
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    # un-normalized values are in [0, 1]
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    raw = x * torch.tensor((0.229, 0.224, 0.225))[:, None, None] + mean
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_measurements_and_encodings(bench_data: dict) -> None:
    threads = torch.get_num_threads()
    per_image = bench_data["bytes_per_image"]
    assert per_image["raw"] == 256 * 256 * 3 and per_image["jpeg"] < per_image["raw"] / 3
    a = measure_examples_recipe(bench_data["files"], batch_size=4, seconds=0.05)
    b = measure_store_loader(bench_data["stores"]["raw"], batch_size=4, seconds=0.05)
    for result in (a, b):
        assert result["images"] >= 4 and result["img_per_s"] > 0
        assert result["ms_per_img"] == pytest.approx(1e3 / result["img_per_s"])
    assert torch.get_num_threads() == threads  # restored after the per-core runs
