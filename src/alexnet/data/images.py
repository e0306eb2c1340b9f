"""Decoding one image into uint8 RGB, and the paper's rescale-and-crop (section 2).

Shared by `alexnet prepare` and `alexnet predict`, so training and inference see the same pixels.

Policies (chosen once, here):
- EXIF orientation is applied: a photo is stored the way it displays, as a viewer shows it.
- Grey, palette, CMYK and YCbCr images are converted to RGB; an alpha channel is composited over
  white (transparent pixels carry arbitrary colours that should not reach the net).
- 16-bit images are scaled to 8 bits (value / 257), not clipped at 255.
- Images of more than MAX_PIXELS (50 megapixels, after draft scaling) are refused before
  decoding, with a reason: a 20 KB PNG can claim 13000x13000 pixels (a decompression bomb).
- Big JPEGs are decoded with PIL's draft mode (DCT-domain downscaling by 1/2, 1/4 or 1/8) when the
  caller says which size it needs: the decoded shorter side stays at least that size, so the
  antialiased resize that follows still does the final step. This costs a few grey levels of
  difference against a full decode (see tests/test_data_images.py) and saves most of the time.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# A truncated file is an error, never a silently grey-padded image.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# The most pixels an image may decode to (after JPEG draft scaling): a 48-megapixel photo and
# far more than the net needs; decoding costs 3-8 bytes a pixel, so at most ~400 MB per image.
# Larger files (and any that makes PIL warn of a decompression bomb) are refused with a reason.
MAX_PIXELS = 50_000_000

PathOrBytes = str | os.PathLike | bytes | bytearray | memoryview


class ImageDecodeError(ValueError):
    """An image that cannot be decoded; the message names the file and the reason."""


def _describe(src: PathOrBytes) -> str:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    return str(src)


def _to_uint8_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL mode to an (H, W, 3) uint8 array, following the module's policies."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im).astype(np.float64)
        grey = np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8)  # 16-bit range to 8
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode == "F":
        grey = np.clip(np.round(np.asarray(im)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "RGBa"):
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im.convert("RGBA"))
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def load_image(src: PathOrBytes, *, draft_size: int | None = None) -> np.ndarray:
    """Decode a file path or encoded bytes into an (H, W, 3) uint8 RGB array.

    `draft_size`: the shorter side the caller will resize to; JPEGs much larger than that are
    decoded at a reduced DCT scale that keeps the shorter side >= draft_size.
    Raises ImageDecodeError naming the file for unreadable, truncated or empty input.
    """
    name = _describe(src)
    try:
        if isinstance(src, (bytes, bytearray, memoryview)):
            if len(src) == 0:
                raise ImageDecodeError(f"{name}: empty file (zero bytes)")
            handle = io.BytesIO(bytes(src))
        else:
            if os.path.getsize(src) == 0:
                raise ImageDecodeError(f"{name}: empty file (zero bytes)")
            handle = open(src, "rb")  # noqa: SIM115 - closed below
        with handle, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(handle) as im:
                if draft_size is not None and im.format == "JPEG":
                    im.draft(im.mode, (draft_size, draft_size))
                _check_pixels(name, im)
                im.load()
            im = ImageOps.exif_transpose(im)
            return _to_uint8_rgb(im)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"{name}: not an image PIL can identify") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        limit = f"over the limit of {MAX_PIXELS / 1e6:g} megapixels"
        raise ImageDecodeError(f"{name}: refused, {limit} ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{name}: cannot decode ({exc})") from exc
    except MemoryError as exc:
        raise ImageDecodeError(f"{name}: cannot decode (out of memory)") from exc


def _check_pixels(name: str, im: Image.Image) -> None:
    """Refuse an image whose decoded size exceeds MAX_PIXELS, before decoding it."""
    width, height = im.size
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(
            f"{name}: refused, {width}x{height} is {width * height / 1e6:.1f} megapixels, over "
            f"the limit of {MAX_PIXELS / 1e6:g} (a decompression bomb, or a scan too big to "
            "decode here)"
        )


def resize_center_crop(img: np.ndarray, size: int, keep_aspect: bool = False) -> np.ndarray:
    """Rescale so the shorter side is `size`, then take the central size x size (section 2).

    Works on (H, W, C) uint8 arrays with C = 1 or 3 (or (H, W) grey, returned as (H, W, 1)).
    The resize is PIL's antialiased bilinear filter. With `keep_aspect` the whole rescaled image
    is returned (shorter side = size), for stores that crop later.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3) or img.dtype != np.uint8:
        raise ValueError(f"expected uint8 (H, W, 1|3), got {img.dtype} {img.shape}")
    h, w, c = img.shape
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        pil = Image.fromarray(img[:, :, 0] if c == 1 else img)
        img = np.asarray(pil.resize((new_w, new_h), Image.BILINEAR), dtype=np.uint8)
        img = img.reshape(new_h, new_w, c)
    if keep_aspect:
        return np.ascontiguousarray(img)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def resize_warp(img: np.ndarray, size: int) -> np.ndarray:
    """Squeeze the whole image to size x size, aspect ignored (Caffe's ImageNet preprocessing).

    Same filter and array conventions as `resize_center_crop`.
    """
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    if (h, w) == (size, size):
        return np.ascontiguousarray(img)
    pil = Image.fromarray(img[:, :, 0] if c == 1 else img)
    warped = np.array(pil.resize((size, size), Image.BILINEAR), dtype=np.uint8)  # writable
    return warped.reshape(size, size, c)


def encode_jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an (H, W, 1|3) uint8 image, no chroma subsampling (4:4:4)."""
    pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def decode_stored_jpeg(data: bytes | memoryview, channels: int) -> np.ndarray:
    """Decode bytes written by `encode_jpeg` back to (H, W, channels) uint8, no policy applied."""
    with Image.open(io.BytesIO(bytes(data))) as im:
        arr = np.asarray(im, dtype=np.uint8)
    return arr.reshape(arr.shape[0], arr.shape[1], channels)


def is_image_file(path: Path) -> bool:
    """Whether a file name looks like an image we try to decode (extension, case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
)
