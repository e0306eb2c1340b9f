"""Claiming a run directory: one writer at a time, no run silently replaced.

`claim_run_dir(run_dir, resume=..., overwrite=...)` is held for the whole of a training run
(rank 0 only):
- it takes an exclusive `fcntl.flock` on RUN_DIR/.lock (the file holds the owner's PID), so a
  second `alexnet train` into the same directory stops at once, naming the process that has it;
  the kernel drops the lock when the process ends, however it ends;
- a fresh run into a directory that already holds a run's files is refused unless `overwrite`
  (which removes those files first; anything else in the directory is left alone);
- temporary files of writers that died mid-write (`alexnet.fileio` names) are removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from alexnet.fileio import remove_stale_temp

LOCK_NAME = ".lock"
# What a run (and `alexnet figures` / `report` on it) writes into its directory.
RUN_ENTRIES = (
    "config.yaml", "command.txt", "metrics.jsonl", "checkpoints", "model.safetensors",
    "test_metrics.json", "tb", "figures", "report.html",
)  # fmt: skip


class RunDirBusy(ValueError):
    """Another process holds the run directory's lock."""


def run_entries(run_dir: Path) -> list[str]:
    """The names in RUN_ENTRIES present in `run_dir`."""
    return [name for name in RUN_ENTRIES if (run_dir / name).exists()]


@contextlib.contextmanager
def lock_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on `run_dir` (created if missing) for the block."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir} is a file, not a run directory")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    failed = True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise RunDirBusy(
                f"{run_dir} is in use by another alexnet train (process {holder}); wait for it "
                "to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
        failed = False
    finally:
        if failed and created and os.listdir(run_dir) == [LOCK_NAME]:
            os.unlink(run_dir / LOCK_NAME)  # a run refused before it wrote anything leaves
            run_dir.rmdir()  # no empty directory behind (a bad option, a missing source)
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def claim_run_dir(run_dir: Path, *, resume: bool, overwrite: bool = False) -> Iterator[None]:
    """Lock `run_dir`, refuse or clear an existing run, drop stale temporary files."""
    run_dir = Path(run_dir)
    with lock_run_dir(run_dir):
        existing = run_entries(run_dir)
        if existing and not resume:
            if not overwrite:
                raise ValueError(
                    f"--out {run_dir} already holds a run ({', '.join(existing)}): continue it "
                    f"with `alexnet train --resume {run_dir}`, or pass --overwrite to replace it"
                )
            for name in existing:
                path = run_dir / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        for directory in (run_dir, run_dir / "checkpoints"):
            remove_stale_temp(directory, unowned=True)  # we hold the lock: no live writer
        yield
