"""The prepared store: one directory per split, memory-mapped, random access by index.

Layout of `OUT/<split>/`:
  meta.json    format, version, count, classes, class_names, image_size, channels, encoding
  labels.npy   int64 (N,)
  offsets.npy  int64 (N + 1,): image i is data.bin[offsets[i]:offsets[i + 1]]
  shapes.npy   int32 (N, 3): (H, W, C) of image i (all size x size x C unless keep_aspect)
  data.bin     the images back to back: raw uint8 in planar CHW order, or JPEG bytes
  files.txt    the source file of each image, one per line (for figures and debugging)
  stats.npz    train split only: mean image, channel mean/std, RGB covariance and PCA
  rejects.tsv  files of this split that were not stored, with the reason
`meta.json` is written last and the directory is renamed into place when complete, so a store
directory with a meta.json is always whole.

Encoding, chosen by measurement (`python -m alexnet.bench.loader`, 256x256 stores of ~500x375
photo JPEGs, one core, the loader's full training augmentation included): raw 0.76-0.90 ms per
image against 2.86-3.39 ms when the store holds JPEG q95 4:4:4 (decoding dominates: ~4x), but raw
takes 197 kB per image on disk against 28 kB (7x). `auto` therefore picks raw while the split
stays under `RAW_LIMIT_BYTES` (32 GiB: CIFAR-10, Fashion-MNIST and ~170k images at 256x256) and
JPEG above it, where disk and page cache run out first (ImageNet's 1.28M images at 256x256:
~250 GB raw, ~36 GB JPEG); `alexnet prepare --encoding` overrides it. (Times taken on a
2-core machine at load average ~9: absolute times run ~4x below that unloaded.)
Raw images are planar (C, H, W): the loader's crops then read contiguous rows and
convert to the model's NCHW layout without a transpose (measured ~1.6x cheaper per crop);
`image()` still returns the (H, W, C) view the rest of the code expects.
"""

from __future__ import annotations

import contextlib
import json
import os
from abc import abstractmethod
from pathlib import Path
from typing import Protocol

import numpy as np

from alexnet.data.images import decode_stored_jpeg
from alexnet.data.stats import DataStats

FORMAT, VERSION = "alexnet-store", 2  # 2: raw images stored planar (C, H, W)
RAW_LIMIT_BYTES = 32 * 2**30


def choose_encoding(encoding: str, count: int, size: int, channels: int) -> str:
    """'raw' or 'jpeg' for `encoding` in {'auto', 'raw', 'jpeg'} (see the module docstring)."""
    if encoding not in ("auto", "raw", "jpeg"):
        raise ValueError(f"encoding must be auto, raw or jpeg, got {encoding!r}")
    if encoding != "auto":
        return encoding
    return "raw" if count * size * size * channels <= RAW_LIMIT_BYTES else "jpeg"


def printable_name(name: str) -> str:
    """`name` as valid UTF-8 text: a file name's bytes that are no UTF-8 (read by Python as
    lone surrogates) become backslash escapes: the bytes `bad<0xff>.jpg` become `bad\\xff.jpg`."""
    try:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    except UnicodeError:
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


