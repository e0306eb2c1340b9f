"""One training run end to end: devices, data, model, run dir, `Trainer.fit`, final test numbers.

Device and distributed setup happen once, here, at the top; the loop itself is in `loop.py`.
The test split is evaluated only after training, for the final numbers; learning-rate decisions
use the val split (or `val_split` of train held out), never the test split.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from alexnet.cache import cache_dir
from alexnet.data.prepare import ensure_prepared, find_splits
from alexnet.data.preset import Preprocess
from alexnet.data.stats import DataStats
from alexnet.data.store import open_store
from alexnet.eval.evaluate import evaluate
from alexnet.fileio import atomic_write_text
from alexnet.models import create_model
from alexnet.models.transfer import Transfer
from alexnet.models.weights_file import save_weights
from alexnet.runtime import best_precision, choose_layout, configure_threads
from alexnet.train.checkpoint import check_resumable, load_checkpoint, resolve_checkpoint
from alexnet.train.config import TrainConfig, config_to_dict, make_config
from alexnet.train.data import build_loaders, build_model
from alexnet.train.distributed import (
    DistContext,
    barrier,
    cleanup,
    init_distributed,
    per_rank_batch,
    pick_device,
)
from alexnet.train.init import InitSource, load_source, param_groups, preset_stats
from alexnet.train.loop import StopCondition, Trainer
from alexnet.train.recipes import describe
from alexnet.train.rundir import claim_run_dir
from alexnet.train.towers import GroupedLayout, load_portable_state_dict


def data_splits(
    spec: str, image_size: int, ctx: DistContext, quiet: bool, warp: bool = False
) -> dict[str, Path]:
    """{split: store dir}: `spec` as a prepared dir, else prepared into the cache once (`warp`:
    whole images squeezed to squares, for weights whose preset says so: Caffe's)."""
    path = Path(spec)
    if path.is_dir() and any((path / s / "meta.json").is_file() for s in ("train", "val", "test")):
        return find_splits(path)
    if ctx.is_main:  # one rank prepares, the others wait and then find it complete
        out = ensure_prepared(spec, cache_dir(), image_size, warp=warp, quiet=quiet)
    barrier(ctx)
    if not ctx.is_main:
        out = ensure_prepared(spec, cache_dir(), image_size, warp=warp, quiet=True)
    return find_splits(out)


def seed_everything(seed: int) -> None:
    """Same seed, same run: torch (init, dropout), numpy and python generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_preprocess(store: Any, crop_size: int, normalize: str, stats: Any) -> dict[str, Any]:
    """The checkpoint's `preprocess` entry (docs/architecture.md): the train store's geometry
    and classes, normalised with `stats` (the store's, or a fine-tuning source's)."""
    if stats is None:
        raise ValueError(f"{store.path}: the train split has no statistics (stats.npz)")
    pre: dict[str, Any] = {
        "image_size": int(store.image_size),
        "crop_size": int(crop_size),
        "in_chans": int(store.channels),
        "normalize": normalize,
        "classes": list(store.class_names),
    }
    if normalize == "mean_image":
        pre["mean_image"] = torch.from_numpy(np.asarray(stats.mean_image, np.float32))
    elif normalize == "channel":
        pre["mean"] = [float(v) for v in stats.channel_mean]
        pre["std"] = [float(v) for v in stats.channel_std]
    else:
        raise ValueError(f"normalize {normalize!r} must be mean_image or channel")
    return pre


def eval_stats(pre: Any) -> Any:
    """Loader statistics from a weights file's preprocessing (Preprocess): its mean image or
    per-channel mean/std. Evaluation draws no lighting noise, so the PCA fields stay neutral."""
    c = int(pre.in_chans)
    eye = np.eye(c)
    neutral = DataStats(np.zeros(0), np.zeros(c), np.ones(c), eye, np.zeros(c), eye, 0)
    return preset_stats(pre, neutral)


def fine_tune_config(config: TrainConfig, init: InitSource) -> TrainConfig:
    """The run's config with the source's model and options, and (unless `init_preset` is off)
    its preset's normalisation and stored size, or the data's where that is smaller: images are
    never enlarged on prepare (CIFAR-10 at 256 would take 12 GB) but per batch, fed whole.
    Options the user asked for by name (recipes.asked_net) win over the source's; a different
    model is an error."""
    asked = config.recipe.get("init_overrides") or {}
    if asked.get("model") and asked["model"] != init.model_name:
        raise ValueError(
            f"--model {asked['model']} with --init-from {init.spec}: the source is a "
            f"{init.model_name}; drop --model (the source decides the net)"
        )
    values = config_to_dict(config)
    # the recipe's options (the small-image recipe's dropout and init) are for its own net, so
    # only the asked-for ones are laid over the source's, which name every keyword of its model
    values["model_options"] = {**init.model_options, **asked.get("model_options", {})}
    changes: dict[str, Any] = {"model": init.model_name}
    changes["quiet"] = config.quiet  # not in config_to_dict: how this process prints
    if config.init_preset:
        size = min(int(init.preset.image_size), config.image_size)  # the recipe's: <= the data's
        changes.update(image_size=size, normalize=init.preset.normalize)
    return make_config(values, changes)


def init_stats(
    config: TrainConfig, init: InitSource | None, store: Any, ctx: DistContext
) -> Callable[[Any], Any] | None:
    """How the loaders' statistics follow the source's preset, or None for the data's own."""
    if init is None or not config.init_preset:
        return None
    pre = init.preset
    channels, size = int(store.channels), int(store.image_size)
    if channels != pre.in_chans or (pre.normalize == "mean_image" and size != pre.image_size):
        if ctx.is_main:
            print(
                f"init from {init.spec}: its preset is for {pre.in_chans}-channel "
                f"{pre.image_size}-px images, the data has {channels} channels at {size} px; "
                "normalising with the data's own statistics"
            )
        return None
    return functools.partial(preset_stats, pre)


def describe_init(config: TrainConfig, transfer: Transfer, with_preset: bool) -> str:
    """The fine-tuning summary printed at the start of a run."""
    frozen = f"; frozen through {config.freeze}" if config.freeze else ""
    norm = "the source's preset" if with_preset else "the data's statistics"
    return (
        f"init from {config.init_from}: {transfer.describe()}{frozen}; fresh layers at "
        f"{config.new_layer_lr:g}x the lr; normalised with {norm}"
    )


def default_run_dir(config: TrainConfig) -> Path:
    """runs/<model>-<data>-<UTC time>; fine-tuning: runs/<source>-tuned-<data>-<UTC time>, since
    the net is the source's (config.model is still the recipe's here, before the source loads)."""
    data = Path(config.data.rstrip("/")).name or "data"
    source = Path(config.init_from.rstrip("/"))
    if source.parent.name == "checkpoints":  # a run's checkpoint: name the run
        source = source.parent.parent
    net = (
        f"{source.stem if source.suffix else source.name}-tuned"
        if config.init_from
        else config.model
    )
    return Path("runs") / f"{net}-{data}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def write_run_files(run_dir: Path, config: TrainConfig, command: list[str]) -> None:
    """config.yaml (the resolved config) and command.txt (the exact command line)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        run_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False)
    )
    world = os.environ.get("WORLD_SIZE", "1")
    prefix = f"# under torchrun, WORLD_SIZE={world}\n" if world != "1" else ""
    with (run_dir / "command.txt").open("a") as handle:  # a resume appends its own line
        handle.write(prefix + shlex.join(command) + "\n")


def resume_config(run_dir: str, overrides: dict[str, Any]) -> tuple[TrainConfig, dict]:
    """The saved run's config with the flags given now on top, and its last checkpoint."""
    ckpt = load_checkpoint(run_dir)
    check_resumable(ckpt, resolve_checkpoint(run_dir))
    config = make_config(ckpt["config"], {**overrides, "out": str(run_dir)})
    return config, ckpt


def train(
    config: TrainConfig,
    *,
    stop: StopCondition | None = None,
    command: list[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run a fresh training run as `config` says; `stop(epoch records)`, asked after every
    epoch, ends it early (loop.StopCondition); returns the final test metrics ({} without a
    test or val split; a run `stop` ended is tested as it stands, and so is every invocation's
    end). A run directory that holds a run is refused unless `overwrite` (which clears it); it
    is locked for the whole run (alexnet.train.rundir). `resume` continues one."""
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"train takes a TrainConfig, not {type(config).__name__}; to continue a run "
            "directory, call resume(run_dir, overrides=...)"
        )
    return _launch(config, None, None, stop, command, overwrite)


def resume(
    run_dir: str | Path,
    *,
    overrides: dict[str, Any] | None = None,
    stop: StopCondition | None = None,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """Continue run directory `run_dir` from its last checkpoint, exactly, with its saved config
    and `overrides` (TrainConfig fields) on top: more `epochs`, say, or an `lr`, which changes
    the learning rate by hand from here on. `stop` and the result as for `train`."""
    overrides = dict(overrides or {})
    config, ckpt = resume_config(str(run_dir), overrides)
    return _launch(config, ckpt, overrides.get("lr"), stop, command, overwrite=False)


def _launch(
    config: TrainConfig,
    ckpt: dict[str, Any] | None,
    lr_override: float | None,
    stop: StopCondition | None,
    command: list[str] | None,
    overwrite: bool,
) -> dict[str, Any]:
    """Devices and the process group once, the run directory claimed, then `_train`."""
    device = pick_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    ctx = init_distributed(device)
    try:
        command = command or ["alexnet", "train", *sys.argv[1:]]
        if not config.out:
            config = make_config(config_to_dict(config), {"out": str(default_run_dir(config))})
        claim = claim_run_dir(Path(config.out), resume=ckpt is not None, overwrite=overwrite)
        with claim if ctx.is_main else contextlib.nullcontext():
            return _train(config, ctx, device, ckpt, lr_override, command, stop)
    finally:
        cleanup(ctx)


def _train(
    config: TrainConfig,
    ctx: DistContext,
    device: torch.device,
    ckpt: dict[str, Any] | None,
    lr_override: float | None,
    command: list[str],
    stop: StopCondition | None,
) -> dict[str, Any]:
    configure_threads(config.threads or None)
    precision = best_precision(device) if config.precision == "auto" else config.precision
    layout = choose_layout(device, precision, "train", config.memory_format)
    recipe = {**config.recipe, "memory_format": layout.reason}  # config.yaml says why
    config = make_config(
        config_to_dict(config),
        {"memory_format": layout.name, "recipe": recipe, "quiet": config.quiet},
    )
    init = load_source(config.init_from) if config.init_from else None
    if init is not None:  # the source decides the net, and (its preset) the image sizes
        config = fine_tune_config(config, init)
    seed_everything(config.seed)  # after the source is built: fresh layers draw as from scratch
    warp = init is not None and config.init_preset and init.preset.resize == "warp"
    splits = data_splits(config.data, config.image_size, ctx, config.quiet, warp)
    if "train" not in splits:
        raise ValueError(f"--data {config.data}: no train split (found {sorted(splits)})")
    batch = per_rank_batch(config.batch_size, ctx.world_size)
    stats = init_stats(config, init, open_store(splits["train"]), ctx)
    data = build_loaders(config, splits, batch, ctx, stats=stats)
    model, core, transfer = build_model(config, data, device, precision, ctx, init)
    used = stats(data.train_store.stats) if stats else data.train_store.stats
    preprocess = make_preprocess(data.train_store, core.input_size, config.normalize, used)
    groups = param_groups(core, transfer.fresh, config.new_layer_lr) if transfer else None
    run_dir = Path(config.out)
    real = {"out": str(run_dir), "quiet": config.quiet, "image_size": data.train_store.image_size}
    config = make_config(config_to_dict(config), real)  # config.yaml records the real store size
    if ctx.is_main and data.held_out:
        n_train, n_val = data.held_out
        print(
            f"val: held out {config.val_split:.0%} of train, {n_val:,} images (seeded, not "
            f"stratified; {n_train:,} left to train on): no val split in {config.data}"
        )
    trainer = Trainer(
        config, model, data.train, data.val, preprocess=preprocess, run_dir=run_dir,
        device=data.input_device or device, precision=precision, ctx=ctx, param_groups=groups,
    )  # fmt: skip
    if ckpt is not None:
        try:
            trainer.load_state(ckpt, lr_override)
        except (KeyError, TypeError, AttributeError, RuntimeError, IndexError, ValueError) as err:
            name = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}"
            raise ValueError(f"{run_dir}: cannot resume from its checkpoint ({name})") from err
    if ctx.is_main:
        write_run_files(run_dir, config, command)
        if ckpt is not None:  # a fresh run's recipe line came first, from `alexnet train`
            step = trainer.progress.step
            print(
                f"resuming at step {step} (epoch {trainer.progress.epoch + 1}); {describe(config)}"
            )
        print(f"run dir {run_dir}; {config.model} on {config.data}, {precision}, {device}")
        print(f"memory format {layout.name}: {layout.reason}")
        if transfer is not None:
            print(describe_init(config, transfer, stats is not None))
    trainer.fit(resume_step=None if ckpt is None else trainer.progress.step, stop=stop)
    barrier(ctx)  # rank 0's best.pt is complete before any rank reads it
    weights = use_final_weights(trainer, data)
    result = final_test(trainer, data, config, precision)
    if result:
        result["weights"] = weights
    if ctx.is_main:
        _finish(trainer, result, run_dir, config)
    barrier(ctx)  # no rank tears the process group down while another still uses it
    return result


def use_final_weights(trainer: Trainer, data: Any) -> str:
    """The one rule for a run's numbers: its weights are checkpoints/best.pt when a val split
    chose it (loaded into the trainer's model here), else the last weights. What `evaluate`,
    `report`, `release` and model.safetensors use too; returns how to name them."""
    best = trainer.run_dir / "checkpoints" / "best.pt"
    if data.val is None or not best.is_file():
        return f"last weights (step {trainer.progress.step})"
    ckpt = load_checkpoint(best)
    load_portable_state_dict(trainer.core, ckpt["model"])
    return f"best.pt (epoch {int(ckpt['epoch'])}, chosen on val)"


def final_test(trainer: Trainer, data: Any, config: TrainConfig, precision: str) -> dict:
    """Top-1/top-5 on the test split (else val) with the run's weights (use_final_weights)."""
    loader = data.test_ten if config.ten_crop_test else data.test
    if loader is None:
        return {}
    result = evaluate(
        trainer.model, loader.epoch(0), num_classes=trainer.num_classes,
        device=trainer.device, precision=precision, ten_crop=config.ten_crop_test,
    )  # fmt: skip
    return {"split": data.test_split, "ten_crop": config.ten_crop_test, **result}


def _finish(trainer: Trainer, result: dict, run_dir: Path, config: TrainConfig) -> None:
    if result:
        atomic_write_text(run_dir / "test_metrics.json", json.dumps(result, indent=1))
        print(
            f"final {result['split']} ({result['count']} images"
            f"{', ten crops' if result['ten_crop'] else ''}): top-1 acc {result['top1_acc']:.4f}"
            f" (err {result['top1_err']:.4f}), top-5 acc {result['top5_acc']:.4f}"
            f" (err {result['top5_err']:.4f}); weights: {result['weights']}"
        )
    if config.safetensors:  # the weights file `alexnet predict` and `release` read
        core = trainer.core
        if isinstance(core, GroupedLayout):
            core = _rebuilt(core)
        metrics = {k: v for k, v in result.items() if not isinstance(v, list)}
        pre = Preprocess.from_dict(trainer.preprocess)
        save_weights(run_dir / "model.safetensors", core, pre, metrics=metrics)
    print(f"run dir: {run_dir}")


def _rebuilt(split: Any) -> torch.nn.Module:
    """The single-device grouped model holding a tower split's weights (for export)."""
    options = dict(split.model_options)
    model = create_model(split.model_name, **options)
    model.load_state_dict(split.grouped_state_dict())
    return model
