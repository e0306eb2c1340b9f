"""Typed training configuration: dataclass defaults < recipe file (`--config`) < flags.

The dataclass defaults are the paper's recipe (section 5; the shipped `configs/paper.yaml` states
them again). With no `--config` and no `--data`, `alexnet train` uses the embedded default
recipe, `EMBEDDED_DEFAULT` (Fashion-MNIST; the shipped `configs/fashion-mnist.yaml` holds the same
values and a test keeps the two equal). Every field becomes a flag: `lr` -> `--lr`, `ckpt_every`
-> `--ckpt-every`.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from alexnet.runtime import MEMORY_FORMATS

SCHEDULES = ("plateau", "step", "constant", "cosine")
# `reinit: torch` re-draws every conv/linear layer with PyTorch's defaults (kaiming-uniform,
# a=sqrt(5), fan-in scaled biases) before training. Measured on the Fashion-MNIST default: the
# paper's N(0, 0.01) (bias 1) and Caffe's (bias 0.1) both sit at ln(10) for the first tens of
# steps (reference section 1, the dead start), PyTorch's reaches 40% train accuracy in 50 steps.
REINITS = ("", "torch")


@dataclass
class TrainConfig:
    """Everything one training run needs; saved as RUN_DIR/config.yaml."""

    # data
    data: str = "fashion-mnist"  # prepared dir, or fashion-mnist / cifar10 / an image folder
    image_size: int = 256  # stored side when preparing on the fly (section 2: 256)
    val_split: float = 0.0  # hold out this fraction of train if no val split (train: 0.1)
    normalize: str = "mean_image"  # section 2: subtract the mean image; or "channel"
    flip: bool = True  # section 4.1: horizontal reflections
    pca_std: float = 0.1  # section 4.1: fancy PCA, alpha ~ N(0, 0.1); 0 turns it off
    workers: int = 0  # loader worker processes (0: load in the training process)
    # model
    model: str = "alexnet"  # a name from `alexnet list-models`
    model_options: dict[str, Any] = field(default_factory=dict)  # e.g. {dropout: 0.5}
    reinit: str = ""  # "": the model's own init; "torch": PyTorch's layer defaults
    init_from: str = ""  # fine-tune from: a weights name (alexnet weights list), run or file
    freeze: str = ""  # with init_from: no updates in every layer up to this one (e.g. conv5)
    new_layer_lr: float = 10.0  # with init_from: lr multiplier of fresh layers (Caffe: 10)
    init_preset: bool = True  # with init_from: normalise as the weights' preset (no: data stats)
    # optimisation (section 5)
    epochs: int = 90  # section 5: roughly 90 passes over the training set
    max_steps: int = 0  # stop after this many steps in all (0: no limit)
    batch_size: int = 128  # global: split evenly over data-parallel ranks
    lr: float = 0.01  # section 5: 0.01 for all layers
    momentum: float = 0.9  # section 5
    weight_decay: float = 5e-4  # section 5: 0.0005, on every weight
    schedule: str = "plateau"  # plateau (the paper), step (Caffe's), constant, cosine (per step)
    lr_factor: float = 0.1  # section 5: divided by 10
    patience: int = 3  # plateau: epochs without a val top-1 improvement before dividing
    max_drops: int = 3  # plateau: the paper divided three times
    step_epochs: int = 20  # step: Caffe's 100,000 iterations of 256 images = 20 epochs
    # run
    seed: int = 0  # same seed, same run: init, data order, augmentation, dropout
    out: str = ""  # run dir (default: runs/<model>-<data>-<time>)
    precision: str = "auto"  # fp32 | bf16 | auto (the runtime's best for the device)
    device: str = "auto"  # auto: cuda when available, else cpu
    memory_format: str = "auto"  # nchw | channels_last | auto (measured per CPU kind and job)
    towers: str = ""  # "DEV0,DEV1": the paper's two-GPU model parallelism (section 3.2)
    threads: int = 0  # torch intra-op threads (0: one per available CPU)
    ckpt_every: int = 0  # also checkpoint every N steps (0: only at epoch ends)
    log_every: int = 50  # a metrics.jsonl step line every N steps
    stuck_steps: int = 300  # warn when the loss stays near ln(num_classes) this long
    ten_crop_test: bool = False  # final test numbers with ten crops (section 4.1)
    keep_best: bool = True  # with a val split, keep best.pt (chosen on val) as the run's weights;
    # false: the last epoch's weights are the run's, val is only measured (overfitting curves)
    safetensors: bool = True  # also write the final weights as model.safetensors
    quiet: bool = False  # no progress bar (for logs; never saved, so a resume is not quiet)
    recipe: dict[str, Any] = field(default_factory=dict)  # the recipe picked and why (printed)


# The README's main command (`alexnet train`, no arguments); alexnet/configs/fashion-mnist.yaml says
# the same with the reasons for each deviation from the paper's recipe.
EMBEDDED_DEFAULT: dict[str, Any] = {
    "data": "fashion-mnist",
    "image_size": 67,
    "model": "alexnet",
    "model_options": {"input_size": 67, "dropout": 0.0, "init": "kaiming"},
    "normalize": "channel",
    "flip": False,
    "epochs": 4,
    "batch_size": 128,
    "lr": 0.015,
    "schedule": "cosine",
    "pca_std": 0.0,
    "val_split": 0.0,
}


def _field_type(f: dataclasses.Field) -> type:
    """The runtime type of a field (`int`, `str`, ...), resolving string annotations."""
    hint = typing.get_type_hints(TrainConfig)[f.name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


RECIPES = Path(__file__).resolve().parents[1] / "configs"  # shipped in the package


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a recipe file (YAML mapping of TrainConfig fields); unknown keys are an error."""
    path = Path(path)
    if not path.is_file() and not path.suffix and path.name == str(path):
        shipped = RECIPES / f"{path}.yaml"
        if not shipped.is_file():
            names = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
            raise FileNotFoundError(
                f"no recipe file {path} and no shipped recipe '{path}' ({names})"
            )
        path = shipped
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise FileNotFoundError(f"recipe file {path} cannot be read: {err}") from err
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"recipe file {path} is not valid YAML: {_one_line(err)}") from err
    if not isinstance(data, dict):
        raise ValueError(f"recipe file {path} must hold a mapping of config fields")
    check_keys(data, str(path))
    return data


