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
    "name", ["../../secret.txt", "SECRET_ABSOLUTE", "link.png", "..", "", ["a.png"], "GARBAGE"]
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
    manifest = "[1, 2" if name == "GARBAGE" else json.dumps({"curves": {"file": name}})
    (run / "figures" / "figures.json").write_text(manifest)
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


# --- alexnet prepare -------------------------------------------------------------------------


def _folder(root: Path, classes: int = 2, per_class: int = 3) -> Path:
    """ROOT/c<k>/i<j>.png: small distinct images."""
    import numpy as np
    from PIL import Image

    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.full((40, 50, 3), 60 * c + 10 * i, np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"i{i}.png")
    return root


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("where", ["same", "inside", "source in OUT/train", "a file"])
def test_prepare_refuses_an_output_that_is_or_holds_the_source(where, tmp_path, capsys):
    from alexnet.cli import main

    if where == "source in OUT/train":
        src, out = _folder(tmp_path / "data" / "train"), tmp_path / "data"
    else:
        src = _folder(tmp_path / "src")
        out = {"same": src, "inside": src / "out" / "deeper", "a file": src / "c0" / "i0.png"}
        out = out[where]
    before = _listing(tmp_path)
    assert main(["prepare", str(src), str(out), "--size", "16", "--quiet"]) == 2
    _one_line_error(capsys, str(out))
    assert _listing(tmp_path) == before  # the source untouched, nothing created


@pytest.mark.parametrize(
    "option", [["--size", "0"], ["--size", "100000"], ["--size", "-3"], ["--workers", "-1"]]
)
def test_prepare_refuses_impossible_options_before_creating_anything(option, tmp_path, capsys):
    from alexnet.cli import main

    src = _folder(tmp_path / "src")
    assert main(["prepare", str(src), str(tmp_path / "out"), *option, "--quiet"]) == 2
    _one_line_error(capsys, option[1])
    assert not (tmp_path / "out").exists()


