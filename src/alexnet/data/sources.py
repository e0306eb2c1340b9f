"""Where images come from: a spec string resolved into splits of (reader, labels, class names).

Specs accepted by `resolve`:
- `fashion-mnist` (the Debian package's IDX files) or a directory holding `*-idx3-ubyte[.gz]`;
- `cifar10` (the shared zip) or a zip laid out `[prefix/]<split>/<class>/<file>`;
- an image folder `ROOT/<class>/*` (one split, `train`), or `ROOT/{train,val,test}/<class>/*`;
- the ILSVRC-2012 layout: `ROOT/train/<synset>/*` and `ROOT/val/` as class folders or flat with a
  ground-truth file in ROOT (`LOC_val_solution.csv`, or `val.txt`/`val_labels.txt` with lines
  `FILE SYNSET` or `FILE INDEX`, INDEX 0-based in sorted synset order), and optionally a synset
  list with names (`LOC_synset_mapping.txt` or `synset_words.txt`: `n01440764 tench, Tinca tinca`);
- `synthetic:N[:SIZE[:CLASSES]]`: N training and N // 5 validation images, SIZE x SIZE RGB,
  CLASSES classes, each class a distinct mean colour plus noise (learnable, for smoke tests).
Class index = sorted folder / synset order (the standard ILSVRC 0-999 order).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from alexnet.data.images import ImageDecodeError, is_image_file, load_image

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
SPLIT_NAMES = ("train", "val", "test")
_IDX_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}


class Reader(Protocol):
    """Reads sample i of a split as an (H, W, C) uint8 array; raises ImageDecodeError."""

    def __call__(self, index: int, draft_size: int | None = None) -> np.ndarray: ...


@dataclass
class Split:
    """One split of a source: per-sample ids (file names, for the rejects manifest) and labels."""

    name: str
    ids: list[str]
    labels: np.ndarray
    read: Reader


@dataclass
class Source:
    """A resolved data source: its splits and class list (index order)."""

    spec: str
    classes: list[str]
    splits: dict[str, Split]
    class_names: list[str] = field(default_factory=list)
    fingerprint: str = ""
    # {split: [(path, reason)]}: paths of the source that are no sample (broken links, loops,
    # unlistable folders...), reported in the rejects manifest beside the undecodable files
    skipped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


class SourceError(ValueError):
    """A source spec that cannot be resolved; the message names the path and what was expected."""


@dataclass
class FileReader:
    root: Path
    ids: list[str]

    def __call__(self, index: int, draft_size: int | None = None) -> np.ndarray:
        return load_image(self.root / self.ids[index], draft_size=draft_size)


@dataclass
class ZipReader:
    """Reads members of a zip; each process opens its own handle (safe after fork)."""

    path: Path
    ids: list[str]
    _handle: zipfile.ZipFile | None = None
    _pid: int = -1

    def __call__(self, index: int, draft_size: int | None = None) -> np.ndarray:
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = zipfile.ZipFile(self.path), os.getpid()
        data = self._handle.read(self.ids[index])
        try:
            return load_image(data, draft_size=draft_size)
        except ImageDecodeError as exc:
            raise ImageDecodeError(f"{self.path}:{self.ids[index]}: {exc}") from exc

    def __getstate__(self) -> dict:
        return {"path": self.path, "ids": self.ids, "_handle": None, "_pid": -1}


@dataclass
class ArrayReader:
    images: np.ndarray  # (N, H, W, C) uint8

    def __call__(self, index: int, draft_size: int | None = None) -> np.ndarray:
        return self.images[index]


@dataclass
class SyntheticReader:
    """Class-coloured noise images: the same (split, index) always gives the same pixels."""

    size: int
    labels: np.ndarray
    split_seed: int

    def __call__(self, index: int, draft_size: int | None = None) -> np.ndarray:
        rng = np.random.Generator(np.random.PCG64([self.split_seed, index]))
        label = int(self.labels[index])
        colour = np.random.Generator(np.random.PCG64([7, label])).integers(40, 216, size=3)
        noise = rng.normal(0.0, 40.0, size=(self.size, self.size, 3))
        return np.clip(colour + noise, 0, 255).astype(np.uint8)


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format), optionally gzip'd, as a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise SourceError(f"{path}: not a uint8 IDX file (bad magic {data[:4]!r})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise SourceError(f"{path}: IDX header says {dims} but holds {body.size} values")
    return body.reshape(dims)


def _find_idx(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    return None


def idx_source(root: Path) -> Source:
    """Fashion-MNIST / MNIST IDX files in `root`: splits train and test, one channel."""
    splits, classes = {}, None
    for split, stem in _IDX_FILES.items():
        images_path = _find_idx(root, stem)
        labels_path = _find_idx(root, stem.replace("images-idx3", "labels-idx1"))
        if images_path is None or labels_path is None:
            continue
        images, labels = _read_idx(images_path), _read_idx(labels_path).astype(np.int64)
        if len(images) != len(labels):
            raise SourceError(f"{images_path}: {len(images)} images but {len(labels)} labels")
        ids = [f"{images_path.name}#{i}" for i in range(len(images))]
        splits[split] = Split(split, ids, labels, ArrayReader(images[:, :, :, None]))
        classes = max(classes or 0, int(labels.max()) + 1)
    if not splits:
        raise SourceError(f"{root}: no IDX files ({', '.join(_IDX_FILES.values())}[.gz])")
    if "fashion" in str(root).lower() and classes == 10:
        names = list(FASHION_MNIST_CLASSES)
    else:
        names = [str(i) for i in range(classes)]
    return Source(str(root), names, splits, names, _fingerprint(root))


def zip_source(path: Path) -> Source:
    """A zip laid out `[prefix/]<split>/<class>/<file>` (the CIFAR-10 JPEG zip)."""
    with zipfile.ZipFile(path) as zf:
        members = [n for n in zf.namelist() if not n.endswith("/")]
    by_split: dict[str, list[tuple[str, str]]] = {}
    for member in members:
        parts = member.split("/")
        if len(parts) < 3 or parts[-3] not in SPLIT_NAMES:
            continue
        by_split.setdefault(parts[-3], []).append((parts[-2], member))
    if not by_split:
        raise SourceError(f"{path}: no members laid out <split>/<class>/<file>")
    classes = _check_classes(path, {s: {c for c, _ in v} for s, v in by_split.items()})
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, items in by_split.items():
        items.sort(key=lambda item: (index[item[0]], item[1]))
        ids = [m for _, m in items]
        labels = np.array([index[c] for c, _ in items], dtype=np.int64)
        splits[split] = Split(split, ids, labels, ZipReader(path, ids))
    return Source(str(path), classes, splits, classes, _fingerprint(path))


def _check_classes(where: Path, per_split: dict[str, set[str]]) -> list[str]:
    """The sorted class list; every split must have the same classes (no silent relabelling)."""
    sets = list(per_split.items())
    first_split, first = sets[0]
    for split, names in sets[1:]:
        if names != first:
            extra, missing = sorted(names - first)[:5], sorted(first - names)[:5]
            raise SourceError(
                f"{where}: classes of split '{split}' differ from '{first_split}' "
                f"(only in {split}: {extra}; missing from {split}: {missing})"
            )
    return sorted(first)


def _entries(folder: Path, root: Path, skipped: list[tuple[str, str]]) -> list[os.DirEntry]:
    """The entries of `folder` sorted by name; [] and a skipped row when it cannot be listed."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as err:
        skipped.append((_rel(folder, root) + "/", f"cannot list the folder ({err.strerror})"))
        return []


