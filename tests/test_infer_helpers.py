"""Helpers shared by the inference, export, figure and report tests: a tiny run directory built
by hand from the checkpoint contract in docs/architecture.md (so these tests do not train)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexnet.models import create_model
from alexnet.train.checkpoint import save_atomic

CLASSES = [f"class{i}" for i in range(10)]
INPUT = 67  # the smallest crop for which the paper net's pool5 is 1x1: a small, fast net
IMAGE = 80


def tiny_model(name: str = "alexnet", seed: int = 0, **options) -> torch.nn.Module:
    """A small random net; fc8 scaled up so that the softmax is far from uniform."""
    torch.manual_seed(seed)
    options.setdefault("num_classes", 10)
    if name == "alexnet":
        options.setdefault("input_size", INPUT)
    model = create_model(name, **options).eval()
    with torch.no_grad():
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.mul_(300.0)
    return model


def checkpoint(model: torch.nn.Module, *, mean_image: bool = True, classes=CLASSES) -> dict:
    """A checkpoint dict with the keys inference reads (docs/architecture.md)."""
    g = np.random.default_rng(1)
    pre = {
        "image_size": IMAGE,
        "crop_size": model.input_size,
        "in_chans": model.in_chans,
        "classes": list(classes),
    }
    if mean_image:
        mean = g.uniform(60, 180, (IMAGE, IMAGE, model.in_chans)).astype(np.float32)
        pre.update(normalize="mean_image", mean_image=torch.from_numpy(mean))
    else:
        pre.update(normalize="channel", mean=[120.0] * model.in_chans, std=[60.0] * model.in_chans)
    return {
        "model": model.state_dict(),
        "model_name": model.model_name,
        "model_options": model.model_options,
        "preprocess": pre,
        "epoch": 3,
        "step": 30,
        "best_metric": 0.5,
        "config": {"lr": 0.01},
    }


def make_run(run_dir: Path, model: torch.nn.Module | None = None, **kw) -> Path:
    """RUN_DIR with checkpoints/last.pt, config.yaml and a metrics.jsonl of three epochs."""
    model = model if model is not None else tiny_model()
    save_atomic(checkpoint(model, **kw), run_dir / "checkpoints" / "last.pt")
    (run_dir / "config.yaml").write_text("model: alexnet\nlr: 0.01\nseed: 0\n")
    lines = []
    for epoch, lr in enumerate([0.01, 0.01, 0.001]):
        lines.append(
            {
                "kind": "step",
                "epoch": epoch,
                "step": epoch * 10 + 5,
                "loss": 2.0,
                "lr": lr,
                "img_per_s": 100.0,
            }
        )
        lines.append(
            {
                "kind": "epoch",
                "epoch": epoch,
                "step": epoch * 10 + 10,
                "train_loss": 2.0 - epoch / 2,
                "train_top1_err": 0.9 - 0.2 * epoch,
                "train_top5_err": 0.5 - 0.1 * epoch,
                "val_loss": 2.1 - epoch / 2,
                "val_top1_err": 0.92 - 0.2 * epoch,
                "val_top5_err": 0.55 - 0.1 * epoch,
                "lr": lr,
                "img_per_s": 100.0,
                "seconds": 12.5,
            }
        )
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run_dir


def photos(directory: Path) -> dict[str, Path]:
    """Real photographs from scikit-image in the forms users have: JPEG, PNG, grey, CMYK,
    EXIF-rotated (with the physically rotated twin, lossless), plus a corrupt file."""
    from skimage import data

    directory.mkdir(parents=True, exist_ok=True)
    chelsea, coffee = Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())
    out = {
        "jpeg": directory / "chelsea.jpg",
        "png": directory / "coffee.png",
        "grey": directory / "camera.jpg",
        "cmyk": directory / "coffee_cmyk.jpg",
        "exif": directory / "chelsea_exif.jpg",
        "rotated": directory / "chelsea_rot.png",
        "corrupt": directory / "corrupt.jpg",
    }
    chelsea.save(out["jpeg"], quality=90)
    coffee.save(out["png"])
    Image.fromarray(data.camera()).save(out["grey"], quality=90)
    coffee.convert("CMYK").save(out["cmyk"], quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: display rotated 90 degrees clockwise
    chelsea.save(out["exif"], quality=90, exif=exif)
    with Image.open(out["exif"]) as raw:  # the stored pixels, turned by hand, saved losslessly
        raw.transpose(Image.Transpose.ROTATE_270).save(out["rotated"])
    out["corrupt"].write_bytes(out["jpeg"].read_bytes()[:300])
    return out


def test_hand_made_checkpoint_follows_the_trainer_contract(tmp_path: Path) -> None:
    from alexnet.train.checkpoint import REQUIRED_KEYS, load_checkpoint

    run = make_run(tmp_path / "run")
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert set(REQUIRED_KEYS) <= set(ckpt)
    assert ckpt["preprocess"]["crop_size"] == INPUT


def prepared_data(out: Path) -> Path:
    """A tiny prepared data set (synthetic class-coloured noise, 40 train / 8 val at IMAGE px)."""
    from alexnet.data.prepare import prepare

    if not (out / "train" / "meta.json").is_file():
        prepare(f"synthetic:40:{IMAGE}:10", out, size=IMAGE, workers=1, quiet=True)
    return out