HOLDER = """
import sys, time
from pathlib import Path
from alexnet.data.prepare import _locked
with _locked(Path(sys.argv[1]), wait=False):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _hold_lock(out: Path, seconds: float) -> subprocess.Popen:
    import sys

    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(Path(lrn.__file__).parents[2])}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout.readline().strip() == "holding"
    return child


def test_a_second_prepare_into_one_out_is_refused_naming_the_first(tmp_path, capsys):
    from alexnet.cli import main
    from alexnet.data.prepare import ensure_prepared
    from alexnet.data.store import is_complete

    src, out = _folder(tmp_path / "src"), tmp_path / "out"
    holder = _hold_lock(out, 30)
    try:
        assert main(["prepare", str(src), str(out), "--size", "16", "--quiet"]) == 2
        _one_line_error(capsys, f"being prepared by process {holder.pid}")
        assert _listing(out) == [".lock"]  # the holder's work is not touched
    finally:
        holder.kill()
        holder.wait()
    assert main(["prepare", str(src), str(out), "--size", "16", "--quiet"]) == 0
    # the cache (alexnet train) waits for the other process instead, then uses its result
    cache = tmp_path / "cache"
    first = ensure_prepared(src, cache, 16, quiet=True)
    holder = _hold_lock(first, 1.0)
    try:
        (first / "train" / "meta.json").unlink()  # incomplete: must be prepared again
        again = ensure_prepared(src, cache, 16, quiet=True)
    finally:
        holder.wait()
    assert again == first and is_complete(first / "train")


def test_prepare_removes_what_dead_processes_left_and_keeps_live_ones(tmp_path):
    from alexnet.data.prepare import prepare

    src, out = _folder(tmp_path / "src"), tmp_path / "out"
    dead = subprocess.Popen(["true"])
    dead.wait()
    out.mkdir()
    (out / f".train.tmp-{dead.pid}").mkdir()
    (out / f".train.tmp-{dead.pid}" / "data.bin").write_bytes(b"x" * 100)
    (out / f".summary.json.tmp-{dead.pid}").write_text("{")
    live = out / f".train.tmp-{os.getppid()}"  # alive, and not ours: another prepare's
    live.mkdir()
    prepare(src, out, size=16, quiet=True, workers=1)
    assert sorted(p.name for p in out.glob(".*tmp-*")) == [live.name]


def test_links_loops_and_unlistable_folders_are_reasons_not_classes(tmp_path, monkeypatch):
    from alexnet.data.prepare import prepare, read_rejects
    from alexnet.data.sources import SourceError, resolve
    from alexnet.data.store import open_store

    src = _folder(tmp_path / "src")
    (src / "selfloop").symlink_to(".")
    (src / "up").symlink_to("..")
    (src / "again").symlink_to("c0")
    (src / "c0" / "broken.png").symlink_to(tmp_path / "nowhere.png")
    (src / "c1" / "sub").mkdir()
    (src / "c1" / "sub" / "x.png").write_bytes((src / "c1" / "i0.png").read_bytes())
    (src / ".cache").mkdir()
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("sub"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    summary = prepare(src, tmp_path / "out", size=16, quiet=True, workers=1)
    store = open_store(tmp_path / "out" / "train")
    assert store.classes == ["c0", "c1"] and len(store) == 6
    reasons = {f: r for _, f, r in read_rejects(tmp_path / "out" / "rejects.tsv")}
    assert set(reasons) == {"selfloop", "up", "again", "c0/broken.png", "c1/sub/", ".cache/"}
    assert "loop" in reasons["selfloop"] and "loop" in reasons["up"]
    assert "duplicates" in reasons["again"] and "broken link" in reasons["c0/broken.png"]
    assert "Permission denied" in reasons["c1/sub/"]
    assert summary["seen"] == summary["stored"] + summary["rejected"] == 12

    def unlistable(path):
        if str(path).endswith("c1"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", unlistable)
    with pytest.raises(SourceError, match=r"c1: a class folder with no files.*Permission denied"):
        resolve(src)
    monkeypatch.setattr(os, "scandir", real_scandir)
    (src / "c2").mkdir()
    with pytest.raises(SourceError, match="c2: a class folder with no files"):
        resolve(src)
    (src / "c2" / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"class 'c2' has no readable image.*bad\.png"):
        prepare(src, tmp_path / "out2", size=16, quiet=True, workers=1)
    assert not (tmp_path / "out2" / "train").exists()


def test_a_file_name_that_is_no_utf8_is_stored_escaped(tmp_path):
    from alexnet.data.prepare import prepare, read_rejects
    from alexnet.data.store import open_store

    src = _folder(tmp_path / "src")
    good = os.fsdecode(bytes(src / "c0") + b"/good\xff.png")
    shutil.copyfile(src / "c0" / "i0.png", good)
    Path(os.fsdecode(bytes(src / "c1") + b"/bad\xfe.png")).write_text("not an image")
    summary = prepare(src, tmp_path / "out", size=16, quiet=True, workers=1)
    assert summary["stored"] == 7 and summary["rejected"] == 1
    assert "c0/good\\xff.png" in open_store(tmp_path / "out" / "train").files
    ((_, name, reason),) = read_rejects(tmp_path / "out" / "rejects.tsv")
    assert name == "c1/bad\\xfe.png" and "bad\\xfe.png" in reason


def test_a_bomb_in_prepare_is_a_reject_with_its_reason(tmp_path):
    from alexnet.data.prepare import prepare, read_rejects

    src = _folder(tmp_path / "src")
    _bomb_png(src / "c1" / "bomb.png")
    summary = prepare(src, tmp_path / "out", size=16, quiet=True, workers=1)
    ((_, name, reason),) = read_rejects(tmp_path / "out" / "rejects.tsv")
    assert summary["stored"] == 6 and name == "c1/bomb.png" and "megapixels" in reason


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
from alexnet.cli import main
sys.exit(main(["prepare", "synthetic:300:64", sys.argv[1], "--size", "64", "--quiet",
               "--workers", "2"]))
"""


