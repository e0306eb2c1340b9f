"""Hardening of the data side against hostile or unlucky input (issue 16): planted kernels,
names from files that point outside their folder, decompression bombs, and `prepare` faults."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from alexnet.models import lrn

PLANT = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(getenv("ALEXNET_TEST_PLANT_MARK"), "w");
    if (f) { fputs("ran\n", f); fclose(f); }
}
"""


def _planted_library(tmp_path: Path) -> Path:
    """A shared object that, when loaded, writes the file named by ALEXNET_TEST_PLANT_MARK."""
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        pytest.skip("no C compiler")
    src = tmp_path / "plant.c"
    src.write_text(PLANT)
    out = tmp_path / "plant.so"
    subprocess.run([cxx, "-x", "c", "-shared", "-fPIC", str(src), "-o", str(out)], check=True)
    return out


@pytest.mark.parametrize("case", ["group-writable folder", "group-writable file", "other owner"])
def test_planted_lrn_kernel_is_never_loaded(case, tmp_path, monkeypatch):
    planted = _planted_library(tmp_path)
    mark = tmp_path / "planted-ran"
    monkeypatch.setenv("ALEXNET_TEST_PLANT_MARK", str(mark))
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ALEXNET_LRN", raising=False)
    monkeypatch.setattr(lrn, "_state", {})
    folder = tmp_path / "cache" / "kernels"
    folder.mkdir(parents=True)
    target = folder / f"lrn-{lrn._key(os.environ.get('CXX', 'g++'))}.so"
    shutil.copyfile(planted, target)
    if case == "group-writable folder":
        folder.chmod(0o777)
    elif case == "group-writable file":
        target.chmod(0o666)
    else:
        uid = os.geteuid() + 1
        monkeypatch.setattr(lrn.os, "geteuid", lambda: uid)
    with pytest.warns(UserWarning, match="writable by others"):
        assert lrn.lrn_backend() == "cpp"  # a private build, never the planted file
    assert not mark.exists()
    lrn_fn = lrn._state["lib"].lrn_forward  # the real kernel's symbols
    assert lrn_fn is not None
    if case == "group-writable file":  # our own folder: the bad file was replaced
        assert target.stat().st_mode & 0o022 == 0


def test_unwritable_cache_builds_privately_never_in_shared_tmp(tmp_path, monkeypatch):
    """The old fallback `$TMPDIR/alexnet-cache` is gone: a planted kernel there is ignored,
    and the private build folder is removed once the kernel is loaded."""
    planted = _planted_library(tmp_path)
    mark = tmp_path / "planted-ran"
    monkeypatch.setenv("ALEXNET_TEST_PLANT_MARK", str(mark))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ALEXNET_CACHE", str(blocker / "cache"))  # cannot be created
    shared = tmp_path / "shared-tmp"
    (shared / "alexnet-cache").mkdir(parents=True)
    shutil.copyfile(
        planted, shared / "alexnet-cache" / f"lrn-{lrn._key(os.environ.get('CXX', 'g++'))}.so"
    )
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setattr(lrn, "_state", {})
    assert lrn.lrn_backend() == "cpp"
    assert not mark.exists()
    assert not list(shared.glob("alexnet-lrn-*"))  # the private folder is gone again
