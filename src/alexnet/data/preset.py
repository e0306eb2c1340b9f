"""The preset: the preprocessing that belongs to a set of weights, and its application to an image.

Weights carry their preprocessing (as torchvision's weights entries do) so that inference cannot
pair them with the wrong transforms. Pixel convention (docs/architecture.md): model input is
float32 NCHW in the 0-255 scale, minus the training mean image (paper section 2), or
`(pixel - mean) / std` per channel, with mean and std also in the 0-255 scale.

Geometry: with `resize="shorter"` the shorter side is rescaled to `image_size` and the central
`image_size` square kept (paper section 2, what `alexnet prepare` stores); with `resize="warp"`
the whole image is squeezed to `image_size` x `image_size` (what Caffe's ImageNet tools did).
Then the central `crop_size` patch (or, for ten-crop testing, the four corners, the centre and
their reflections; section 4.1). Weights trained on images stored smaller than their input
(`crop_size > image_size`, e.g. CIFAR-10 kept at 32 px for a 67-px net) see the whole image,
upscaled bilinearly to `crop_size`. Colour order is always RGB: weights from BGR sources (Caffe)
have conv1's input channels flipped once when they are imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from alexnet.data.images import resize_center_crop, resize_warp
from alexnet.data.transforms import upscale

NORMALIZE_MODES = ("mean_image", "channel")
RESIZE_MODES = ("shorter", "warp")


@dataclass
class Preprocess:
    """The `preprocess` entry of a checkpoint (docs/architecture.md), as an object."""

    image_size: int
    crop_size: int
    in_chans: int
    normalize: str
    classes: list[str]
    mean_image: torch.Tensor | None = None  # (image_size, image_size, in_chans), 0-255 scale
    mean: list[float] | None = None
    std: list[float] | None = None
    resize: str = "shorter"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"preprocess.resize is {self.resize!r}; use {RESIZE_MODES}")
        for name in ("image_size", "crop_size", "in_chans"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"preprocess.{name} is {value!r}; expected an integer >= 1")
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"preprocess.normalize is {self.normalize!r}; use {NORMALIZE_MODES}")
        if self.normalize == "mean_image":
            if self.mean_image is None:
                raise ValueError("preprocess.normalize is 'mean_image' but no mean_image is given")
            self.mean_image = torch.as_tensor(self.mean_image, dtype=torch.float32)
            if tuple(self.mean_image.shape) != (self.image_size, self.image_size, self.in_chans):
                raise ValueError(
                    f"mean_image has shape {tuple(self.mean_image.shape)}; expected "
                    f"({self.image_size}, {self.image_size}, {self.in_chans})"
                )
        elif (
            self.mean is None
            or self.std is None
            or len(self.mean) != self.in_chans
            or len(self.std) != self.in_chans
            or not all(math.isfinite(v) for v in self.mean)
            or not all(math.isfinite(v) and v > 0 for v in self.std)
        ):
            raise ValueError(
                f"preprocess.normalize is 'channel' but mean/std are {self.mean}/{self.std}"
            )
        if self.mean_image is not None and not bool(self.mean_image.isfinite().all()):
            raise ValueError("preprocess.mean_image holds non-finite values")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        """Build from a checkpoint's `preprocess` dict; unknown keys are kept in `extra`."""
        known = {
            "image_size",
            "crop_size",
            "in_chans",
            "normalize",
            "classes",
            "mean_image",
            "mean",
            "std",
            "resize",
        }
        missing = {"image_size", "crop_size", "in_chans", "normalize"} - set(d)
        if missing:
            raise ValueError(f"preprocess is missing {sorted(missing)}")
        kwargs = {k: d[k] for k in known if k in d}
        kwargs.setdefault("classes", [])
        kwargs["classes"] = list(kwargs["classes"] or [])
        for key in ("mean", "std"):
            if kwargs.get(key) is not None:
                kwargs[key] = [float(v) for v in torch.as_tensor(kwargs[key]).flatten()]
        return cls(**kwargs, extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self, *, tensors: bool = True) -> dict[str, Any]:
        """The checkpoint form; `tensors=False` leaves out the mean image (for JSON headers)."""
        d: dict[str, Any] = dict(self.extra)
        d.update(
            image_size=self.image_size,
            crop_size=self.crop_size,
            in_chans=self.in_chans,
            normalize=self.normalize,
            classes=list(self.classes),
        )
        if self.resize != "shorter":  # files written before the field existed read as shorter
            d["resize"] = self.resize
        if self.normalize == "channel":
            d.update(mean=list(self.mean or []), std=list(self.std or []))
        elif tensors:
            d["mean_image"] = self.mean_image
        return d

    def image_tensor(self, img: np.ndarray) -> torch.Tensor:
        """uint8 HWC RGB (any size) -> normalised float32 CHW at image_size x image_size."""
        if self.in_chans == 1 and img.ndim == 3 and img.shape[2] == 3:
            # ITU-R 601 luma, the formula PIL's convert("L") uses.
            img = np.rint(img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
            img = img.astype(np.uint8)[:, :, None]
        if self.resize == "warp":
            img = resize_warp(img, self.image_size)
        else:
            img = resize_center_crop(img, self.image_size)
        if img.ndim == 2:
            img = img[:, :, None]
        x = torch.tensor(img, dtype=torch.float32)  # (H, W, C), 0-255 scale
        if self.normalize == "mean_image":
            assert self.mean_image is not None
            x = x - self.mean_image  # per pixel, before cropping: every crop gets its region
        else:
            x = (x - torch.tensor(self.mean)) / torch.tensor(self.std)
        return x.permute(2, 0, 1).contiguous()

    def model_view(self, img: np.ndarray) -> torch.Tensor:
        """image_tensor, upscaled to crop_size when the weights were trained on images stored
        smaller than the model's input (crop_size > image_size: fed whole, as in training)."""
        x = self.image_tensor(img)
        if self.crop_size > self.image_size:
            x = upscale(x, self.crop_size)
        return x

    def center(self, img: np.ndarray) -> torch.Tensor:
        """The single centre crop, (C, crop, crop)."""
        return center_crop(self.model_view(img), self.crop_size)

    def ten_crop(self, img: np.ndarray) -> torch.Tensor:
        """The paper's ten test patches (section 4.1), (10, C, crop, crop)."""
        return ten_crop(self.model_view(img), self.crop_size)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Central size x size patch of a (..., H, W) tensor (offsets floor((H - size) / 2))."""
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def ten_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Four corners, centre, and the horizontal reflections of all five: (10, C, size, size)."""
    h, w = x.shape[-2:]
    crops = [
        x[..., :size, :size],
        x[..., :size, w - size :],
        x[..., h - size :, :size],
        x[..., h - size :, w - size :],
        center_crop(x, size),
    ]
    five = torch.stack(crops)
    return torch.cat([five, five.flip(-1)])