def _rel(path: Path | str, root: Path) -> str:
    return os.path.relpath(path, root)


def _class_files(class_dir: Path, root: Path, skipped: list[tuple[str, str]]) -> list[str]:
    """Every file below `class_dir` (relative to `root`); links to files are kept, links to
    folders are not followed and broken links, unlistable folders and special files are
    skipped, each with a row in `skipped`."""
    files, todo = [], [class_dir]
    while todo:
        for entry in _entries(todo.pop(), root, skipped):
            rel = _rel(entry.path, root)
            if entry.is_symlink():
                if not os.path.exists(entry.path):
                    skipped.append((rel, f"broken link (to {os.readlink(entry.path)})"))
                elif entry.is_dir():
                    skipped.append((rel, "link to a folder inside a class: not followed"))
                else:
                    files.append(rel)
            elif entry.is_dir(follow_symlinks=False):
                todo.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                files.append(rel)
            else:
                skipped.append((rel, "not a regular file (a pipe, socket or device)"))
    return sorted(files)


def _overlap(a: Path, b: Path) -> bool:
    """Whether folders `a` and `b` (resolved) are one, or one holds the other."""
    return a == b or a in b.parents or b in a.parents


def _list_class_folder(root: Path, skipped: list[tuple[str, str]]) -> dict[str, list[str]]:
    """{class: sorted file names relative to root} for ROOT/<class>/<files> (recursive).

    Hidden folders (.ipynb_checkpoints) are not classes. A class folder may be a link (a farm
    of links to the real folders), but not one that leads back to the root or an ancestor of it
    (a loop) or to the images of another class (duplicates). Everything skipped gets a row
    (path, reason) in `skipped` (only meaningful when classes are found)."""
    entries = _entries(root, root, skipped)
    real_root = root.resolve()
    claimed: dict[Path, str] = {}
    out = {}
    # real folders first, so that a link is the one refused when both name the same images
    for entry in sorted(entries, key=lambda e: (e.is_symlink(), e.name)):
        rel = _rel(entry.path, root)
        if not entry.is_dir():  # follows links: a link to a folder is a candidate class
            why = "broken link" if entry.is_symlink() and not os.path.exists(entry.path) else ""
            skipped.append((rel, why or "a file beside the class folders: in no class"))
            continue
        if entry.name.startswith("."):
            skipped.append((rel + "/", "hidden folder: not a class"))
            continue
        real = Path(entry.path).resolve()
        if real == real_root or real in real_root.parents:
            skipped.append((rel, f"link to {os.readlink(entry.path)}: a loop back to the source"))
            continue
        twin = next((c for c in claimed if _overlap(c, real)), None)
        if twin is not None:
            skipped.append((rel, f"link to the images of class {claimed[twin]!r}: duplicates"))
            continue
        claimed[real] = entry.name
        out[entry.name] = _class_files(Path(entry.path), root, skipped)
    return dict(sorted(out.items()))


