"""Data-loading benchmark: the pytorch/examples recipe against the prepared store + loader.

    python -m alexnet.bench.loader [--images 256] [--steps 6] [--model alexnet_owt]

On the same realistic JPEGs (~500x375 crops of real photos, `alexnet.data.photos`) it measures,
side by side in one run:
(a) the pytorch/examples ImageNet recipe without torchvision: PIL decode + RGB, RandomResizedCrop
    224 (scale 0.08-1, ratio 3/4-4/3), flip, to tensor, normalize; per core (one process, one
    thread), batches collated as a DataLoader would;
(b) the prepared store (256x256, raw and JPEG encodings) + `make_loader` with all the paper's
    augmentations (random crop, reflection, PCA lighting, mean-image subtraction), per core;
and the Trainer's own training step (`alexnet.bench.workloads.trainer`: fused SGD, bf16 autocast
on CUDA; fp32 on CPU, where bf16 is emulated without AMX) fed by synthetic in-memory tensors, by
(b) and by (a), each with `--workers` loader processes.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexnet.bench import workloads
from alexnet.data.loader import make_loader
from alexnet.data.photos import write_photo_folder
from alexnet.data.prepare import prepare
from alexnet.data.store import open_store
from alexnet.models import create_model

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def random_resized_crop_box(
    rng: np.random.Generator,
    width: int,
    height: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """(left, top, w, h) as torchvision's RandomResizedCrop.get_params draws it."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height  # fallback: the central crop at the nearest allowed ratio
    w, h = width, height
    if in_ratio < ratio[0]:
        h = round(w / ratio[0])
    elif in_ratio > ratio[1]:
        w = round(h * ratio[1])
    return (width - w) // 2, (height - h) // 2, w, h


def examples_recipe(path: str | Path, rng: np.random.Generator, crop: int = 224) -> torch.Tensor:
    """One training sample the pytorch/examples way: (3, crop, crop) float32, normalized."""
    with open(path, "rb") as f:
        img = Image.open(f).convert("RGB")
    left, top, w, h = random_resized_crop_box(rng, *img.size)
    img = img.crop((left, top, left + w, top + h)).resize((crop, crop), Image.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    x = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).float().div(255)
    mean, std = (
        torch.tensor(IMAGENET_MEAN)[:, None, None],
        torch.tensor(IMAGENET_STD)[:, None, None],
    )
    return (x - mean) / std


class ExamplesDataset(torch.utils.data.Dataset):
    """The recipe over a list of files, for a torch DataLoader (per-index generator)."""

    def __init__(self, files: list[Path], crop: int = 224, seed: int = 0) -> None:
        self.files, self.crop, self.seed = files, crop, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rng = np.random.Generator(np.random.PCG64([self.seed, index]))
        return examples_recipe(self.files[index], rng, self.crop), index % 8


Runner = tuple  # (fn() -> None processing `count` images, count)


def measure_side_by_side(runners: dict[str, Runner], seconds: float = 5.0) -> dict[str, dict]:
    """Per-core speed of each runner, on one thread, interleaved batch by batch for about
    `seconds` each, so that load changes on a shared machine hit them all alike."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    spent = dict.fromkeys(runners, 0.0)
    done = dict.fromkeys(runners, 0)
    try:
        for fn, _ in runners.values():
            fn()  # warm up: page cache, imports, allocations
        while min(spent.values()) < seconds:
            for name, (fn, count) in runners.items():
                start = time.perf_counter()
                fn()
                spent[name] += time.perf_counter() - start
                done[name] += count
    finally:
        torch.set_num_threads(threads)
    return {
        name: {
            "img_per_s": done[name] / spent[name],
            "images": done[name],
            "ms_per_img": 1e3 * spent[name] / done[name],
        }
        for name in runners
    }


def examples_runner(files: list[Path], *, crop: int = 224, batch_size: int = 64) -> Runner:
    """(a): decode, RandomResizedCrop, flip, to tensor, normalize, collate, batch by batch."""
    data, batch = ExamplesDataset(files, crop), min(batch_size, len(files))
    state = {"next": 0}

    def run() -> None:
        start = state["next"]
        torch.stack([data[(start + i) % len(files)][0] for i in range(batch)])
        state["next"] = start + batch

    return run, batch


def store_runner(
    store_dir: str | Path, *, crop: int = 224, batch_size: int = 64, **loader_options
) -> Runner:
    """(b): `make_loader` batches with the paper's training augmentation."""
    loader = make_loader(
        open_store(store_dir), train=True, crop_size=crop, batch_size=batch_size, **loader_options
    )
    state = {"epoch": 0, "batch": 0}

    def run() -> None:
        loader.batch(state["epoch"], state["batch"])
        state["batch"] += 1
        if state["batch"] == len(loader):
            state["epoch"], state["batch"] = state["epoch"] + 1, 0

    return run, batch_size


