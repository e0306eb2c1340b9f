"""Writing files so that readers see the old file or the new one, never a part of either.

Every small output of a run and of the inference verbs goes through `atomic_write_bytes` /
`atomic_write_text` (or `atomic_path` for writers that want a path, such as torch.save or
safetensors): the data is written to a temporary file in the same directory, fsync'd, then
renamed over the target. A failed write (a full disk, a size limit, a permission) removes the
temporary file and raises `WriteError`, an OSError naming the target, so nothing partial is
left and the error is one line (a ValueError from the writer, a refusal of the content, passes
through as it is). Files get the mode `open()` would give them (0666 less the
umask), not mkstemp's 0600.

Temporary names are `.<name>.<pid>.<random>.tmp`: `remove_stale_temp(directory)` deletes those of
processes that no longer exist (a kill during a write leaves them behind).

This module sits at the bottom of the stack: it imports nothing from alexnet.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

_TEMP = re.compile(r"^\..+\.tmp$")
_TEMP_PID = re.compile(r"\.(\d+)\.[^.]+\.tmp$")


class WriteError(OSError):
    """Writing `path` failed; the target is unchanged and no temporary file is left."""


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if "inline_container" in text or "unexpected pos" in text:  # torch.save's writer
        return f"the write stopped short ({text}); is the disk full?"
    return f"{type(err).__name__}: {text}"


def check_output_dir(path: str | Path) -> Path:
    """Raise a one-line error unless `path`'s directory exists and `path` is not a directory."""
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise WriteError(errno.EISDIR, f"{path} is a directory; name an output file")
    if not parent.is_dir():
        raise WriteError(errno.ENOENT, f"{parent}: no such output directory (create it first)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WriteError(errno.EACCES, f"{parent}: output directory is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, *, mkdir: bool = False) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed over `path` when the block ends
    without an error, removed otherwise (and the error raised as WriteError naming `path`)."""
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
        )
    except OSError as err:
        raise WriteError(err.errno, f"cannot write {path}: {_describe(err)}") from err
    tmp = Path(name)
    try:
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as handle:  # the writer may have replaced the file: reopen it
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from others
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, Exception) and not isinstance(err, (WriteError, ValueError)):
            code = err.errno if isinstance(err, OSError) and err.errno else errno.EIO
            raise WriteError(code, f"cannot write {path}: {_describe(err)}") from err
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes, *, mkdir: bool = False) -> Path:
    """Write `data` to `path` atomically (see the module docstring); returns `path`."""
    path = Path(path)
    with atomic_path(path, mkdir=mkdir) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
    return path


def atomic_write_text(
    path: str | Path, text: str, *, encoding: str = "utf-8", mkdir: bool = False
) -> Path:
    """Write `text` to `path` atomically; returns `path`."""
    return atomic_write_bytes(path, text.encode(encoding), mkdir=mkdir)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temp(directory: str | Path, *, unowned: bool = False) -> list[Path]:
    """Delete the temporary files (`.<name>.<pid>.<random>.tmp`) in `directory` whose writing
    process is gone; with `unowned`, also those naming no process (older versions' names; only
    for a directory the caller holds locked). Returns what was removed."""
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        if not _TEMP.match(entry.name) or not entry.is_file():
            continue
        pid = _TEMP_PID.search(entry.name)
        if (not _alive(int(pid.group(1)))) if pid else unowned:
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
