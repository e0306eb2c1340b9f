"""Fuzz `alexnet predict` with mutated weights files and images (issue 16).

A few hundred cases, seeded: truncations, bit flips and header edits of a small model's
.safetensors and checkpoint .pt, and truncated / bit-flipped PNG and JPEG files. Every case
must end in exit 0 or 2 with no traceback, write nothing outside the test's own directory
and leave the original files as they were. Runs in-process (`alexnet.cli.main`) to stay fast;
a handful also run as a real `python -m alexnet` process.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.cli import main
from alexnet.data.prepare import prepare

SRC = str(Path(__file__).resolve().parents[1] / "src")
SEED = 16


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = tmp_path_factory.mktemp("synthetic")
    prepare("synthetic:24:16:3", data, size=16, workers=1, quiet=True)
    out = tmp_path_factory.mktemp("run") / "r"
    argv = ["train", "--data", str(data), "--out", str(out), "--model", "cifar_fig1",
            "--model-option", "input_size=12", "--max-steps", "1", "--batch-size", "8",
            "--quiet", "--precision", "fp32", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    return out


def _flip(raw: bytes, rng: random.Random, lo: int = 0, hi: int | None = None, n: int = 1) -> bytes:
    b = bytearray(raw)
    hi = len(b) if hi is None else min(hi, len(b))
    for _ in range(n):
        i = rng.randrange(lo, hi)
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def _split_safetensors(raw: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _join_safetensors(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def safetensors_mutants(raw: bytes, rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    header, body = _split_safetensors(raw)
    n = struct.unpack("<Q", raw[:8])[0]
    meta = json.loads(header["__metadata__"]["alexnet"])
    names = [k for k in header if k != "__metadata__"]
    values = [None, -1, 0, 1, 2**31, 2**63, 1e12, -1e308, "x", [], {}, [1, 2], True, "nan"]
    out: list[tuple[str, bytes]] = []

    def meta_edit(rng: random.Random) -> bytes:
        h, m = copy.deepcopy(header), copy.deepcopy(meta)
        where = rng.choice(["top", "model_options", "preprocess"])
        target = m if where == "top" else m[where]
        if not isinstance(target, dict) or not target:
            target = m
        key = rng.choice([*target, "num_classes", "input_size", "image_size"])
        if rng.random() < 0.2:
            target.pop(key, None)
        else:
            target[key] = rng.choice(values)
        h["__metadata__"]["alexnet"] = json.dumps(m)
        return _join_safetensors(h, body)

    def tensor_edit(rng: random.Random) -> bytes:
        h = copy.deepcopy(header)
        name = rng.choice(names)
        field = rng.choice(["dtype", "shape", "data_offsets", "drop"])
        if field == "drop":
            del h[name]
        elif field == "dtype":
            h[name]["dtype"] = rng.choice(["F64", "F16", "I8", "BOOL", "U8", "XX", 3])
        elif field == "shape":
            h[name]["shape"] = rng.choice([[], [1], [2**40], [-1], [0], [3, 5], "x"])
        else:
            a, b = h[name]["data_offsets"]
            h[name]["data_offsets"] = rng.choice([[b, a], [a, b + 4], [a, 2**62], [-1, b], [a]])
        return _join_safetensors(h, body)

    kinds = ["truncate", "flip_header", "flip_body", "length", "meta", "tensor", "garbage"]
    for i in range(count):
        kind = kinds[i % len(kinds)]
        if kind == "truncate":
            data = raw[: rng.choice([0, 4, 8, 9, n // 2, n + 8, n + 8 + len(body) // 2])]
        elif kind == "flip_header":
            data = _flip(raw, rng, 8, 8 + n, n=rng.randint(1, 4))
        elif kind == "flip_body":
            data = _flip(raw, rng, 8 + n, n=rng.randint(1, 8))
        elif kind == "length":
            fake = rng.choice([0, 1, n - 1, n + 1, 2**62, 2**64 - 1, len(raw)])
            data = struct.pack("<Q", fake) + raw[8:]
        elif kind == "meta":
            data = meta_edit(rng)
        elif kind == "tensor":
            data = tensor_edit(rng)
        else:
            data = rng.randbytes(rng.randint(0, 64))
        out.append((f"st-{i}-{kind}.safetensors", data))
    return out


def checkpoint_mutants(raw: bytes, ckpt: dict, rng: random.Random, count: int) -> list:
    values = [None, -1, 0, 2**40, 1e12, "x", [], {}, torch.zeros(2)]
    out: list[tuple[str, bytes]] = []
    kinds = ["truncate", "flip", "edit", "edit_state"]
    for i in range(count):
        kind = kinds[i % len(kinds)]
        if kind == "truncate":
            data = raw[: rng.randrange(len(raw))]
        elif kind == "flip":
            data = _flip(raw, rng, n=rng.randint(1, 6))
        else:
            obj = copy.copy(ckpt)
            if kind == "edit":
                section = rng.choice(["top", "model_options", "preprocess"])
                target = obj if section == "top" else dict(obj[section])
                if section != "top":
                    obj[section] = target
                key = rng.choice(list(target))
                if rng.random() < 0.3:
                    target.pop(key)
                else:
                    target[key] = rng.choice(values)
            else:
                state = dict(obj["model"])
                key = rng.choice(list(state))
                change = rng.choice(["drop", "shape", "dtype", "extra", "nan"])
                if change == "drop":
                    del state[key]
                elif change == "shape":
                    state[key] = state[key].flatten()[:-1]
                elif change == "dtype":
                    state[key] = state[key].to(rng.choice([torch.int8, torch.bool, torch.float64]))
                elif change == "extra":
                    state["surplus.weight"] = torch.zeros(3)
                else:
                    state[key] = torch.full_like(state[key], float("nan"))
                obj["model"] = state
            buffer = io.BytesIO()
            torch.save(obj, buffer)
            data = buffer.getvalue()
        out.append((f"pt-{i}-{kind}.pt", data))
    return out


def image_mutants(rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    from PIL import Image

    pixels = np.random.default_rng(SEED).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    originals = {}
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt)
        originals[fmt] = buffer.getvalue()
    out = []
    kinds = ["truncate", "flip", "flip_head", "swap"]
    for i in range(count):
        fmt = "PNG" if i % 2 else "JPEG"
        raw = originals[fmt]
        kind = kinds[(i // 2) % len(kinds)]
        if kind == "truncate":
            data = raw[: rng.randrange(len(raw))]
        elif kind == "flip":
            data = _flip(raw, rng, n=rng.randint(1, 10))
        elif kind == "flip_head":
            data = _flip(raw, rng, 0, 40, n=rng.randint(1, 3))
        else:  # a chunk of the file moved elsewhere
            a, b = sorted(rng.sample(range(len(raw)), 2))
            data = raw[:a] + raw[b:] + raw[a:b]
        out.append((f"img-{i}-{kind}.{'png' if fmt == 'PNG' else 'jpg'}", data))
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_predict_survives_mutated_weights_and_images(run, tmp_path, monkeypatch, capsys):
    from PIL import Image

    rng = random.Random(SEED)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # anything written to the working directory would show here
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    good_image = tmp_path / "good.png"
    Image.fromarray(np.full((20, 20, 3), 120, np.uint8)).save(good_image)
    weights = run / "model.safetensors"
    ckpt_path = run / "checkpoints" / "last.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    before = {p: _digest(p) for p in (weights, ckpt_path)}
    run_tree = _tree(run)

    cases_dir = tmp_path / "cases"
    cases_dir.mkdir()
    cases: list[tuple[Path, Path]] = []  # (weights, image)
    for name, data in [
        *safetensors_mutants(weights.read_bytes(), rng, 140),
        *checkpoint_mutants(ckpt_path.read_bytes(), ckpt, rng, 60),
    ]:
        (cases_dir / name).write_bytes(data)
        cases.append((cases_dir / name, good_image))
    for name, data in image_mutants(rng, 120):
        (cases_dir / name).write_bytes(data)
        cases.append((weights, cases_dir / name))
    made = _tree(tmp_path)

    counts = {"cases": len(cases), "clean": 0, "tracebacks": 0, "data_lost": 0}
    failures = []
    exits = {0: 0, 2: 0}
    for weights_path, image in cases:
        argv = ["predict", str(weights_path), str(image), str(good_image), "--top", "2"]
        try:
            rc = main(argv)
        except BaseException as err:  # a traceback: what this test counts
            rc = None
            failures.append(f"{weights_path.name} {image.name}: {type(err).__name__}: {err}")
        err_text = capsys.readouterr().err
        if rc is None or "Traceback" in err_text:
            counts["tracebacks"] += 1
        elif rc in (0, 2):
            exits[rc] += 1
            lines = [line for line in err_text.splitlines() if line.strip()]
            # exit 2: one line naming the weights file; exit 0: one line per unreadable image
            ok = (rc == 2 and len(lines) == 1 and str(weights_path) in lines[0]) or (
                rc == 0 and all(line.startswith("error: ") for line in lines)
            )
            counts["clean"] += ok
            if not ok:
                failures.append(f"{weights_path.name} {image.name}: rc {rc}: {err_text!r}")
        else:
            failures.append(f"{weights_path.name} {image.name}: rc {rc}: {err_text!r}")
    if {p: _digest(p) for p in before} != before or _tree(run) != run_tree:
        counts["data_lost"] += 1
    written = {p for p in _tree(tmp_path) - made if p != "cache" and not p.startswith("cache/")}
    print(f"\nfuzz predict: {counts}, by exit status {exits}")
    assert not failures, "\n".join(failures[:20])
    assert counts["clean"] == counts["cases"] and counts["data_lost"] == 0
    assert not written, sorted(written)[:10]


def test_a_few_mutants_in_a_real_process(run, tmp_path):
    rng = random.Random(SEED + 1)
    weights = run / "model.safetensors"
    picks = safetensors_mutants(weights.read_bytes(), rng, 7)[::2]
    env = {**os.environ, "PYTHONPATH": SRC, "ALEXNET_NO_TCMALLOC": "1",
           "ALEXNET_CACHE": str(tmp_path / "cache")}  # fmt: skip
    from PIL import Image

    image = tmp_path / "a.png"
    Image.fromarray(np.full((20, 20, 3), 7, np.uint8)).save(image)
    for name, data in picks:
        path = tmp_path / name
        path.write_bytes(data)
        result = subprocess.run(
            [sys.executable, "-m", "alexnet", "predict", str(path), str(image)],
            capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode in (0, 2), result.stderr
        assert "Traceback" not in result.stderr, result.stderr
