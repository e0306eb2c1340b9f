"""Which recipe `alexnet train` uses, and at what size the data is stored: decided from the data.

- `--config FILE|NAME`: that recipe, always.
- no `--data`: the embedded default (Fashion-MNIST, configs/fashion-mnist.yaml).
- `--data` whose images are small (shorter side <= SMALL_SIDE, e.g. Fashion-MNIST's 28 px or
  CIFAR-10's 32): the small-image recipe, configs/fashion-mnist.yaml's values (the paper's net at
  67 px, cosine lr, 4 epochs) with the images stored at their own size and upscaled to the
  model's input per batch (bilinear; `alexnet.data.transforms.upscale`). `--data fashion-mnist`
  is the embedded default itself (stored at 67, as tuned).
- larger images (ImageNet-like folders): the paper's recipe (TrainConfig's defaults, section 5).

The stored size follows the source: never larger than the source's own images unless a recipe
file or `--image-size` asks; for a model whose input is smaller than the paper's 227, the paper's
256/227 ratio of the model's input (so a 32-px model on large photos stores 36 px, not 256). A
prepared directory is used at the size it was stored. Where the data has no val split, 10% of
train is held out (seeded) unless the recipe or `--val-split` says otherwise. The choice and its
reason are printed first and saved as config.yaml's `recipe` field.

Everything here is cheap (a model built on the meta device, one to five images decoded), so a
misspelt model or option fails before any data is prepared.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch

from alexnet.data.sources import resolve
from alexnet.data.store import read_meta
from alexnet.models import create_model, list_models, model_defaults
from alexnet.train.config import (
    EMBEDDED_DEFAULT,
    TrainConfig,
    config_to_dict,
    load_recipe,
    make_config,
)

SMALL_SIDE = 64  # a shorter side at most this: the small-image recipe
DEFAULT_VAL_SPLIT = 0.1  # held out of train where the data has no val split (recipes may say)
PAPER_RATIO = 256 / 227  # stored side / crop in the paper (section 2, Caffe's 227 crops)


def _is_prepared(path: Path) -> bool:
    splits = ("train", "val", "test")
    return path.is_dir() and any((path / s / "meta.json").is_file() for s in splits)


def data_side(spec: str) -> tuple[int, bool, str]:
    """(shorter side of the data's images, whether it is a prepared store, a short description).

    A prepared directory: its stored size. A source: the median shorter side of up to five of
    its training images (raises the source's own error when it cannot be resolved)."""
    path = Path(spec)
    if _is_prepared(path):
        for split in ("train", "val", "test"):
            meta = path / split / "meta.json"
            if meta.is_file():
                side = int(read_meta(meta)["image_size"])
                return side, True, f"{spec} is prepared at {side} px"
    source = resolve(spec)
    split = source.splits.get("train") or next(iter(source.splits.values()))
    n = len(split.ids)
    picks = sorted({round(i * (n - 1) / 4) for i in range(5)}) if n else []
    sides = []
    for i in picks:
        try:
            img = split.read(i)
        except Exception:  # an undecodable file: prepare lists it; it says nothing of sizes
            continue
        sides.append(min(img.shape[:2]))
    if not sides:
        raise ValueError(f"--data {spec}: no readable image among its first training files")
    side = sorted(sides)[len(sides) // 2]
    return side, False, f"its images are {side} px"


def check_model(model: str, options: dict[str, Any]) -> None:
    """Build `model` with `options` on the meta device: unknown names or options raise now."""
    with torch.device("meta"):
        create_model(model, **options)


def model_input(model: str, options: dict[str, Any]) -> int:
    return int(options.get("input_size", model_defaults(model).get("input_size") or 227))


def _small_recipe(side: int) -> dict[str, Any]:
    base = {k: v for k, v in EMBEDDED_DEFAULT.items() if k not in ("data", "val_split")}
    base["image_size"] = side
    return base


def _recipe_for_data(
    data: str, model: str | None, overrides: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(recipe layer, {name, reason}) for `--data` without `--config`, its stored size decided."""
    side, prepared, what = data_side(data)
    if side <= SMALL_SIDE:
        base = _small_recipe(side)
        reason = f"{what} (<= {SMALL_SIDE}): configs/fashion-mnist.yaml's recipe for small images"
        info = {"name": "small-images", "reason": reason}
    else:
        base = {}
        reason = f"{what} (> {SMALL_SIDE}): the paper's ImageNet recipe (section 5)"
        info = {"name": "paper", "reason": reason}
    if model is not None and model != base.get("model", model):
        base.pop("model_options", None)  # the recipe's options are the paper net's
        info["reason"] += f"; {model}'s own model options"
    options = {**base.get("model_options", {}), **overrides.get("model_options", {})}
    crop = model_input(model or base.get("model", TrainConfig.model), options)
    asked = overrides.get("image_size")
    if prepared:
        if asked is not None and asked != side:
            raise ValueError(
                f"--data {data} is prepared at {side} px; --image-size {asked} cannot change "
                "that (prepare the source again at that size)"
            )
        stored = side
    elif asked is not None:
        stored = int(asked)
    else:  # never upsample on prepare; the paper's 256/227 margin for random crops
        want = base.get("image_size") or (
            TrainConfig.image_size if crop >= 227 else round(crop * PAPER_RATIO)
        )
        stored = min(int(want), side)
    base["image_size"] = stored
    return base, info


def asked_net(overrides: dict[str, Any]) -> dict[str, Any]:
    """The model and options the user asked for by flag (--model, --model-option), which a
    fine-tuning run keeps over the source's. A recipe's own (picked for the data, or a --config
    file chosen for its training values) ask nothing: they are for the recipe's own net."""
    return {
        "model": overrides.get("model"),
        "model_options": dict(overrides.get("model_options") or {}),
    }


def resolve_recipe(recipe: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """The config `alexnet train` runs (see the module docstring); raises ValueError /
    FileNotFoundError naming the problem before any expensive work."""
    model = overrides.get("model")
    if model is not None and model not in list_models():
        close = difflib.get_close_matches(model, list_models(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown model {model!r}{hint}; registered: {', '.join(list_models())}")
    data = overrides.get("data")
    embedded_model = model in (None, EMBEDDED_DEFAULT["model"])
    if recipe:
        base = load_recipe(recipe)
        info = {"name": recipe, "reason": f"--config {recipe}"}
    elif data is None:
        base = dict(EMBEDDED_DEFAULT)
        info = {"name": "fashion-mnist", "reason": "no --data: the embedded default recipe"}
        if not embedded_model:
            base.pop("model_options")  # the paper net's options
            info["reason"] += f"; {model}'s own model options"
    elif data == EMBEDDED_DEFAULT["data"] and embedded_model:
        base = dict(EMBEDDED_DEFAULT)
        info = {"name": "fashion-mnist", "reason": "the embedded default's own data and recipe"}
    else:
        base, info = _recipe_for_data(data, model, overrides)
    if "val_split" not in base:  # judge the schedule and best.pt on held-out images
        base = {**base, "val_split": DEFAULT_VAL_SPLIT}
    config = make_config(base, overrides)
    if config.normalize not in ("mean_image", "channel"):  # else found only after preparing
        raise ValueError(f"normalize {config.normalize!r} is not one of mean_image, channel")
    model_options = dict(config.model_options)
    model_options.pop("num_classes", None)
    if not config.init_from:  # else the source's net takes the options (fine_tune_config)
        check_model(config.model, model_options)
    crop = model_input(config.model, config.model_options)
    if crop > config.image_size:
        input_note = (
            f"stored at {config.image_size} px, fed whole, upscaled per batch (bilinear) to the "
            f"model's {crop}-px input"
        )
    elif crop == config.image_size:
        input_note = f"stored at {config.image_size} px, fed whole to the model"
    else:
        input_note = f"stored at {config.image_size} px, {crop}-px crops for the model"
    if config.init_from:  # alexnet.train.run.fine_tune_config: the source decides these
        input_note = (
            f"the net, its input and the stored size (at most the images' own) follow "
            f"--init-from {config.init_from}"
        )
        info["init_overrides"] = asked_net(overrides)
    info["input"] = input_note
    return make_config(config_to_dict(config), {"recipe": info, "quiet": config.quiet})


def describe(config: TrainConfig) -> str:
    """The first line `alexnet train` prints: the recipe, why, and how the images reach the
    model."""
    r = config.recipe or {}
    text = f"recipe {r.get('name', '?')}: {r.get('reason', '')}"
    return text + (f"; {r['input']}" if r.get("input") else "")
