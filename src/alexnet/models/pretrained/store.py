"""Getting named weights: download or import once, check the hash, convert, cache.

`pull(entry)` downloads the publisher's file (torch.hub's downloader: a progress bar, a
temporary file) into a private temporary folder inside the cache, checks its size and hash
against the registry, converts it into the package's weights file (models/weights_file.py) and
renames that into place, so the cache never holds a file that looks complete and is not. The
publisher's file itself is not kept. `import_file(path)` does the same for a file the user
already has (a cluster without internet). $ALEXNET_OFFLINE=1 forbids downloads;
$ALEXNET_WEIGHTS_MIRROR (a base URL) fetches every file from a mirror instead, by file name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexnet.cache import cache_dir
from alexnet.data.preset import Preprocess
from alexnet.models.pretrained.convert import convert_file
from alexnet.models.pretrained.registry import WeightsEntry, all_weights
from alexnet.models.weights_file import read_weights_file, save_weights

OFFLINE_ENV = "ALEXNET_OFFLINE"
MIRROR_ENV = "ALEXNET_WEIGHTS_MIRROR"


def weights_dir() -> Path:
    """Where converted weights are cached: <cache root>/weights."""
    return cache_dir() / "weights"


def cached_path(entry: WeightsEntry) -> Path:
    """The converted file of `entry` (it may not exist yet)."""
    return weights_dir() / f"{entry.name}.safetensors"


def is_cached(entry: WeightsEntry) -> bool:
    return cached_path(entry).is_file()


def source_url(entry: WeightsEntry) -> str:
    """The entry's URL, or the file's name under $ALEXNET_WEIGHTS_MIRROR."""
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{entry.file_name}" if mirror else entry.url


def file_digest(path: Path, hash_name: str) -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(hash_name)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(entry: WeightsEntry, path: Path, origin: str) -> None:
    """Raise ValueError (naming `origin`) unless `path` hashes to the registry's digest."""
    got = file_digest(path, entry.hash_name)
    if not got.startswith(entry.digest):
        size = path.stat().st_size
        raise ValueError(
            f"{origin}: {entry.hash_name} is {got[:16]}... ({size:,} bytes), the registry's "
            f"{entry.name!r} is {entry.digest[:16]}...: not the published file (damaged, "
            "truncated, or another file); nothing was cached"
        )


def _offline_message(entry: WeightsEntry, why: str) -> str:
    return (
        f"weights {entry.name!r} are not cached and {why}; on a machine with internet fetch "
        f"{source_url(entry)} and run `alexnet weights import {entry.file_name} --name "
        f"{entry.name}`"
    )


def pull(entry: WeightsEntry, *, url: str | None = None, progress: bool = True) -> Path:
    """Download, check, convert and cache `entry`; return the cached weights file."""
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise ValueError(_offline_message(entry, f"${OFFLINE_ENV} is set"))
    url = url or source_url(entry)
    with _scratch() as scratch:
        download = scratch / entry.file_name
        try:
            torch.hub.download_url_to_file(url, str(download), progress=progress)
        except (OSError, urllib.error.URLError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", None) or err
            raise ValueError(
                f"download of {url} failed ({type(err).__name__}: {reason}); nothing was "
                f"cached. {_offline_message(entry, 'the download failed')}"
            ) from err
        return _convert_into_cache(entry, download, origin=url)


def import_file(path: str | Path, name: str | None = None) -> tuple[WeightsEntry, Path]:
    """Check, convert and cache a publisher's file the user already has.

    Without `name` the entry is the one whose digest the file has."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    entries = all_weights()
    if name is not None:
        if name not in entries:
            raise ValueError(f"unknown weights {name!r}; known: {', '.join(sorted(entries))}")
        entry = entries[name]
    else:
        digests = {h: file_digest(path, h) for h in {e.hash_name for e in entries.values()}}
        matches = [e for e in entries.values() if digests[e.hash_name].startswith(e.digest)]
        if not matches:
            raise ValueError(
                f"{path}: its hash matches no registry entry; name one with --name "
                f"({', '.join(sorted(entries))})"
            )
        entry = matches[0]
    return entry, _convert_into_cache(entry, path, origin=str(path))


def load_entry(
    entry: WeightsEntry, *, download: bool = True, progress: bool = True
) -> tuple[nn.Module, Preprocess, dict[str, Any]]:
    """(model, preset, metadata) of a registry entry, pulled first if it is not cached."""
    path = cached_path(entry)
    if not path.is_file():
        if not download:
            raise ValueError(_offline_message(entry, "downloading was not asked for"))
        pull(entry, progress=progress)
    model, pre, meta = read_weights_file(path)
    meta.update(kind="registry", weights=entry.name, source=entry.name)
    return model, pre, meta


def _convert_into_cache(entry: WeightsEntry, path: Path, origin: str) -> Path:
    if entry.size_mb is not None:
        mb = path.stat().st_size / 2**20
        if abs(mb - entry.size_mb) > 0.01 * entry.size_mb:
            raise ValueError(
                f"{origin}: {mb:.1f} MiB, the registry's {entry.name!r} is {entry.size_mb:.1f} MiB"
                " (truncated, or another file); nothing was cached"
            )
    check_file(entry, path, origin)
    model = convert_file(entry, path)
    provenance = {
        "weights": entry.name,
        "file": origin,
        entry.hash_name: entry.digest,
        "licence": entry.licence,
        "published": entry.published,
    }
    out = cached_path(entry)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(out, model, entry.transforms(), metrics={}, origin=provenance)
    return out


class _scratch:
    """A private temporary folder inside the weights cache (same file system: the converted
    file renames into place), removed on exit whatever happens."""

    def __enter__(self) -> Path:
        weights_dir().mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=".download-", dir=weights_dir()))
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
