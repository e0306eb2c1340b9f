"""Names read from a file are data: they never lead a read or a write out of their folder.

`plain_name` accepts one file name (no separator, no `..`, not absolute, no NUL); `inside`
joins it onto a folder, resolves the result (links included) and checks that it is still
directly in that folder. Both raise ValueError naming where the name came from.
`write_atomic` writes a small output file by temporary name and rename.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alexnet.fileio import atomic_write_bytes


def plain_name(value: Any, what: str) -> str:
    """`value` when it is one plain file name; ValueError naming `what` otherwise."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}: expected a file name, got {value!r}")
    if "/" in value or "\\" in value or "\0" in value or value in (".", ".."):
        raise ValueError(
            f"{what}: {value!r} is not a plain file name (no folders, '..' or absolute paths)"
        )
    return value


def inside(folder: Path, value: Any, what: str) -> Path:
    """`folder / value` for a plain name `value` that, resolved, stays directly in `folder`."""
    path = Path(folder) / plain_name(value, what)
    if path.resolve().parent != Path(folder).resolve():
        raise ValueError(f"{what}: {value!r} leads outside {folder} (a link)")
    return path


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to a temporary name beside `path`, then rename it into place:
    a reader (or a crash, or a full disk) never leaves half a file under the final name. The one
    implementation is `alexnet.fileio.atomic_write_bytes` (fsync'd, the mode open() gives, a
    failure one WriteError naming the file)."""
    return atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
