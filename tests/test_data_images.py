"""Decoding policies and the paper's rescale + centre crop, on real photos (scikit-image)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from alexnet.data.images import ImageDecodeError, load_image, resize_center_crop

pytest.importorskip("skimage")
from alexnet.data.photos import photo_jpeg, random_photo


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return random_photo(np.random.Generator(np.random.PCG64(3)))


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_png_roundtrip_is_exact(photo: np.ndarray, tmp_path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(photo).save(path)
    np.testing.assert_array_equal(load_image(path), photo)
    np.testing.assert_array_equal(load_image(path.read_bytes()), photo)


def test_grey_and_cmyk_become_rgb(photo: np.ndarray) -> None:
    grey = load_image(_encode(Image.fromarray(photo).convert("L"), "PNG"))
    assert grey.shape == photo.shape and grey.dtype == np.uint8
    np.testing.assert_array_equal(grey[:, :, 0], grey[:, :, 2])
    cmyk = load_image(_encode(Image.fromarray(photo).convert("CMYK"), "JPEG", quality=95))
    assert cmyk.shape == photo.shape
    assert np.abs(cmyk.astype(int) - photo).mean() < 6  # JPEG loss only, colours not inverted


def test_16bit_png_is_scaled_not_clipped(tmp_path) -> None:
    values = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    img = load_image(path)
    np.testing.assert_array_equal(img[:, :, 1], np.round(values / 257.0).astype(np.uint8))
    assert img.max() == 255 and img.min() == 0


def test_alpha_composited_over_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:, :2] = (255, 0, 0, 255)  # opaque red left, fully transparent black right
    img = load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(img[0, 0], (255, 0, 0))
    np.testing.assert_array_equal(img[0, 3], (255, 255, 255))


def test_exif_orientation_is_applied(photo: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = _encode(Image.fromarray(photo), "JPEG", quality=95, exif=exif.tobytes())
    img = load_image(data)
    assert img.shape == (photo.shape[1], photo.shape[0], 3)
    rotated = np.rot90(photo, k=-1)
    assert np.abs(img.astype(int) - rotated).mean() < 4


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty"), (b"hello, not an image\n", "identify"), (None, "decode")],
)
def test_bad_input_names_the_file(photo: np.ndarray, tmp_path, data, message) -> None:
    if data is None:  # a JPEG cut in half
        data = _encode(Image.fromarray(photo), "JPEG")[:4000]
    path = tmp_path / "bad.JPEG"
    path.write_bytes(data)
    with pytest.raises(ImageDecodeError, match=message) as info:
        load_image(path)
    assert "bad.JPEG" in str(info.value)


def test_draft_decode_close_to_full_decode() -> None:
    """DCT-scaled decoding of a big JPEG then resizing to 256 stays within a few grey levels
    of a full decode resized the same way (the reason it is allowed in prepare)."""
    data = photo_jpeg(np.random.Generator(np.random.PCG64(0)), 1200, 900, quality=95)
    full = resize_center_crop(load_image(data), 256)
    draft = resize_center_crop(load_image(data, draft_size=256), 256)
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (256, 256))
        assert min(im.size) < 900 and min(im.size) >= 256  # draft really reduced the decode
    diff = np.abs(full.astype(int) - draft)
    assert diff.mean() < 2.0 and np.percentile(diff, 99) < 12


def test_resize_center_crop_geometry() -> None:
    # columns numbered 0..599 (as grey levels / 3) so the crop's position is checkable
    cols = np.tile((np.arange(600) * 255 // 599).astype(np.uint8), (300, 1))
    img = np.repeat(cols[:, :, None], 3, axis=2)
    out = resize_center_crop(img, 100)
    assert out.shape == (100, 100, 3)
    # shorter side 300 -> 100 means x3 reduction: the central 300 source columns (150..449)
    assert abs(int(out[50, 0, 0]) - 150 * 255 // 599) <= 2
    assert abs(int(out[50, 99, 0]) - 449 * 255 // 599) <= 2
    kept = resize_center_crop(img, 100, keep_aspect=True)
    assert kept.shape == (100, 200, 3)
    grey = resize_center_crop(np.zeros((28, 28), np.uint8), 32)
    assert grey.shape == (32, 32, 1)
    same = np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
    np.testing.assert_array_equal(resize_center_crop(same, 64), same)
    with pytest.raises(ValueError, match="uint8"):
        resize_center_crop(np.zeros((4, 4, 3), np.float32), 2)
