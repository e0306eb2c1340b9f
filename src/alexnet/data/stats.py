"""Training-set statistics the paper needs: the mean image (section 2) and the RGB PCA (4.1).

Accumulated in float64 while `prepare` writes the train split (exact sums of integer pixel
values), saved beside it as `stats.npz`. Everything is in the 0-255 scale.
For one-channel data the "PCA" is the 1x1 case: eigval = the pixel variance, eigvec = [[1]], so
the lighting noise becomes a random brightness shift of the same relative size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

_FIELDS = ("mean_image", "channel_mean", "channel_std", "cov", "eigval", "eigvec")


@dataclass
class DataStats:
    """mean_image (H, W, C) float32; channel_mean/std (C,) float32; cov (C, C), eigval (C,)
    largest first and eigvec (C, C) (eigenvectors as columns) in float64; pixel_count."""

    mean_image: np.ndarray
    channel_mean: np.ndarray
    channel_std: np.ndarray
    cov: np.ndarray
    eigval: np.ndarray
    eigvec: np.ndarray
    pixel_count: int

    def save(self, path: Path) -> None:
        arrays = {name: getattr(self, name) for name in _FIELDS}
        np.savez(path, pixel_count=np.int64(self.pixel_count), **arrays)

    @classmethod
    def load(cls, path: Path) -> DataStats:
        with np.load(path, allow_pickle=False) as z:
            missing = [f for f in (*_FIELDS, "pixel_count") if f not in z.files]
            if missing:
                raise ValueError(f"{path}: statistics file lacks {missing}")
            arrays = {f: z[f] for f in _FIELDS}
            return cls(**arrays, pixel_count=int(z["pixel_count"]))


class StatsAccumulator:
    """Sums over images: per-pixel sum (for the mean image), and the RGB first/second moments."""

    def __init__(self, size: int, channels: int) -> None:
        self.size, self.channels = size, channels
        self.image_sum = np.zeros((size, size, channels), np.float64)
        self.images = 0
        self.pixel_sum = np.zeros(channels, np.float64)
        self.outer_sum = np.zeros((channels, channels), np.float64)
        self.pixels = 0

    def add(self, img: np.ndarray) -> None:
        """Add one stored image (H, W, C) uint8; H, W >= size (keep-aspect images use the
        central size x size for the mean image and all pixels for the colour moments)."""
        h, w, c = img.shape
        top, left = (h - self.size) // 2, (w - self.size) // 2
        self.image_sum += img[top : top + self.size, left : left + self.size]
        self.images += 1
        flat = img.reshape(-1, c).astype(np.float64)
        self.pixel_sum += flat.sum(axis=0)
        self.outer_sum += flat.T @ flat  # integer-valued, exact in float64 up to 2**53
        self.pixels += flat.shape[0]

    def merge(self, other: StatsAccumulator) -> None:
        self.image_sum += other.image_sum
        self.images += other.images
        self.pixel_sum += other.pixel_sum
        self.outer_sum += other.outer_sum
        self.pixels += other.pixels

    def finalize(self) -> DataStats:
        """Mean image, channel mean/std and the covariance's eigen-decomposition (section 4.1)."""
        if self.images == 0:
            raise ValueError("no images accumulated: cannot compute training statistics")
        mean = self.pixel_sum / self.pixels
        cov = self.outer_sum / self.pixels - np.outer(mean, mean)  # population covariance
        eigval, eigvec = np.linalg.eigh(cov)
        order = np.argsort(eigval)[::-1]  # largest first, like cuda-convnet2's table
        eigval, eigvec = np.clip(eigval[order], 0.0, None), eigvec[:, order]
        eigvec = eigvec * np.where(eigvec.sum(axis=0) < 0, -1.0, 1.0)  # fixed sign convention
        return DataStats(
            mean_image=(self.image_sum / self.images).astype(np.float32),
            channel_mean=mean.astype(np.float32),
            channel_std=np.sqrt(np.diag(cov)).astype(np.float32),
            cov=cov,
            eigval=eigval,
            eigvec=eigvec,
            pixel_count=self.pixels,
        )