class StoreWriter:
    """Appends encoded images to `directory/data.bin`; `finish` writes the index and meta."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._data = open(directory / "data.bin", "wb")  # noqa: SIM115 - closed in finish
        self.offsets, self.shapes, self.labels, self.files = [0], [], [], []

    def append(self, data: bytes, shape: tuple[int, int, int], label: int, file: str) -> None:
        self._data.write(data)
        self.offsets.append(self.offsets[-1] + len(data))
        self.shapes.append(shape)
        self.labels.append(label)
        self.files.append(printable_name(file))

    def finish(self, meta: dict, stats: DataStats | None) -> None:
        """Write the index, the statistics and finally meta.json (the completeness marker)."""
        self._data.close()
        d = self.directory
        np.save(d / "offsets.npy", np.asarray(self.offsets, np.int64))
        np.save(d / "shapes.npy", np.asarray(self.shapes, np.int32).reshape(-1, 3))
        np.save(d / "labels.npy", np.asarray(self.labels, np.int64))
        files = "".join(f.replace("\n", " ") + "\n" for f in self.files)
        (d / "files.txt").write_text(files, encoding="utf-8")
        if stats is not None:
            stats.save(d / "stats.npz")
        meta = {"format": FORMAT, "version": VERSION, "count": len(self.labels), **meta}
        tmp = d / "meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, d / "meta.json")

    def abort(self) -> None:
        with contextlib.suppress(OSError):  # a full disk fails the final flush too
            self._data.close()


def store_version(directory: Path) -> int | None:
    """The version a store's meta.json names (None where there is no alexnet store)."""
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta.get("version") if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def is_complete(directory: Path) -> bool:
    """Whether `directory` holds a finished store of this version (meta.json is written last).

    A store of another version counts as incomplete, so `ensure_prepared` prepares it anew
    rather than reading its bytes in the wrong layout.
    """
    return store_version(directory) == VERSION


class Store(Protocol):
    """What the loader reads of a prepared split: an `ImageStore`, or a part of one (the train
    split's held-out val part, alexnet.train.data.StoreSubset). Implementations subclass it, so
    that one missing a method cannot be built (the methods are abstract)."""

    path: Path
    labels: np.ndarray  # int64 (N,)
    shapes: np.ndarray  # int32 (N, 3): (H, W, C) of each image
    channels: int
    stats: DataStats | None  # the train split's statistics (None for other splits)

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def image_chw(self, index: int) -> np.ndarray:
        """Image `index` as (C, H, W) uint8."""

    @abstractmethod
    def uniform_size(self) -> int | None:
        """The side S when `images_chw` can gather any batch at once, else None."""

    @abstractmethod
    def images_chw(self, indices: np.ndarray) -> np.ndarray:
        """Images `indices` as one (N, C, S, S) uint8 array (only when uniform_size() is S)."""

    @abstractmethod
    def release(self) -> None:
        """Drop what the reads mapped (the loader calls it after each batch: bounded RSS)."""


# The fields every store's meta.json holds, with their types (a damaged or hand-edited file is
# named with the field it lacks, instead of failing later with a bare KeyError)
META_FIELDS: dict[str, type | tuple[type, ...]] = {
    "count": int, "classes": list, "image_size": int, "channels": int, "encoding": str,
}  # fmt: skip


