"""Hardening of the data side against hostile or unlucky input (issue 16): planted kernels,
names from files that point outside their folder, decompression bombs, and `prepare` faults."""

from __future__ import annotations

import json
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


def _one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def _crafted_runs(tmp_path: Path) -> dict[str, Path]:
    """Run dirs whose result.json names files outside their folders, absolute and ../ forms."""
    from test_experiments import _fake_result

    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    good = _fake_result("lrn", "2026-01-02T00:00:00Z", [0.2, 0.3], tmp_path / "lrn.png")
    outside = tmp_path / "outside"
    cases = {
        "experiment ../": {"experiment": "../../outside/evil"},
        "experiment absolute": {"experiment": str(outside / "evil")},
        "finished ../": {"finished": "/../../outside/x"},
        "figure ../": {"figure": "../secret.txt"},
        "figure absolute": {"figure": str(secret)},
        "figure link": {"figure": "link.png"},
        "experiment not a string": {"experiment": ["lrn"]},
        "missing field": {"claim": None, "rows": "nope"},
    }
    runs = {}
    for i, (case, change) in enumerate(cases.items()):
        run = tmp_path / f"run{i}"
        run.mkdir()
        (run / "lrn.png").write_bytes(b"\x89PNG fake")
        (run / "link.png").symlink_to(secret)
        (run / "result.json").write_text(json.dumps({**good, **change}))
        runs[case] = run
    return runs


def test_experiment_page_keeps_names_from_result_json_inside_docs(tmp_path, capsys):
    from alexnet.cli import main

    docs = tmp_path / "docs"
    for case, run in _crafted_runs(tmp_path).items():
        before = sorted(str(p) for p in tmp_path.rglob("*"))
        assert main(["experiment", "page", str(run), "--docs", str(docs)]) == 2, case
        _one_line_error(capsys, "result.json")
        assert sorted(str(p) for p in tmp_path.rglob("*")) == before, case  # nothing written
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize(
    "name", ["../../secret.txt", "SECRET_ABSOLUTE", "link.png", "..", "", ["curves.png"]]
)
def test_report_embeds_only_files_in_the_figures_folder(name, tmp_path, capsys):
    from alexnet.cli import main

    secret = tmp_path / "secret.txt"
    secret.write_text("the secret")
    run = tmp_path / "a" / "run"
    (run / "figures").mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"kind": "epoch", "epoch": 1, "step": 1}\n')
    (run / "figures" / "link.png").symlink_to(secret)
    name = str(secret) if name == "SECRET_ABSOLUTE" else name
    (run / "figures" / "figures.json").write_text(json.dumps({"curves": {"file": name}}))
    assert main(["report", str(run)]) == 2
    _one_line_error(capsys, "figures.json")
    assert not (run / "report.html").exists()
