"""The loaders and the model of a run, from the prepared splits and the config.

Splits: `train` trains; `val` (or, when there is none, `val_split` of train held out) drives
the learning-rate schedule and the best checkpoint; `test` is used only for the final numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from alexnet.data.loader import Loader, make_loader
from alexnet.data.stats import DataStats
from alexnet.data.store import ImageStore, Store, open_store
from alexnet.models import create_model, model_defaults
from alexnet.models.transfer import Transfer, classifier_layer, freeze_through, load_fitting
from alexnet.runtime import prepare_model
from alexnet.train.config import TrainConfig
from alexnet.train.distributed import DistContext
from alexnet.train.init import InitSource
from alexnet.train.towers import TwoTowerAlexNet


class StoreSubset(Store):
    """The samples `indices` of a store (a held-out val part of train), read through it; keeps
    the base store's whole-batch gather, so a held-out split loads as fast as the full one."""

    def __init__(self, store: Store, indices: np.ndarray) -> None:
        self.base, self.indices = store, np.asarray(indices, dtype=np.int64)
        self.path, self.stats, self.channels = store.path, store.stats, store.channels
        self.labels = store.labels[self.indices]
        self.shapes = store.shapes[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def image_chw(self, index: int) -> np.ndarray:
        return self.base.image_chw(int(self.indices[index]))

    def uniform_size(self) -> int | None:
        return self.base.uniform_size()  # a property of every image: holds for any part

    def images_chw(self, indices: np.ndarray) -> np.ndarray:
        return self.base.images_chw(self.indices[np.asarray(indices)])

    def release(self) -> None:
        self.base.release()


def hold_out(store: Store, fraction: float, seed: int) -> tuple[StoreSubset, StoreSubset]:
    """(train, val) parts of `store`: a seeded random `fraction` is held out for validation."""
    n = len(store)
    n_val = round(n * fraction)
    if not 0 < n_val < n:
        raise ValueError(f"val_split {fraction} of {n} images of {store.path} leaves an empty part")
    order = np.random.Generator(np.random.PCG64([seed, 0x5EED])).permutation(n)
    return StoreSubset(store, np.sort(order[n_val:])), StoreSubset(store, np.sort(order[:n_val]))


def check_labels(store: Store, num_classes: int) -> Store:
    """`store`, after checking that its labels index the run's `num_classes` classes."""
    labels = np.asarray(store.labels)
    bad = labels[(labels < 0) | (labels >= num_classes)] if len(labels) else labels
    if len(bad):
        raise ValueError(
            f"{store.path}: {len(bad)} label(s) out of range for the {num_classes} classes of "
            f"the train split (e.g. {int(bad[0])}); the store is damaged, prepare it again"
        )
    return store


@dataclass
class RunData:
    """The stores and loaders of one run (val/test loaders are None when absent)."""

    train_store: ImageStore
    train: Loader
    val: Loader | None
    test: Loader | None
    test_ten: Loader | None
    test_split: str
    crop_size: int
    input_device: torch.device | None = None
    held_out: tuple[int, int] | None = None  # (train, val) images when val was held out


def build_loaders(
    config: TrainConfig,
    splits: dict[str, Path],
    batch: int,
    ctx: DistContext,
    stats: Callable[[DataStats], DataStats] | None = None,
) -> RunData:
    """Train, val and test loaders for this rank (per-rank batch `batch`); `stats` turns the
    train store's statistics into the ones the loaders normalise with (fine-tuning's preset)."""
    store = open_store(splits["train"])
    check_labels(store, len(store.classes))
    train_part, val_part = store, None
    if "val" in splits:
        val_part = check_labels(open_store(splits["val"]), len(store.classes))
    elif config.val_split > 0 and round(len(store) * config.val_split) > 0:
        train_part, val_part = hold_out(store, config.val_split, config.seed)
    crop = int(config.model_options.get("input_size", model_defaults(config.model)["input_size"]))
    common = {
        "crop_size": crop, "seed": config.seed, "rank": ctx.rank, "world_size": ctx.world_size,
        "workers": config.workers, "stats": stats(store.stats) if stats else store.stats,
        "normalize": config.normalize,
    }  # fmt: skip

    def evaluation(part: Store | None, ten_crop: bool = False) -> Loader | None:
        if part is None:
            return None
        return make_loader(part, train=False, batch_size=batch, ten_crop=ten_crop, **common)

    train = make_loader(
        train_part, train=True, batch_size=batch, flip=config.flip, pca_std=config.pca_std,
        drop_last=True, **common,
    )  # fmt: skip
    test_split = "test" if "test" in splits else ("val" if val_part is not None else "")
    test_store = (
        check_labels(open_store(splits["test"]), len(store.classes))
        if "test" in splits
        else val_part
    )
    return RunData(
        train_store=store, train=train, val=evaluation(val_part), test=evaluation(test_store),
        test_ten=evaluation(test_store, ten_crop=True), test_split=test_split, crop_size=crop,
        held_out=(len(train_part), len(val_part)) if val_part is not None and "val" not in splits
        else None,
    )  # fmt: skip


def build_model(
    config: TrainConfig,
    data: RunData,
    device: torch.device,
    precision: str,
    ctx: DistContext,
    init: InitSource | None = None,
) -> tuple[nn.Module, nn.Module, Transfer | None]:
    """(the model the loop calls, the bare model, what `init` loaded): towers split or
    DDP-wrapped as configured. `in_chans` and `num_classes` come from the data unless the recipe
    sets them; with `init` (fine-tuning) every layer of it that fits is loaded."""
    store = data.train_store
    options = {"in_chans": int(store.channels), **config.model_options}
    options.pop("num_classes", None)
    core = create_model(config.model, num_classes=len(store.classes), **options)
    if config.reinit == "torch":
        for layer in core.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                layer.reset_parameters()
    transfer = None
    if init is not None:
        if config.towers:
            raise ValueError("--init-from with --towers is not supported; train on one device")
        # The source's classifier only when its classes are the data's (names, in order): five
        # CIFAR-10 classes are not five others, though the head's shape would fit.
        same = bool(init.preset.classes) and list(init.preset.classes) == list(store.class_names)
        transfer = load_fitting(core, init.state, () if same else (classifier_layer(core),))
    if config.freeze:
        if init is None:
            raise ValueError("--freeze needs --init-from: frozen random layers learn nothing")
        freeze_through(core, config.freeze)
    if config.towers:
        devices = [d.strip() for d in config.towers.split(",")]
        core = TwoTowerAlexNet(core, devices)
        data.input_device = core.devices[0]
        model: nn.Module = core
    else:
        core = model = prepare_model(core, device, precision, config.memory_format)
    if ctx.enabled:
        ids = [device.index] if device.type == "cuda" and not config.towers else None
        model = DistributedDataParallel(model, device_ids=ids)
    return model, core, transfer