def read_meta(path: Path) -> dict:
    """A store's meta.json as a dict, or a ValueError naming the file and what is wrong."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path}: not JSON ({err}): the store is damaged, prepare it again"
        ) from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: not a JSON object: the store is damaged, prepare it again")
    if meta.get("format") == FORMAT and meta.get("version") == VERSION:
        for key, kind in META_FIELDS.items():
            if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
                raise ValueError(
                    f"{path}: {key!r} is missing or not {getattr(kind, '__name__', kind)}: "
                    "the store is damaged, prepare it again"
                )
    return meta


class ImageStore(Store):
    """Random access to one prepared split: `store[i] -> (uint8 HWC image, label)`.

    The image data is memory-mapped on first use (per process: safe to pass to workers), so
    opening a 30 GB store costs only its index.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not (self.path / "meta.json").is_file():
            splits = [p.name for p in self.path.glob("*") if is_complete(p)]
            hint = f"; it holds the splits {splits}" if splits else ""
            raise FileNotFoundError(
                f"{self.path}: not a complete prepared store (no meta.json){hint}; "
                "run `alexnet prepare SRC OUT` and open OUT/<split>"
            )
        self.meta = read_meta(self.path / "meta.json")
        if self.meta.get("format") != FORMAT or self.meta.get("version") != VERSION:
            raise ValueError(
                f"{self.path}: store format {self.meta.get('format')} version "
                f"{self.meta.get('version')} is not {FORMAT} version {VERSION}; prepare it again"
            )
        self.labels: np.ndarray = np.load(self.path / "labels.npy", allow_pickle=False)
        self.offsets: np.ndarray = np.load(self.path / "offsets.npy", allow_pickle=False)
        self.shapes: np.ndarray = np.load(self.path / "shapes.npy", allow_pickle=False)
        size = (self.path / "data.bin").stat().st_size
        if size != int(self.offsets[-1]) or len(self.labels) != self.meta["count"]:
            raise ValueError(
                f"{self.path}: data.bin holds {size} bytes but the index expects "
                f"{int(self.offsets[-1])}: the store is damaged, prepare it again"
            )
        stats_path = self.path / "stats.npz"
        self.stats: DataStats | None = DataStats.load(stats_path) if stats_path.is_file() else None
        self.classes: list[str] = list(self.meta["classes"])
        self.class_names: list[str] = list(self.meta.get("class_names") or self.classes)
        self.image_size: int = int(self.meta["image_size"])
        self.channels: int = int(self.meta["channels"])
        self.encoding: str = self.meta["encoding"]
        self._data: np.ndarray | None = None
        self._pid = -1
        self._uniform: int | None = None  # uniform_size(), computed on first use (0: not)

    def __len__(self) -> int:
        return len(self.labels)

    def _buffer(self) -> np.ndarray:
        if self._data is None or self._pid != os.getpid():
            if int(self.offsets[-1]) == 0:
                self._data = np.zeros(0, np.uint8)
            else:
                self._data = np.memmap(self.path / "data.bin", dtype=np.uint8, mode="r")
            self._pid = os.getpid()
        return self._data

    def image_chw(self, index: int) -> np.ndarray:
        """Image `index` as (C, H, W) uint8: a read-only view of the map for raw stores."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.path} ({len(self)} images)")
        index %= len(self)
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        chunk = self._buffer()[start:end]
        h, w, c = (int(v) for v in self.shapes[index])
        if self.encoding == "raw":
            return chunk.reshape(c, h, w)
        return decode_stored_jpeg(chunk, self.channels).transpose(2, 0, 1)

    def uniform_size(self) -> int | None:
        """The side of every image when the store is raw and all images are that square size,
        packed back to back (so that a batch is one gather); None otherwise."""
        if self._uniform is None:
            self._uniform = self._square_packed_side()
        return self._uniform or None

    def _square_packed_side(self) -> int:
        """uniform_size()'s test, once: 0 where it does not hold."""
        if self.encoding != "raw" or not len(self):
            return 0
        h, w, c = (int(v) for v in self.shapes[0])
        step = h * w * c
        if h != w or step == 0 or not np.all(self.shapes == self.shapes[0]):
            return 0
        packed = np.array_equal(self.offsets, np.arange(len(self) + 1, dtype=np.int64) * step)
        return h if packed else 0

    def images_chw(self, indices: np.ndarray) -> np.ndarray:
        """Images `indices` as one (N, C, S, S) uint8 array, for a store of uniform_size S."""
        size = self.uniform_size()
        if size is None:
            raise ValueError(f"{self.path}: images_chw needs a raw store of one square size")
        frames = self._buffer().reshape(len(self), self.channels, size, size)
        return frames[np.asarray(indices)]

    def image(self, index: int) -> np.ndarray:
        """Image `index` as (H, W, C) uint8 (a view for raw stores)."""
        return self.image_chw(index).transpose(1, 2, 0)

    def release(self) -> None:
        """Unmap the data file; the next read maps it again. The loader calls this after each
        batch so that pages it touched leave this process's resident set (bounded RSS)."""
        self._data, self._pid = None, -1

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.image(index), int(self.labels[index])

    @property
    def files(self) -> list[str]:
        """The source file of each image (read on demand: large for big sets)."""
        return (self.path / "files.txt").read_text().splitlines()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_data"], state["_pid"] = None, -1  # each process maps the file itself
        return state


def open_store(path: str | os.PathLike) -> ImageStore:
    """Open one prepared split directory `OUT/<split>`."""
    return ImageStore(path)
