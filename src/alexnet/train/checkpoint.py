"""Checkpoints: a dict of tensors and plain data, written atomically, read without unpickling.

The layout is the one in docs/architecture.md. Writing goes to a temporary file in the same
directory, is fsync'd, then `os.replace`d over the old file, so a crash or a full disk during a
write leaves the previous checkpoint intact (the timm habit). Reading uses
`torch.load(weights_only=True)`: a checkpoint cannot run code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.fileio import atomic_path

REQUIRED_KEYS = ("model", "model_name", "model_options", "preprocess")
# what `alexnet train --resume` needs beyond REQUIRED_KEYS (a released weights file has none)
RESUME_KEYS = ("optimizer", "scheduler", "epoch", "step", "batch_in_epoch", "rng", "best_metric",
               "config")  # fmt: skip


def save_atomic(obj: dict[str, Any], path: str | Path) -> Path:
    """Write `obj` with torch.save to `path` so that readers see the old or the new file only
    (a failed write raises `alexnet.fileio.WriteError` and leaves the old file)."""
    path = Path(path)
    with atomic_path(path, mkdir=True) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint (or a run dir's checkpoints/last.pt) safely; errors name the file."""
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a readable alexnet checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        raise ValueError(f"{path} is not an alexnet checkpoint (needs keys {REQUIRED_KEYS})")
    return ckpt


def check_resumable(ckpt: dict[str, Any], path: str | Path) -> None:
    """Raise naming `path` unless `ckpt` holds everything an exact resume restores."""
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise ValueError(
            f"{path}: cannot resume from this checkpoint: it lacks {missing} (a weights-only "
            "file? resume takes a run dir or its checkpoints/last.pt)"
        )
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["rng"], dict):
        raise ValueError(f"{path}: cannot resume: its config or rng state is malformed")


def resolve_checkpoint(path: str | Path, name: str = "last.pt") -> Path:
    """A checkpoint file from a file path or a run dir (RUN_DIR/checkpoints/`name`)."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / name
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return path


def rng_state() -> dict[str, Any]:
    """Every generator a training step draws from (dropout: torch; helpers: numpy, python)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured, so dropout masks continue as if never stopped."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    py_state = state["python"]
    random.setstate((py_state["version"], tuple(py_state["state"]), py_state["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
