"""Batches from a prepared store: the paper's augmentation, deterministic and resumable.

Every random choice for sample `index` in epoch `epoch` comes from its own generator
PCG64([seed, epoch, index]) (crop position, reflection, lighting alpha, drawn in that order), so
the pixels depend on (seed, epoch, index) only: not on the worker count, the batch size, the rank
or where a resumed run restarts. The epoch's order is a permutation from PCG64([seed, epoch]),
shared by all ranks; rank r takes every world_size-th sample of it (disjoint shards; the last
N mod world_size samples of the shuffled order sit out that epoch). Evaluation does not shuffle
and does not pad: rank r takes samples r, r + world_size, ..., so every sample is counted once.

A batch is assembled by one worker (a torch DataLoader over batch indices), so `start_batch`
skips batches without reading them.

What the loader reads from a store is `alexnet.data.store.Store` (an ImageStore, or a part of
one such as a held-out val split): `len()`, `labels`, `shapes`, `channels`, `path`, `stats`,
`image_chw(i)`, the whole-batch gather (`uniform_size()`, `images_chw(indices)`) and `release()`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from alexnet.data.stats import DataStats
from alexnet.data.store import Store
from alexnet.data.transforms import (
    CropWriter,
    center_position,
    lighting_offsets,
    random_position,
    ten_crop_positions,
    upscale,
)

Batch = tuple[torch.Tensor, torch.Tensor]


class Loader:
    """`len(loader)` batches per epoch for this rank; `loader.epoch(e, start_batch)` yields
    (images float32 (N, C, h, w) or (N, 10, C, h, w) with ten_crop, labels int64 (N,))."""

    def __init__(
        self,
        store: Store,
        *,
        train: bool,
        crop_size: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
        stats: DataStats | None = None,
        normalize: str = "mean_image",
        flip: bool = True,
        pca_std: float = 0.1,
        ten_crop: bool = False,
        drop_last: bool | None = None,
    ) -> None:
        if normalize not in ("mean_image", "channel"):
            raise ValueError(f"normalize must be 'mean_image' or 'channel', got {normalize!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if batch_size < 1 or crop_size < 1:
            raise ValueError(f"batch_size and crop_size must be >= 1 ({batch_size}, {crop_size})")
        smallest = int(store.shapes[:, :2].min()) if len(store) else 0
        self.upscale = 0  # > 0: whole stored images, resized to this side per batch
        if crop_size > smallest:
            sides = np.unique(store.shapes[:, :2]) if len(store) else np.array([])
            if len(sides) != 1:
                raise ValueError(
                    f"crop {crop_size} larger than the smallest image ({smallest}) of {store.path}"
                )
            # images stored smaller than the model's input (e.g. CIFAR-10's 32 px for a 67-px
            # net): fed whole, upscaled per batch (data.transforms.upscale)
            self.upscale, crop_size = crop_size, smallest
        self.stats = stats if stats is not None else store.stats
        if self.stats is None:
            raise ValueError(
                f"{store.path} has no training statistics: pass stats= "
                "(the train split's store.stats)"
            )
        self.store, self.train, self.crop_size = store, train, crop_size
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.workers, self.normalize, self.flip, self.pca_std = workers, normalize, flip, pca_std
        self.ten_crop = ten_crop and not train
        self.drop_last = drop_last
        self._order: tuple[int, np.ndarray] | None = None
        s = self.stats
        mean_chw = (
            np.ascontiguousarray(s.mean_image.transpose(2, 0, 1), np.float32)
            if normalize == "mean_image"
            else None
        )
        self._crop = CropWriter(crop_size, mean_chw)
        self._mean_chw = mean_chw
        # One gather per batch when every image is the crop and nothing is drawn per sample
        # (whole images, no reflection, no lighting; or evaluation's centre view): the same
        # pixels as the per-sample path, without its Python loop (~15 ms per batch of 128).
        self._whole_batches = (
            store.uniform_size() == crop_size
            and (mean_chw is None or mean_chw.shape[1:] == (crop_size, crop_size))
            and not self.ten_crop
            and (not train or (not flip and pca_std == 0))
        )
        self._shift = np.zeros(store.channels, np.float32)  # added after the crop (channel mode)
        self._scale = np.ones(store.channels, np.float32)
        if normalize == "channel":
            self._shift, self._scale = -s.channel_mean, 1.0 / np.maximum(s.channel_std, 1e-6)

    def indices(self, epoch: int) -> np.ndarray:
        """This rank's sample indices for `epoch`, in order (cached: one permutation per epoch)."""
        if self._order is not None and self._order[0] == epoch:
            return self._order[1]
        n = len(self.store)
        if not self.train:
            mine = np.arange(self.rank, n, self.world_size)
        else:
            order = np.random.Generator(np.random.PCG64([self.seed, epoch])).permutation(n)
            mine = order[: n - n % self.world_size][self.rank :: self.world_size]
        self._order = (epoch, mine)
        return mine

    def _drop_last(self, count: int) -> bool:
        if self.drop_last is not None:
            return self.drop_last
        return self.train and count >= self.batch_size  # never zero batches by default

    def __len__(self) -> int:
        n, ws = len(self.store), self.world_size
        count = (n - n % ws) // ws if self.train else len(range(self.rank, n, ws))
        full, rest = divmod(count, self.batch_size)
        return full if self._drop_last(count) or rest == 0 else full + 1

    def batch(self, epoch: int, number: int) -> Batch:
        """Batch `number` of `epoch` (what `epoch()` yields at that position)."""
        idx = self.indices(epoch)[number * self.batch_size : (number + 1) * self.batch_size]
        views = 10 if self.ten_crop else 1
        c, size = self.store.channels, self.crop_size
        out = np.empty((len(idx), views, c, size, size), np.float32)
        light = np.zeros((len(idx), c), np.float32)
        if self._whole_batches:
            out[:, 0] = self.store.images_chw(idx)
            if self._mean_chw is not None:
                out[:, 0] -= self._mean_chw
        else:
            alphas = self._crops(out, idx, epoch)
            if self.train and self.pca_std > 0:
                light = lighting_offsets(alphas, self.stats.eigval, self.stats.eigvec)
        shift = (light + self._shift[None, :])[:, None, :, None, None]
        if np.any(shift):
            out += shift
        if self.normalize == "channel":
            out *= self._scale[None, None, :, None, None]
        self.store.release()
        images = torch.from_numpy(out if self.ten_crop else out[:, 0])
        if self.upscale:
            images = upscale(images, self.upscale)
        return images, torch.from_numpy(self.store.labels[idx].astype(np.int64))

    def _crops(self, out: np.ndarray, idx: np.ndarray, epoch: int) -> np.ndarray:
        """Write each sample's crop(s) minus the mean into `out`, drawing crop position,
        reflection and lighting alpha from its own generator; returns the alphas (N, C)."""
        c, size = self.store.channels, self.crop_size
        alphas = np.zeros((len(idx), c))
        for k, i in enumerate(idx.tolist()):
            img = self.store.image_chw(i)
            h, w = img.shape[1:]
            if self.train:
                rng = np.random.Generator(np.random.PCG64([self.seed, epoch, i]))
                top, left = random_position(rng, h, w, size)
                flip = bool(rng.random() < 0.5) and self.flip
                alphas[k] = rng.normal(0.0, 1.0, size=c) * self.pca_std
                self._crop(out[k, 0], img, top, left, flip)
            elif self.ten_crop:
                for v, (top, left) in enumerate(ten_crop_positions(h, w, size) * 2):
                    self._crop(out[k, v], img, top, left, v >= 5)
            else:
                self._crop(out[k, 0], img, *center_position(h, w, size), False)
        return alphas

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        """Yield batches start_batch, ..., len(self) - 1 of `epoch` (workers > 0: in parallel)."""
        numbers = range(start_batch, len(self))
        if self.workers <= 0:
            for number in numbers:
                yield self.batch(epoch, number)
            return
        loader = DataLoader(
            _EpochBatches(self, epoch),
            batch_size=None,
            sampler=numbers,
            num_workers=self.workers,
            prefetch_factor=4,
            pin_memory=torch.cuda.is_available(),  # page-locked batches copy to the GPU async
        )
        yield from loader

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)


class _EpochBatches(Dataset):
    """Map-style dataset whose items are whole batches of one epoch."""

    def __init__(self, loader: Loader, epoch: int) -> None:
        self.loader, self.epoch = loader, epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __getitem__(self, number: int) -> Batch:
        return self.loader.batch(self.epoch, number)


# `make_loader(store, *, train, crop_size, batch_size, ...)`: the public name of the constructor.
make_loader = Loader