def _read_val_ground_truth(root: Path, classes: list[str]) -> dict[str, int]:
    """{file name: label} for a flat ILSVRC val folder, from the ground-truth file in `root`."""
    index = {c: i for i, c in enumerate(classes)}
    solution = root / "LOC_val_solution.csv"
    if solution.is_file():
        with open(solution, newline="") as f:
            rows = list(csv.reader(f))[1:]  # ImageId,PredictionString "n01751748 x y x y ..."
        return {r[0]: index[r[1].split()[0]] for r in rows if r and r[1].split()[0] in index}
    for name in ("val_labels.txt", "val.txt"):
        path = root / name
        if path.is_file():
            truth = {}
            for line_no, line in enumerate(path.read_text().splitlines(), 1):
                parts = line.split()
                if len(parts) < 2:
                    continue
                token = parts[1]
                if token in index:
                    truth[Path(parts[0]).stem] = index[token]
                elif token.isdigit() and int(token) < len(classes):
                    truth[Path(parts[0]).stem] = int(token)  # 0-based sorted order (Caffe)
                else:
                    raise SourceError(f"{path}:{line_no}: unknown label {token!r}")
            return truth
    raise SourceError(
        f"{root / 'val'} is flat but {root} holds no ground truth "
        "(LOC_val_solution.csv, val_labels.txt or val.txt mapping FILE to SYNSET)"
    )


def _read_synset_names(root: Path, classes: list[str]) -> list[str]:
    for name in ("LOC_synset_mapping.txt", "synset_words.txt"):
        path = root / name
        if path.is_file():
            names = {}
            for line in path.read_text().splitlines():
                synset, _, words = line.strip().partition(" ")
                names[synset] = words.strip() or synset
            return [names.get(c, c) for c in classes]
    return list(classes)


