"""`alexnet prepare`: decode every image once, rescale + centre-crop (section 2), store.

One pass per split, in parallel over processes (fork), in source order, so the same source gives
the same store byte for byte whatever the worker count. Each split is written into a temporary
directory `OUT/.<split>.tmp-<pid>` and renamed to `OUT/<split>` only when complete; a re-run
skips splits already complete with the same settings and restarts the others from scratch
(temporary directories and files of processes no longer alive are removed). One process at a
time prepares an OUT: it holds an exclusive lock on `OUT/.lock`, which names its PID; a second
`alexnet prepare` is refused naming it, `ensure_prepared` (training's cache) waits for it.
Undecodable files, and paths of the source that are no sample (broken links, link loops,
unlistable folders), are listed with their reason in `OUT/rejects.tsv` (and
`OUT/<split>/rejects.tsv`); seen = stored + rejected, always. A class whose every file was
rejected is an error. The small files (rejects, summary, meta) are written by rename.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from alexnet.data.images import ImageDecodeError, encode_jpeg, resize_center_crop, resize_warp
from alexnet.data.sources import Source, Split, resolve
from alexnet.data.stats import StatsAccumulator
from alexnet.data.store import (
    VERSION,
    StoreWriter,
    choose_encoding,
    is_complete,
    printable_name,
    read_meta,
    store_version,
)
from alexnet.paths import write_atomic

CHUNK = 32  # images per task: big enough to amortise IPC, small enough for a smooth bar
_JOB: dict = {}  # the split being prepared; set before the pool forks, read by workers
_LOCK: dict = {}  # {"fd": descriptor of OUT/.lock} while this process holds it


def _process_chunk(indices: range) -> tuple[list[tuple], StatsAccumulator | None]:
    """Decode, resize/crop and encode images `indices` of the current split."""
    job = _JOB
    split: Split = job["split"]
    acc = StatsAccumulator(job["size"], job["channels"]) if job["stats"] else None
    results = []
    for i in indices:
        try:
            decoded = split.read(i, draft_size=job["size"])
            if job["warp"]:
                img = resize_warp(decoded, job["size"])
            else:
                img = resize_center_crop(decoded, job["size"], job["keep_aspect"])
        except ImageDecodeError as exc:
            results.append((i, None, None, str(exc)))
            continue
        if img.shape[2] != job["channels"]:
            img = img[:, :, :1] if job["channels"] == 1 else np.repeat(img, 3, axis=2)
        if job["encoding"] == "raw":
            data = np.ascontiguousarray(img.transpose(2, 0, 1)).tobytes()  # planar, see store
        else:
            data = encode_jpeg(img, job["quality"])
        results.append((i, data, img.shape, ""))
        if acc is not None:
            acc.add(img)
    return results, acc


def _channels(split: Split) -> int:
    """1 for single-channel sources (IDX), else 3: every decoded file is RGB."""
    try:
        return int(split.read(0).shape[2]) if len(split.ids) else 3
    except ImageDecodeError:
        return 3


def _settings(
    source: Source, size: int, keep_aspect: bool, encoding: str, quality: int, warp: bool = False
) -> dict:
    warped = {"warp": True} if warp else {}  # absent when off: older stores keep their key
    return {
        **warped,
        "source": source.spec,
        "fingerprint": source.fingerprint,
        "size": size,
        "keep_aspect": keep_aspect,
        "encoding": encoding,
        "quality": quality,
        "version": VERSION,
    }


def _prepare_split(
    source: Source, split: Split, out: Path, settings: dict, workers: int, quiet: bool
) -> dict:
    """Write one split atomically; returns its counts."""
    final = out / split.name
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise ValueError(f"{final}: exists and is not a prepared split; move it away")
    tmp = out / f".{split.name}.tmp-{os.getpid()}"
    channels, size = _channels(split), settings["size"]
    encoding = choose_encoding(settings["encoding"], len(split.ids), size, channels)
    _JOB.update(
        split=split,
        size=size,
        keep_aspect=settings["keep_aspect"],
        warp=settings.get("warp", False),
        channels=channels,
        encoding=encoding,
        quality=settings["quality"],
        stats=split.name == "train",
    )
    skipped = list(source.skipped.get(split.name, []))
    writer = StoreWriter(tmp)
    try:
        try:
            acc, rejects = _write_images(split, writer, workers, quiet)
        finally:
            _JOB.clear()
        rejects = skipped + rejects
        _check_stored(source, split, writer, rejects)
        meta = {
            "split": split.name,
            "classes": source.classes,
            "class_names": source.class_names,
            "image_size": size,
            "channels": channels,
            "prepare": settings,
            "encoding": encoding,
        }
        _write_rejects(tmp / "rejects.tsv", [(split.name, f, r) for f, r in rejects])
        writer.finish(meta, acc.finalize() if acc is not None else None)
    except BaseException:  # an interrupt, a full disk: nothing partial stays behind
        writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    stored = len(writer.labels)
    try:
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "seen": len(split.ids) + len(skipped),
        "stored": stored,
        "rejected": len(rejects),
        "encoding": encoding,
        "bytes": writer.offsets[-1],
    }


def _check_stored(source: Source, split: Split, writer: StoreWriter, rejects: list) -> None:
    """A split with no image, or a class whose every file was rejected, is an error."""
    if not writer.labels:
        first = "; ".join(f"{f}: {r}" for f, r in rejects[:3])
        raise ValueError(f"{source.spec}: no readable image in split '{split.name}' ({first})")
    listed = np.unique(split.labels)
    stored = set(np.unique(np.asarray(writer.labels)).tolist())
    lost = [int(c) for c in listed if int(c) not in stored]
    if lost:
        name = source.classes[lost[0]] if lost[0] < len(source.classes) else str(lost[0])
        mine = {split.ids[i] for i in np.flatnonzero(split.labels == lost[0])}
        why = "; ".join(f"{f}: {r}" for f, r in rejects if f in mine)
        more = f" (and {len(lost) - 1} more classes)" if len(lost) > 1 else ""
        raise ValueError(
            f"{source.spec}: class {name!r}{more} has no readable image in split "
            f"'{split.name}' ({why[:300]})"
        )


def _write_images(
    split: Split, writer: StoreWriter, workers: int, quiet: bool
) -> tuple[StatsAccumulator | None, list[tuple[str, str]]]:
    """Run the chunks (in a process pool when workers > 1), append results in source order."""
    acc, rejects = None, []
    chunks = [range(s, min(s + CHUNK, len(split.ids))) for s in range(0, len(split.ids), CHUNK)]
    bar = tqdm(total=len(split.ids), desc=f"prepare {split.name}", unit="img", disable=quiet)
    fork = multiprocessing.get_context("fork")
    pool = fork.Pool(workers, _worker_init, (os.getpid(),)) if workers > 1 else None
    try:
        results = pool.imap(_process_chunk, chunks) if pool else map(_process_chunk, chunks)
        for items, part in results:
            for i, data, shape, reason in items:
                if data is None:
                    rejects.append((split.ids[i], reason))
                else:
                    writer.append(data, shape, int(split.labels[i]), split.ids[i])
            if part is not None and acc is not None:
                acc.merge(part)
            elif part is not None:
                acc = part
            bar.update(len(items))
    finally:
        bar.close()
        if pool:
            pool.terminate()
    return acc, rejects


def _worker_init(parent: int) -> None:
    """In each worker: die with the parent (a SIGKILL'd prepare leaves no orphans writing
    tracebacks), and drop the inherited descriptor of OUT/.lock so that only the parent holds
    the lock."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
        if os.getppid() != parent:  # the parent died before the call
            os._exit(1)
    fd = _LOCK.pop("fd", None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _write_rejects(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """rejects.tsv: one row per file, whitespace folded; names that are no UTF-8 escaped."""
    cells = [[printable_name(re.sub(r"\s+", " ", x)) for x in r] for r in rows]
    lines = ["split\tfile\treason"] + ["\t".join(r) for r in cells]
    write_atomic(path, "\n".join(lines) + "\n")


def read_rejects(path: Path) -> list[tuple[str, str, str]]:
    """Rows (split, file, reason) of a rejects manifest."""
    lines = Path(path).read_text().splitlines()[1:]
    return [tuple(line.split("\t", 2)) for line in lines if line]


MAX_SIZE = 2048  # the mean image alone is size^2 x C float64 per worker: 100 MB at 2048


class PrepareBusy(ValueError):
    """Another process is preparing the same output directory."""


def check_options(size: int, workers: int | None = None, quality: int = 95) -> None:
    """Refuse impossible settings before anything is read or created."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise ValueError(f"size {size!r}: the stored side must be 1 to {MAX_SIZE} pixels")
    if workers is not None and workers < 0:
        raise ValueError(f"workers {workers}: must be >= 1 (0 or none: one per core)")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality {quality}: a JPEG quality is 1 to 100")


def _check_out(source: Source, out: Path) -> None:
    """The output may not be, or lie inside, the source (prepare would read what it writes),
    nor hold the source where a split is written (OUT/train is replaced when complete)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    src = Path(source.spec)
    if not src.exists():  # synthetic: nothing on disk
        return
    real_src, real_out = src.resolve(), out.resolve()
    if real_out == real_src or real_src in real_out.parents:
        raise ValueError(
            f"{out}: the output is {'the source' if real_out == real_src else 'inside the source'} "
            f"{src}; choose an output directory outside it"
        )
    if real_out in real_src.parents:
        first = real_src.relative_to(real_out).parts[0]
        if first in source.splits or first.startswith("."):
            raise ValueError(
                f"{out}: the source {src} lies in {out / first}, which prepare writes; "
                "choose another output directory"
            )


@contextlib.contextmanager
def _locked(out: Path, *, wait: bool, quiet: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on `out` (OUT/.lock, which names the holder's PID) for the
    block. Busy: PrepareBusy naming the holder, or with `wait` wait for it."""
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    _LOCK["fd"] = fd
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            if not wait:
                raise PrepareBusy(
                    f"{out} is being prepared by process {holder}: wait for it to finish "
                    "(or stop it), then run again"
                ) from None
            if not quiet:
                print(f"waiting for process {holder}, which is preparing {out}", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        _LOCK.pop("fd", None)
        os.close(fd)  # releases the lock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(out: Path) -> list[Path]:
    """Remove the temporary splits and files (`.<name>.tmp-<pid>`) that processes no longer
    alive left in `out` (a kill, a power cut); returns what was removed."""
    removed = []
    for path in out.glob(".*.tmp-*"):
        match = re.fullmatch(r"\..+\.tmp-(\d+)", path.name)
        if not match or (int(match[1]) != os.getpid() and _alive(int(match[1]))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def prepare(
    src: str | os.PathLike | Source,
    out: str | os.PathLike,
    *,
    size: int = 256,
    keep_aspect: bool = False,
    warp: bool = False,
    workers: int | None = None,
    splits: list[str] | None = None,
    encoding: str = "auto",
    quality: int = 95,
    quiet: bool = False,
) -> dict:
    """Prepare source `src` into `out` (see the module docstring); returns the summary.

    One process at a time per `out`: a second one raises PrepareBusy naming the first."""
    check_options(size, workers, quality)
    if keep_aspect and warp:
        raise ValueError("--keep-aspect and --warp exclude each other: choose one geometry")
    choose_encoding(encoding, 0, size, 3)  # a bad name fails here, before anything is created
    source = src if isinstance(src, Source) else resolve(src)
    out = Path(out)
    _check_out(source, out)
    names = splits or list(source.splits)
    unknown = [s for s in names if s not in source.splits]
    if unknown:
        raise ValueError(f"{source.spec}: no split {unknown}; it has {list(source.splits)}")
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out, wait=False):
        return _prepare_locked(
            source, out, size, keep_aspect, workers, names, encoding, quality, quiet, warp
        )


def _prepare_locked(
    source: Source,
    out: Path,
    size: int,
    keep_aspect: bool,
    workers: int | None,
    names: list[str],
    encoding: str,
    quality: int,
    quiet: bool,
    warp: bool = False,
) -> dict:
    start = time.perf_counter()
    remove_stale(out)
    workers = workers or os.cpu_count() or 1
    settings = _settings(source, size, keep_aspect, encoding, quality, warp)
    summary: dict = {"source": source.spec, "out": str(out), "size": size, "splits": {}}
    for name in names:
        final = out / name
        if is_complete(final) and _same_settings(final, settings):
            meta = read_meta(final / "meta.json")
            rows = read_rejects(final / "rejects.tsv")
            counts = {
                "seen": meta["count"] + len(rows),
                "stored": meta["count"],
                "rejected": len(rows),
                "encoding": meta["encoding"],
                "reused": True,
            }
        else:
            counts = _prepare_split(source, source.splits[name], out, settings, workers, quiet)
        summary["splits"][name] = counts
    rows = [r for name in names for r in read_rejects(out / name / "rejects.tsv")]
    _write_rejects(out / "rejects.tsv", rows)
    for key in ("seen", "stored", "rejected"):
        summary[key] = sum(s[key] for s in summary["splits"].values())
    summary["seconds"] = round(time.perf_counter() - start, 3)
    write_atomic(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def _same_settings(split_dir: Path, settings: dict) -> bool:
    meta = json.loads((split_dir / "meta.json").read_text())
    return meta.get("prepare") == settings


def find_splits(out: str | os.PathLike) -> dict[str, Path]:
    """{split name: directory} of the complete stores under `out`; a store of another version
    is an error naming both versions (not a missing split)."""
    found = {}
    for path in sorted(Path(out).iterdir()):
        if is_complete(path):
            found[path.name] = path
        elif (version := store_version(path)) is not None:
            raise ValueError(
                f"{path}: a prepared store of version {version}, but this alexnet reads "
                f"version {VERSION}: prepare it again (alexnet prepare SRC {out})"
            )
    return found


def ensure_prepared(
    spec: str | os.PathLike,
    cache_dir: str | os.PathLike,
    size: int,
    *,
    keep_aspect: bool = False,
    warp: bool = False,
    quiet: bool = False,
) -> Path:
    """Prepare `spec` once into `cache_dir/<name>-<size>-<key>` and return that directory.

    The key hashes the source's identity and the settings; a complete cache entry (every split
    complete with the same settings) is reused without touching the source's images.
    """
    check_options(size)
    source = resolve(spec)
    settings = _settings(source, size, keep_aspect, "auto", 95, warp)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(spec)).name or "data")[:40]
    out = Path(cache_dir) / f"{slug}-{size}-{key}"

    def done() -> bool:
        return out.is_dir() and all(
            is_complete(out / s) and _same_settings(out / s, settings) for s in source.splits
        )

    if not done():
        _check_out(source, out)
        out.mkdir(parents=True, exist_ok=True)
        with _locked(out, wait=True, quiet=quiet):  # another run preparing it: wait, reuse
            if not done():
                names = list(source.splits)
                _prepare_locked(
                    source, out, size, keep_aspect, None, names, "auto", 95, quiet, warp
                )
    return out
