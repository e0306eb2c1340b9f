"""`alexnet prepare`: decode every image once, rescale + centre-crop (section 2), store.

One pass per split, in parallel over processes (fork), in source order, so the same source gives
the same store byte for byte whatever the worker count. Each split is written into a temporary
directory `OUT/.<split>.tmp-<pid>` and renamed to `OUT/<split>` only when complete; a re-run
skips splits already complete with the same settings and restarts the others from scratch
(stale temporary directories are removed). Undecodable files are listed with their reason in
`OUT/rejects.tsv` (and `OUT/<split>/rejects.tsv`); seen = stored + rejected, always.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from alexnet.data.images import ImageDecodeError, encode_jpeg, resize_center_crop
from alexnet.data.sources import Source, Split, resolve
from alexnet.data.stats import StatsAccumulator
from alexnet.data.store import VERSION, StoreWriter, choose_encoding, is_complete

CHUNK = 32  # images per task: big enough to amortise IPC, small enough for a smooth bar
_JOB: dict = {}  # the split being prepared; set before the pool forks, read by workers


def _process_chunk(indices: range) -> tuple[list[tuple], StatsAccumulator | None]:
    """Decode, resize/crop and encode images `indices` of the current split."""
    job = _JOB
    split: Split = job["split"]
    acc = StatsAccumulator(job["size"], job["channels"]) if job["stats"] else None
    results = []
    for i in indices:
        try:
            img = resize_center_crop(
                split.read(i, draft_size=job["size"]), job["size"], job["keep_aspect"]
            )
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


def _settings(source: Source, size: int, keep_aspect: bool, encoding: str, quality: int) -> dict:
    return {
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
    for stale in out.glob(f".{split.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out / f".{split.name}.tmp-{os.getpid()}"
    channels, size = _channels(split), settings["size"]
    encoding = choose_encoding(settings["encoding"], len(split.ids), size, channels)
    _JOB.update(
        split=split,
        size=size,
        keep_aspect=settings["keep_aspect"],
        channels=channels,
        encoding=encoding,
        quality=settings["quality"],
        stats=split.name == "train",
    )
    writer = StoreWriter(tmp)
    try:
        acc, rejects = _write_images(split, writer, workers, quiet)
    except BaseException:
        writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _JOB.clear()
    stored = len(writer.labels)
    if stored == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        first = "; ".join(f"{f}: {r}" for f, r in rejects[:3])
        raise ValueError(f"{source.spec}: no readable image in split '{split.name}' ({first})")
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
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    return {
        "seen": len(split.ids),
        "stored": stored,
        "rejected": len(rejects),
        "encoding": encoding,
        "bytes": writer.offsets[-1],
    }


def _write_images(
    split: Split, writer: StoreWriter, workers: int, quiet: bool
) -> tuple[StatsAccumulator | None, list[tuple[str, str]]]:
    """Run the chunks (in a process pool when workers > 1), append results in source order."""
    acc, rejects = None, []
    chunks = [range(s, min(s + CHUNK, len(split.ids))) for s in range(0, len(split.ids), CHUNK)]
    bar = tqdm(total=len(split.ids), desc=f"prepare {split.name}", unit="img", disable=quiet)
    pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None
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


def _write_rejects(path: Path, rows: list[tuple[str, str, str]]) -> None:
    lines = ["split\tfile\treason"] + ["\t".join(re.sub(r"\s+", " ", x) for x in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def read_rejects(path: Path) -> list[tuple[str, str, str]]:
    """Rows (split, file, reason) of a rejects manifest."""
    lines = Path(path).read_text().splitlines()[1:]
    return [tuple(line.split("\t", 2)) for line in lines if line]


def prepare(
    src: str | os.PathLike | Source,
    out: str | os.PathLike,
    *,
    size: int = 256,
    keep_aspect: bool = False,
    workers: int | None = None,
    splits: list[str] | None = None,
    encoding: str = "auto",
    quality: int = 95,
    quiet: bool = False,
) -> dict:
    """Prepare source `src` into `out` (see the module docstring); returns the summary."""
    start = time.perf_counter()
    source = src if isinstance(src, Source) else resolve(src)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    names = splits or list(source.splits)
    unknown = [s for s in names if s not in source.splits]
    if unknown:
        raise ValueError(f"{source.spec}: no split {unknown}; it has {list(source.splits)}")
    settings = _settings(source, size, keep_aspect, encoding, quality)
    summary: dict = {"source": source.spec, "out": str(out), "size": size, "splits": {}}
    for name in names:
        final = out / name
        if is_complete(final) and _same_settings(final, settings):
            meta = json.loads((final / "meta.json").read_text())
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
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _same_settings(split_dir: Path, settings: dict) -> bool:
    meta = json.loads((split_dir / "meta.json").read_text())
    return meta.get("prepare") == settings


def find_splits(out: str | os.PathLike) -> dict[str, Path]:
    """{split name: directory} of the complete stores under `out`."""
    return {p.name: p for p in sorted(Path(out).iterdir()) if is_complete(p)}


def ensure_prepared(
    spec: str | os.PathLike,
    cache_dir: str | os.PathLike,
    size: int,
    *,
    keep_aspect: bool = False,
    quiet: bool = False,
) -> Path:
    """Prepare `spec` once into `cache_dir/<name>-<size>-<key>` and return that directory.

    The key hashes the source's identity and the settings; a complete cache entry (every split
    complete with the same settings) is reused without touching the source's images.
    """
    source = resolve(spec)
    settings = _settings(source, size, keep_aspect, "auto", 95)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(spec)).name or "data")[:40]
    out = Path(cache_dir) / f"{slug}-{size}-{key}"
    done = out.is_dir() and all(
        is_complete(out / s) and _same_settings(out / s, settings) for s in source.splits
    )
    if not done:
        prepare(source, out, size=size, keep_aspect=keep_aspect, quiet=quiet)
    return out