def folder_source(root: Path) -> Source:
    """An image folder (`ROOT/<class>/*`) or split folders (`ROOT/train|val|test/...`)."""
    split_dirs = {s: root / s for s in SPLIT_NAMES if (root / s).is_dir()}
    if not split_dirs:
        split_dirs = {"train": root}
    listed, flat, skipped = {}, {}, {}
    for split, folder in split_dirs.items():
        rows: list[tuple[str, str]] = []
        per_class = _list_class_folder(folder, rows)
        if per_class:
            listed[split], skipped[split] = per_class, rows
            empty = [c for c, files in per_class.items() if not files]
            if empty:
                why = [f"{f}: {r}" for f, r in rows if f.split("/")[0] == empty[0]][:2]
                raise SourceError(
                    f"{folder / empty[0]}: a class folder with no files"
                    + (f" ({'; '.join(why)})" if why else "")
                    + (f", and {len(empty) - 1} more such classes" if len(empty) > 1 else "")
                )
        else:
            flat[split] = sorted(p.name for p in folder.iterdir() if p.is_file())
    if not listed:
        raise SourceError(f"{root}: no class folders (expected ROOT/<class>/<image files>)")
    classes = _check_classes(root, {s: set(v) for s, v in listed.items()})
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, per_class in listed.items():
        ids = [f for c in classes for f in per_class[c]]
        labels = np.array([index[c] for c in classes for _ in per_class[c]], dtype=np.int64)
        splits[split] = Split(split, ids, labels, FileReader(split_dirs[split], ids))
    for split, files in flat.items():
        truth = _read_val_ground_truth(root, classes)
        files = [f for f in files if is_image_file(Path(f)) or Path(f).stem in truth]
        missing = [f for f in files if Path(f).stem not in truth]
        if missing:
            raise SourceError(f"{split_dirs[split]}: no ground-truth label for {missing[:5]}")
        labels = np.array([truth[Path(f).stem] for f in files], dtype=np.int64)
        splits[split] = Split(split, files, labels, FileReader(split_dirs[split], files))
    names = _read_synset_names(root, classes)
    return Source(str(root), classes, splits, names, _fingerprint(root), skipped)


def synthetic_source(spec: str) -> Source:
    """`synthetic:N[:SIZE[:CLASSES]]`, deterministic class-coloured noise."""
    match = re.fullmatch(r"synthetic:(\d+)(?::(\d+))?(?::(\d+))?", spec)
    if not match:
        raise SourceError(f"bad synthetic spec {spec!r}: expected synthetic:N[:SIZE[:CLASSES]]")
    count, size, num_classes = int(match[1]), int(match[2] or 256), int(match[3] or 10)
    if count < 1 or size < 1 or num_classes < 1:
        raise SourceError(f"bad synthetic spec {spec!r}: N, SIZE and CLASSES must be >= 1")
    splits = {}
    for seed, (split, n) in enumerate((("train", count), ("val", max(1, count // 5)))):
        labels = np.arange(n, dtype=np.int64) % num_classes
        ids = [f"synthetic-{split}-{i}" for i in range(n)]
        splits[split] = Split(split, ids, labels, SyntheticReader(size, labels, seed))
    classes = [f"class{i}" for i in range(num_classes)]
    return Source(spec, classes, splits, classes, spec)


def _fingerprint(path: Path) -> str:
    """A cheap identity for cache keys: the resolved path, its size and modification time."""
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_cifar10_zip() -> Path:
    """The shared CIFAR-10 zip: $ALEXNET_CIFAR10, or ../shared/data beside the checkout or cwd."""
    env = os.environ.get("ALEXNET_CIFAR10")
    candidates = [Path(env)] if env else []
    tail = Path("shared/data/cifar10/cifar10-jpeg.zip")
    candidates += [Path.cwd().parent / tail, Path(__file__).resolve().parents[4] / tail]
    for path in candidates:
        if path.is_file():
            return path
    raise SourceError(
        f"CIFAR-10 zip not found (looked at {[str(p) for p in candidates]}); "
        "pass its path or set ALEXNET_CIFAR10"
    )


def resolve(spec: str | os.PathLike) -> Source:
    """Resolve a source spec (see the module docstring) into a Source."""
    text = str(spec)
    if text == "fashion-mnist":
        root = Path(os.environ.get("ALEXNET_FASHION_MNIST", FASHION_MNIST_DIR))
        if not root.is_dir():
            raise SourceError(f"{root} missing: install the Debian package dataset-fashion-mnist")
        return idx_source(root)
    if text == "cifar10":
        return zip_source(default_cifar10_zip())
    if text.startswith("synthetic"):
        return synthetic_source(text)
    path = Path(text)
    if not path.exists():
        raise SourceError(
            f"{path}: no such file or directory, and not a known source name (known: "
            "fashion-mnist, cifar10, synthetic:N[:SIZE[:CLASSES]])"
        )
    if path.is_file():
        if zipfile.is_zipfile(path):
            return zip_source(path)
        raise SourceError(f"{path}: a file that is not a zip; expected a zip or a directory")
    if any(path.glob("*-idx3-ubyte*")):
        return idx_source(path)
    return folder_source(path)
