"""The paper's image transforms (sections 2, 4.1), on numpy arrays or torch tensors.

- Training: a random crop_size x crop_size patch of the stored image and its horizontal
  reflection with probability 1/2; PCA lighting; mean-image subtraction.
- Test: the centre crop, or ten crops (the four corners and the centre, then their reflections).

Layouts: single images are (H, W, C) (numpy, as stored) or (..., C, H, W) (torch tensors, as the
model sees them); functions below say which. Crop positions are (top, left).

PCA lighting scale: the paper writes "add p_i * alpha_i * lambda_i" with lambda_i the
eigenvalues of the RGB covariance. Krizhevsky's released code (cuda-convnet2) multiplies alpha by
the square roots of the eigenvalues in the 0-255 scale (ImageNet: about [121.8, 37.1, 19.7]),
which puts the noise on the pixels' own scale: alpha ~ N(0, 0.1) then moves a pixel by about 12
grey levels along the main axis. We follow the released code (`lighting_offsets`).
"""

from __future__ import annotations

import numpy as np
import torch


def center_position(height: int, width: int, crop_size: int) -> tuple[int, int]:
    """(top, left) of the central crop; an odd margin leaves the extra pixel bottom/right."""
    _check_fits(height, width, crop_size)
    return (height - crop_size) // 2, (width - crop_size) // 2


def ten_crop_positions(height: int, width: int, crop_size: int) -> list[tuple[int, int]]:
    """(top, left) of the five crops of section 4.1: top-left, top-right, bottom-left,
    bottom-right, centre (the order torchvision's five_crop uses)."""
    _check_fits(height, width, crop_size)
    bottom, right = height - crop_size, width - crop_size
    return [
        (0, 0),
        (0, right),
        (bottom, 0),
        (bottom, right),
        center_position(height, width, crop_size),
    ]


def random_position(
    rng: np.random.Generator, height: int, width: int, crop_size: int
) -> tuple[int, int]:
    """A uniformly random (top, left) with the crop inside the image (section 4.1)."""
    _check_fits(height, width, crop_size)
    top = int(rng.integers(0, height - crop_size + 1))
    left = int(rng.integers(0, width - crop_size + 1))
    return top, left


def upscale(x: torch.Tensor, size: int) -> torch.Tensor:
    """(..., C, h, w) float images resized to (..., C, size, size), bilinear (align_corners off,
    no antialiasing): how images stored smaller than the model's input reach it, the same in
    training (per batch) and inference (alexnet.data.preset)."""
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    out = torch.nn.functional.interpolate(
        flat, size=(size, size), mode="bilinear", align_corners=False
    )
    return out.reshape(*lead, *out.shape[-3:])


def _check_fits(height: int, width: int, crop_size: int) -> None:
    if crop_size > height or crop_size > width:
        raise ValueError(f"crop {crop_size} does not fit in a {height}x{width} image")


def lighting_offsets(alpha: np.ndarray, eigval: np.ndarray, eigvec: np.ndarray) -> np.ndarray:
    """Per-image colour offsets sum_i p_i * alpha_i * sqrt(lambda_i), (N, C) from alpha (N, C).

    `eigval`, `eigvec` from the training set's RGB covariance (0-255 scale, eigenvectors as
    columns); see the module docstring for the square root.
    """
    scaled = alpha * np.sqrt(np.clip(eigval, 0.0, None))[None, :]
    return (scaled @ eigvec.T).astype(np.float32)


def mean_position(
    top: int, left: int, shape: tuple[int, ...], crop_size: int, mean_size: int
) -> tuple[int, int]:
    """Where a crop at (top, left) of an (H, W) image falls on the mean image (S x S).

    Identity for stores of S x S images; keep-aspect images map proportionally.
    """
    h, w = shape[0], shape[1]
    room = mean_size - crop_size
    mt = top if h == mean_size else round(top * room / max(h - crop_size, 1))
    ml = left if w == mean_size else round(left * room / max(w - crop_size, 1))
    return mt, ml


class CropWriter:
    """Writes crops of (C, H, W) uint8 images into float32 (C, crop, crop) outputs, minus the
    mean image, reflected or not: out = crop(img - mean), flipped if asked.

    The hot loop of the loader, arranged for speed (measured in `alexnet.bench.loader`): the
    uint8 -> float32 cast and the subtraction each run over contiguous rows; a reflection
    gathers the uint8 columns (4x less data than reflecting floats) and subtracts a crop of the
    pre-reflected mean image, so no float array is ever read backwards.
    """

    def __init__(self, crop_size: int, mean_chw: np.ndarray | None) -> None:
        self.crop_size = crop_size
        self.mean = mean_chw
        self.mean_flipped = None if mean_chw is None else np.ascontiguousarray(mean_chw[..., ::-1])
        self._reverse = np.arange(crop_size)[::-1].copy()
        self._scratch: np.ndarray | None = None

    def __call__(
        self, out: np.ndarray, img_chw: np.ndarray, top: int, left: int, flip: bool
    ) -> None:
        c = self.crop_size
        patch = img_chw[:, top : top + c, left : left + c]
        if flip:
            if self._scratch is None or self._scratch.shape != patch.shape:
                self._scratch = np.empty(patch.shape, np.uint8)
            patch = np.take(patch, self._reverse, axis=2, out=self._scratch)
        out[...] = patch
        if self.mean is None:
            return
        size = self.mean.shape[2]
        mt, ml = mean_position(top, left, img_chw.shape[1:], c, size)
        if flip:  # crop(M)[..., ::-1] at column ml is the flipped mean's crop at size - ml - c
            out -= self.mean_flipped[:, mt : mt + c, size - ml - c : size - ml]
        else:
            out -= self.mean[:, mt : mt + c, ml : ml + c]