def test_a_full_disk_is_one_line_and_leaves_nothing_that_looks_complete(tmp_path):
    import sys

    from alexnet.data.prepare import find_splits

    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(lrn.__file__).parents[2])}
    for limit in (100_000, 2_000_000):  # the train split's data, or only the next split's
        cmd = [sys.executable, "-c", FULL_DISK, str(out), str(limit)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().count("\n") == 0 and "File too large" in done.stderr
        assert "Traceback" not in done.stderr
        assert not list(out.glob(".*tmp-*")) and not list(
            out.glob(".*.tmp")
        )  # nothing partial left behind
        assert set(find_splits(out)) <= {"train"}  # what is there is whole
    done = subprocess.run([*cmd[:-1], "10000000000"], capture_output=True, env=env, timeout=300)
    assert done.returncode == 0 and set(find_splits(out)) == {"train", "val"}


def test_small_outputs_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """A write that fails half-way (a full disk) leaves the previous summary and rejects."""
    import errno

    from alexnet import fileio
    from alexnet.data.prepare import prepare

    src, out = _folder(tmp_path / "src"), tmp_path / "out"
    prepare(src, out, size=16, quiet=True, workers=1)
    before = {n: (out / n).read_bytes() for n in ("summary.json", "rejects.tsv")}
    real_open = open

    class HalfFull:
        def __init__(self, *args):
            self.f = real_open(*args)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio, "open", HalfFull, raising=False)  # the one atomic writer
    with pytest.raises(OSError, match="No space"):
        prepare(src, out, size=16, quiet=True, workers=1)
    assert {n: (out / n).read_bytes() for n in before} == before
    assert not list(out.glob(".*tmp-*")) and not list(out.glob(".*.tmp"))


def test_a_store_of_another_version_is_named_not_a_missing_split(tmp_path):
    from alexnet.data.prepare import find_splits, prepare
    from alexnet.data.store import VERSION

    out = tmp_path / "out"
    prepare(_folder(tmp_path / "src"), out, size=16, quiet=True, workers=1)
    meta = json.loads((out / "train" / "meta.json").read_text())
    (out / "train" / "meta.json").write_text(json.dumps({**meta, "version": VERSION - 1}))
    with pytest.raises(ValueError, match=f"version {VERSION - 1}.*reads version {VERSION}"):
        find_splits(out)


def test_a_split_name_taken_by_a_file_or_link_is_refused_and_kept(tmp_path):
    from alexnet.data.prepare import prepare

    src, out = _folder(tmp_path / "src"), tmp_path / "out"
    out.mkdir()
    (out / "train").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not a prepared split"):
        prepare(src, out, size=16, quiet=True, workers=1)
    assert (out / "train").read_text() == "mine" and not list(out.glob(".*tmp-*"))


def test_ctrl_c_in_prepare_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    from alexnet.cli import main
    from alexnet.data import prepare as prepare_module

    def interrupted(indices):
        raise KeyboardInterrupt

    src, out = _folder(tmp_path / "src"), tmp_path / "out"
    monkeypatch.setattr(prepare_module, "_process_chunk", interrupted)
    assert main(["prepare", str(src), str(out), "--size", "16", "--quiet", "--workers", "1"]) == 130
    _one_line_error(capsys, "interrupted")
    assert _listing(out) == [".lock"]


def test_sigkill_during_prepare_leaves_no_orphan_and_no_lock(tmp_path):
    """The workers die with a SIGKILL'd parent and never held its lock: the next prepare
    starts at once, removes the dead run's temporary split and completes."""
    import signal
    import sys
    import time

    from alexnet.data.prepare import find_splits

    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(lrn.__file__).parents[2])}
    cmd = [sys.executable, "-m", "alexnet", "prepare", "synthetic:6000:64", str(out)]
    cmd += ["--size", "64", "--quiet", "--workers", "2"]
    with open(tmp_path / "first.err", "w") as err:
        first = subprocess.Popen(cmd, stderr=err, env=env)
        deadline = time.time() + 60
        while not list(out.glob(".train.tmp-*/data.bin")) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert list(out.glob(".train.tmp-*")), "killed too late: the split was already complete"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert set(find_splits(out)) == {"train", "val"} and not list(out.glob(".*tmp-*"))
    assert "Traceback" not in (tmp_path / "first.err").read_text()


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda meta: "{not json", "not JSON"),
        (lambda meta: "[1, 2]", "not a JSON object"),
        (lambda meta: json.dumps({k: v for k, v in meta.items() if k != "classes"}), "'classes'"),
        (lambda meta: json.dumps({**meta, "image_size": "16"}), "'image_size'"),
    ],
)
def test_a_damaged_meta_json_is_one_line_naming_the_file(tmp_path, capsys, damage, named):
    from alexnet.cli import main
    from alexnet.data.prepare import prepare

    out = tmp_path / "out"
    prepare(_folder(tmp_path / "src"), out, size=16, quiet=True, workers=1)
    meta_path = out / "train" / "meta.json"
    meta_path.write_text(damage(json.loads(meta_path.read_text())))
    code = main(["train", "--data", str(out), "--max-steps", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert str(meta_path) in err and named in err and "prepare it again" in err
    assert "Traceback" not in err
