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


def _bomb_png(path: Path, side: int = 13000) -> Path:
    """A ~20 KB 1-bit PNG of side x side pixels (169 megapixels: 2.3 GB once decoded to RGB),
    written row by row so that the test itself never holds it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    z = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )
    assert path.stat().st_size < 100_000
    return path


BOMB_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))
from alexnet.data.images import ImageDecodeError, load_image
try:
    load_image(sys.argv[1], draft_size=int(sys.argv[2]) if len(sys.argv) > 2 else None)
except ImageDecodeError as err:
    print(err)
    sys.exit(3)
"""


@pytest.mark.parametrize("draft", [None, 256])
def test_decompression_bomb_is_refused_without_decoding(draft, tmp_path):
    import sys

    bomb = _bomb_png(tmp_path / "bomb.png")
    cmd = [sys.executable, "-c", BOMB_CHILD, str(bomb), *([str(draft)] if draft else [])]
    env = {**os.environ, "PYTHONPATH": str(Path(lrn.__file__).parents[2])}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 3, done.stderr  # refused under a 1.5 GB address space, no crash
    assert "bomb.png" in done.stdout and "megapixels" in done.stdout


def test_images_over_the_pixel_limit_are_refused_with_the_limit(tmp_path, monkeypatch):
    from PIL import Image

    from alexnet.data import images

    monkeypatch.setattr(images, "MAX_PIXELS", 150 * 150)
    Image.new("RGB", (160, 150)).save(tmp_path / "wide.png")
    with pytest.raises(images.ImageDecodeError, match=r"160x150.*over the limit of 0.0225"):
        images.load_image(tmp_path / "wide.png")
    Image.new("RGB", (1000, 800)).save(tmp_path / "big.jpg")  # drafted to 125x100: allowed
    assert images.load_image(tmp_path / "big.jpg", draft_size=90).shape[:2] == (100, 125)
    with pytest.raises(images.ImageDecodeError, match="1000x800"):
        images.load_image(tmp_path / "big.jpg")  # no draft: the full size counts


def test_predict_names_a_bomb_and_predicts_the_other_files(tmp_path, capsys):
    """A file given by name, and the same bomb inside a folder: a reason, the rest predicted."""
    import numpy as np
    from PIL import Image

    from alexnet.cli import main
    from test_infer_helpers import make_run

    run = make_run(tmp_path / "run")
    folder = tmp_path / "images"
    folder.mkdir()
    bomb = _bomb_png(folder / "bomb.png")
    Image.fromarray(np.full((90, 90, 3), 128, np.uint8)).save(folder / "good.png")
    for inputs in ([str(bomb)], [str(folder)]):
        code = main(["predict", str(run), *inputs])
        out, err = capsys.readouterr()
        assert err.count("\n") == 1 and "bomb.png: refused" in err and "megapixels" in err
        assert code == (1 if len(inputs) == 1 and inputs[0] == str(bomb) else 0)
        assert ("good.png" in out) == (inputs == [str(folder)])