def _one_line(err: Exception) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + (getattr(err, "problem", None) or str(err).splitlines()[0])


def check_keys(values: dict[str, Any], source: str) -> None:
    """Raise naming `source` when `values` has keys that are not TrainConfig fields."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{source}: unknown config keys {unknown}; known: {sorted(known)}")


def make_config(*layers: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from defaults overlaid by `layers` in order; values are type-checked."""
    merged: dict[str, Any] = {}
    for layer in layers:
        check_keys(layer, "config")
        for key, value in layer.items():
            if key == "model_options":
                if value is not None and not isinstance(value, dict):
                    raise ValueError(f"config model_options={value!r} must be a mapping")
                merged[key] = {**merged.get(key, {}), **(value or {})}
            else:
                merged[key] = value
    types_ = {f.name: _field_type(f) for f in fields(TrainConfig)}
    for key, value in merged.items():
        want = types_[key]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            merged[key] = float(value)
        elif not isinstance(merged[key], want) or (want is int and isinstance(value, bool)):
            raise ValueError(f"config {key}={value!r} must be {want.__name__}")
    config = TrainConfig(**merged)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Reject values that cannot work, naming the field."""
    if not config.data:
        raise ValueError("no data: pass --data (a prepared dir, fashion-mnist, cifar10, a folder)")
    if config.schedule not in SCHEDULES:
        raise ValueError(f"schedule {config.schedule!r} is not one of {SCHEDULES}")
    if config.reinit not in REINITS:
        raise ValueError(f"reinit {config.reinit!r} is not one of {REINITS}")
    if config.precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision {config.precision!r} is not one of auto, fp32, bf16")
    if config.memory_format not in MEMORY_FORMATS:
        raise ValueError(
            f"memory_format {config.memory_format!r} is not one of {', '.join(MEMORY_FORMATS)}"
        )
    if not 0.0 <= config.val_split < 1.0:
        raise ValueError(f"val_split {config.val_split} must be in [0, 1)")
    for name in ("epochs", "batch_size", "image_size", "step_epochs"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    for name in ("workers", "max_steps", "ckpt_every", "log_every", "threads", "stuck_steps",
                 "patience", "max_drops"):  # fmt: skip
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)}")
    for name in ("lr", "momentum", "weight_decay", "pca_std", "lr_factor"):
        if not math.isfinite(getattr(config, name)) or getattr(config, name) < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {getattr(config, name)}")
    if config.lr <= 0:
        raise ValueError(f"lr must be > 0, got {config.lr}")


def _field_help() -> dict[str, str]:
    """Each field's trailing comment in TrainConfig's source: the help text of its flag."""
    found = re.findall(r"^    (\w+): [^#\n]*#\s*(.+)$", inspect.getsource(TrainConfig), re.M)
    return dict(found)


def _default_text(f: dataclasses.Field) -> str:
    """' (default X)' with the embedded recipe's value first where it differs from the paper's.
    '%' is doubled: argparse formats help strings."""
    if f.name == "val_split":  # set by alexnet.train.recipes: 0.1 unless the recipe says
        return " (default 0.1; the embedded recipe 0: tuned on all of train)"
    paper = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if f.name in EMBEDDED_DEFAULT and EMBEDDED_DEFAULT[f.name] != paper:
        text = f" (default {EMBEDDED_DEFAULT[f.name]!r}; paper recipe {paper!r})"
    elif paper in ("", {}):
        return ""
    else:
        text = f" (default {paper!r})"
    return text.replace("%", "%%")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; defaults are None so only given flags override."""
    helps = _field_help()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = _field_type(f)
        if f.name in helps:
            helps[f.name] += _default_text(f)
        if f.name == "recipe":
            continue  # decided from the data (alexnet.train.recipes), not a flag
        if f.name == "model_options":
            parser.add_argument(
                "--model-option",
                dest="model_options",
                action="append",
                metavar="KEY=VALUE",
                help="a model option (YAML value), e.g. dropout=0 or lrn=false; repeatable "
                "(default: the embedded recipe's "
                + ", ".join(f"{k}={v}" for k, v in EMBEDDED_DEFAULT["model_options"].items())
                + "; paper recipe: the model's own)",
            )
        elif kind is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=helps.get(f.name)
            )
        else:
            parser.add_argument(
                flag, type=kind, default=None, metavar=f.name.upper(), help=helps.get(f.name)
            )


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on the command line, as a layer for `make_config`."""
    out: dict[str, Any] = {}
    for f in fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if f.name == "model_options":
            value = dict(_parse_option(item) for item in value)
        out[f.name] = value
    return out


def command_line(args: argparse.Namespace) -> list[str]:
    """`alexnet train` with exactly the flags given in `args` (what command.txt records)."""
    argv = ["alexnet", "train"]
    for name in ("config", "resume"):
        if getattr(args, name, None):
            argv += [f"--{name}", str(getattr(args, name))]
    for f in fields(TrainConfig):
        value, flag = getattr(args, f.name, None), "--" + f.name.replace("_", "-")
        if value is None:
            continue
        if f.name == "model_options":
            argv += [item for option in value for item in ("--model-option", option)]
        elif isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv


def _parse_option(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--model-option {item!r} must look like KEY=VALUE")
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ValueError(
            f"--model-option {item!r}: the value is not YAML ({_one_line(err)})"
        ) from err


def resolve_config(recipe: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """Defaults < recipe < overrides; no recipe and no `data` override: the embedded default."""
    if recipe:
        base = load_recipe(recipe)
    elif "data" not in overrides:
        base = EMBEDDED_DEFAULT
    else:
        base = {}
    return make_config(base, overrides)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain data (for config.yaml and checkpoints); `quiet` is how this process prints, not
    part of the run, so it is not saved."""
    out = dataclasses.asdict(config)
    out.pop("quiet", None)
    return out
