"""The one cache root of the package: prepared data sets, downloaded weights, compiled kernels.

`$ALEXNET_CACHE`, else `$XDG_CACHE_HOME/alexnet`, else `~/.cache/alexnet`. Everything the package
caches lives in a subfolder of it, so one variable moves (or one `rm -r` clears) all of it.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root (not created here: each user of it makes its own subfolder)."""
    explicit = os.environ.get("ALEXNET_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "alexnet"