def measure_examples_recipe(
    files: list[Path], *, crop: int = 224, batch_size: int = 64, seconds: float = 5.0
) -> dict:
    """(a) alone, per core: {img_per_s, ms_per_img, images}."""
    runner = examples_runner(files, crop=crop, batch_size=batch_size)
    return measure_side_by_side({"a": runner}, seconds)["a"]


def measure_store_loader(
    store_dir: str | Path,
    *,
    crop: int = 224,
    batch_size: int = 64,
    seconds: float = 5.0,
    **loader_options,
) -> dict:
    """(b) alone, per core: {img_per_s, ms_per_img, images}."""
    runner = store_runner(store_dir, crop=crop, batch_size=batch_size, **loader_options)
    return measure_side_by_side({"b": runner}, seconds)["b"]


def _cycle(make_epoch) -> Iterator:
    epoch = 0
    while True:
        yield from make_epoch(epoch)
        epoch += 1


def measure_training(
    feed: Iterator | None,
    *,
    model_name: str = "alexnet_owt",
    batch_size: int = 64,
    steps: int = 6,
    device: str = "cpu",
) -> dict:
    """Training img/s of the Trainer's step, one batch of `feed` each (None: one in-memory
    batch)."""
    dev = torch.device(device)
    precision = "bf16" if dev.type == "cuda" else "fp32"
    model = workloads.build(model_name, dev, precision)
    fixed = workloads.synthetic_batch(model, batch_size)
    trainer = workloads.trainer(model, dev, precision, "auto", fixed)
    step = workloads.trainer_step(trainer, feed if feed is not None else workloads.repeat(fixed))
    step()  # warm up (and let loader workers start)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    elapsed = time.perf_counter() - start
    return {"img_per_s": steps * batch_size / elapsed, "steps": steps, "device": device}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build_benchmark_data(root: str | Path, images: int, *, workers: int | None = None) -> dict:
    """Photo JPEGs in ROOT/photos (8 classes) and their prepared stores ROOT/raw, ROOT/jpeg."""
    root = Path(root)
    files = write_photo_folder(root / "photos", classes=8, per_class=max(1, images // 8))
    stores = {}
    for encoding in ("raw", "jpeg"):
        prepare(
            root / "photos",
            root / encoding,
            size=256,
            encoding=encoding,
            workers=workers,
            quiet=True,
        )
        stores[encoding] = root / encoding / "train"
    sizes = {e: (d / "data.bin").stat().st_size / len(files) for e, d in stores.items()}
    jpeg_bytes = sum(f.stat().st_size for f in files) / len(files)
    return {"files": files, "stores": stores, "bytes_per_image": sizes, "source_bytes": jpeg_bytes}


def examples_feed(files: list[Path], batch_size: int, workers: int, crop: int) -> Iterator:
    """Endless batches from the pytorch/examples recipe (full JPEG decode per image)."""
    data = ExamplesDataset(files, crop)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    return _cycle(lambda _: iter(loader))


def store_feed(store_dir: Path, batch_size: int, workers: int, crop: int) -> Iterator:
    """Endless batches from a prepared store with every augmentation of the paper."""
    loader = make_loader(
        open_store(store_dir), train=True, crop_size=crop, batch_size=batch_size, workers=workers
    )
    return _cycle(loader.epoch)


def run_benchmark(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """All measurements of the module docstring; rows (what, value, note)."""
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        data = build_benchmark_data(tmp, args.images)
        files, stores, per_image = data["files"], data["stores"], data["bytes_per_image"]
        runners = {
            "a": examples_runner(files, crop=args.crop),
            "b": store_runner(stores["raw"], crop=args.crop),
            "bj": store_runner(stores["jpeg"], crop=args.crop),
        }
        speeds = measure_side_by_side(runners, args.seconds)
        a, b, bj = speeds["a"], speeds["b"], speeds["bj"]
        rows = [
            (
                "(a) pytorch/examples recipe, per core",
                f"{a['img_per_s']:.0f} img/s",
                f"{a['ms_per_img']:.2f} ms/img, {data['source_bytes'] / 1e3:.0f} kB/JPEG",
            ),
            (
                "(b) store (raw) + paper augmentation, per core",
                f"{b['img_per_s']:.0f} img/s",
                f"{b['ms_per_img']:.2f} ms/img, {per_image['raw'] / 1e3:.0f} kB/img",
            ),
            (
                "(b') store (JPEG q95) + paper augmentation",
                f"{bj['img_per_s']:.0f} img/s",
                f"{bj['ms_per_img']:.2f} ms/img, {per_image['jpeg'] / 1e3:.0f} kB/img",
            ),
            (
                "ratio (b) / (a), per core",
                f"{b['img_per_s'] / a['img_per_s']:.1f}x",
                "target >= 5x",
            ),
            ("ratio (b') / (a), per core", f"{bj['img_per_s'] / a['img_per_s']:.1f}x", ""),
        ]
        if args.steps > 0:
            rows += _training_rows(args, files, stores["raw"])
    return rows


def _training_rows(args: argparse.Namespace, files: list[Path], store: Path) -> list[tuple]:
    """Training img/s per feed, measured in `args.rounds` rounds of (synthetic, (b), (a)) blocks
    so that load changes on a shared machine hit all three alike; each block starts its loader
    afresh (no batches prefetched during another block). Reports medians over rounds."""
    kw = {
        "model_name": args.model,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "device": args.device,
    }
    crop, bs, w = create_model(args.model).input_size, args.batch_size, args.workers
    feeds = {
        "synthetic": lambda: None,
        "store": lambda: store_feed(store, bs, w, crop),
        "examples": lambda: examples_feed(files, bs, w, crop),
    }
    runs: dict[str, list[float]] = {name: [] for name in feeds}
    for _ in range(args.rounds):
        for name, make_feed in feeds.items():
            runs[name].append(measure_training(make_feed(), **kw)["img_per_s"])
    syn = np.array(runs["synthetic"])
    med = {name: float(np.median(v)) for name, v in runs.items()}
    ratio = {name: 100 * float(np.median(np.array(v) / syn)) for name, v in runs.items()}
    note = (
        f"{args.model}, batch {bs}, {args.device}, {w} loader workers, median of "
        f"{args.rounds} rounds x {args.steps} steps"
    )
    return [
        ("train on synthetic in-memory tensors", f"{med['synthetic']:.1f} img/s", note),
        (
            "train fed by (b) store + loader",
            f"{med['store']:.1f} img/s",
            f"{ratio['store']:.0f}% of synthetic (target >= 90%)",
        ),
        (
            "train fed by (a) pytorch/examples recipe",
            f"{med['examples']:.1f} img/s",
            f"{ratio['examples']:.0f}% of synthetic",
        ),
    ]


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    for what, value, note in rows:
        print(f"{what:<{width}}  {value:>12}  {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alexnet.bench.loader",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", type=int, default=256, help="photo JPEGs to build")
    parser.add_argument("--crop", type=int, default=224, help="crop for the per-core rows")
    parser.add_argument("--seconds", type=float, default=5.0, help="per per-core measurement")
    parser.add_argument("--model", default="alexnet_owt", help="model for the training rows")
    parser.add_argument("--batch-size", type=int, default=None, help="training batch")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (0: skip training)")
    parser.add_argument("--workers", type=int, default=None, help="loader processes")
    parser.add_argument("--rounds", type=int, default=3, help="training measurement rounds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dir", default=None, help="scratch directory (default: system temp)")
    args = parser.parse_args(argv)
    on_cpu = args.device == "cpu"  # CPU steps take seconds: small defaults there
    args.batch_size = args.batch_size or (16 if on_cpu else 256)
    args.steps = args.steps if args.steps is not None else (3 if on_cpu else 20)
    args.workers = args.workers if args.workers is not None else min(2, os.cpu_count() or 1)
    print_table(run_benchmark(args))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
