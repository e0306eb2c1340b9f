"""Realistic JPEGs for tests and benchmarks, cut from the real photographs in scikit-image.

Each image is a random crop (40-100% of the photo's shorter side, 4:3 or 3:4) of one of the
colour photos shipped in `skimage.data`, resized to about 500x375 (ImageNet's typical size),
randomly reflected and saved at JPEG quality 90 with 4:2:0 chroma (like most camera files), so
decoding costs what it costs on ImageNet. Deterministic for a seed. scikit-image is a dev extra:
without it (the runtime install, so `alexnet bench` still runs) the photos are procedural ones
(smooth colour fields, texture at two scales and pixel noise, `procedural_photo`), which JPEG
codes at a photo-like size; `photo_source()` says which.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_NAMES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
)


def procedural_photo(index: int, width: int = 768, height: int = 512) -> np.ndarray:
    """A deterministic photo-like (height, width, 3) uint8 image: no scikit-image needed."""
    rng = np.random.Generator(np.random.PCG64([0x9407, index]))

    def field(cells: tuple[int, int], scale: float) -> np.ndarray:
        small = rng.normal(0.0, 1.0, (*cells, 3)).astype(np.float32)
        channels = [
            np.asarray(Image.fromarray(small[:, :, c], mode="F").resize((width, height), 3))
            for c in range(3)
        ]  # bicubic: smooth, like a scene's large shapes
        return scale * np.stack(channels, axis=2)

    base = rng.integers(40, 216, size=3).astype(np.float32)
    img = base + field((4, 6), 60.0) + field((24, 36), 25.0) + field((96, 144), 10.0)
    img += rng.normal(0.0, 6.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def photo_source() -> str:
    """'scikit-image' (real photographs) or 'procedural' (no scikit-image installed)."""
    try:
        import skimage.data  # noqa: F401
    except ImportError:
        return "procedural"
    return "scikit-image"


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
    try:
        import skimage.data
    except ImportError:
        return tuple(procedural_photo(i) for i in range(len(PHOTO_NAMES)))
    photos = []
    for name in PHOTO_NAMES:
        img = getattr(skimage.data, name)()
        img = img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, ...)
        photos.append(np.ascontiguousarray(img[:, :, :3]))
    return tuple(photos)


def random_photo(rng: np.random.Generator, width: int = 500, height: int = 375) -> np.ndarray:
    """One (height, width, 3) uint8 image (or width x height, portrait, 1 time in 4)."""
    photos = _photos()
    photo = photos[int(rng.integers(len(photos)))]
    if rng.random() < 0.25:
        width, height = height, width
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.4, 1.0) * min(ph / height, pw / width)
    ch, cw = max(8, int(height * scale)), max(8, int(width * scale))
    top, left = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    crop = Image.fromarray(photo[top : top + ch, left : left + cw])
    img = np.asarray(crop.resize((width, height), Image.BILINEAR))
    return np.ascontiguousarray(img[:, ::-1]) if rng.random() < 0.5 else img


def photo_jpeg(
    rng: np.random.Generator, width: int = 500, height: int = 375, quality: int = 90
) -> bytes:
    """JPEG bytes of `random_photo`."""
    buf = io.BytesIO()
    Image.fromarray(random_photo(rng, width, height)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def photo_jpegs(count: int, *, seed: int = 0, width: int = 500, height: int = 375) -> list[bytes]:
    """`count` different JPEGs (bytes), the same for the same seed."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return [photo_jpeg(rng, width, height) for _ in range(count)]


def write_photo_folder(
    root: str | Path,
    classes: int,
    per_class: int,
    *,
    seed: int = 0,
    width: int = 500,
    height: int = 375,
) -> list[Path]:
    """An image folder ROOT/class<k>/img<i>.JPEG of photo JPEGs; returns the files written."""
    root = Path(root)
    data = photo_jpegs(classes * per_class, seed=seed, width=width, height=height)
    paths = []
    for k in range(classes):
        (root / f"class{k}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = root / f"class{k}" / f"img{i:05d}.JPEG"
            path.write_bytes(data[k * per_class + i])
            paths.append(path)
    return paths
