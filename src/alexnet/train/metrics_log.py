"""RUN_DIR/metrics.jsonl (format in docs/architecture.md) and TensorBoard events.

Only rank 0 holds an enabled log. On resume, lines written after the checkpoint being resumed
are dropped first, so the file reads as if the run had never stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alexnet.fileio import WriteError, atomic_write_text

STEP_KEYS = ("epoch", "step", "loss", "lr", "img_per_s")
EPOCH_KEYS = (
    "epoch", "step", "train_loss", "train_top1_err", "train_top5_err", "val_loss",
    "val_top1_err", "val_top5_err", "lr", "img_per_s", "seconds",
)  # fmt: skip


class RunLog:
    """Append-only metrics of one run; a no-op when `run_dir` is None (ranks other than 0)."""

    def __init__(self, run_dir: Path | None, resume_step: int | None = None) -> None:
        self.path = None if run_dir is None else Path(run_dir) / "metrics.jsonl"
        self.writer = None
        if self.path is None:
            return
        if resume_step is not None and self.path.exists():
            truncate_after(self.path, resume_step)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self.writer = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_step)

    def _write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        try:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as err:  # a full disk: the torn line is dropped on resume
            raise WriteError(err.errno, f"cannot append to {self.path}: {err.strerror}") from err

    def step(self, **values: Any) -> None:
        """A step line: epoch, step, loss, lr, img_per_s."""
        self._write({"kind": "step", **{k: values[k] for k in STEP_KEYS}})
        if self.writer is not None:
            self.writer.add_scalar("train/step_loss", values["loss"], values["step"])
            self.writer.add_scalar("train/lr", values["lr"], values["step"])

    def epoch(self, **values: Any) -> None:
        """An epoch line with the keys in EPOCH_KEYS (val_* are None without a val split)."""
        self._write({"kind": "epoch", **{k: values.get(k) for k in EPOCH_KEYS}})
        if self.writer is not None:
            for key in EPOCH_KEYS[2:]:
                if values.get(key) is not None:
                    self.writer.add_scalar(f"epoch/{key}", values[key], values["epoch"])
            self.writer.flush()

    def partial_epoch(self, **values: Any) -> None:
        """An epoch cut short by max_steps: {"kind": "partial_epoch", "epoch", "batches", "of",
        "step", "train_loss", "train_top1_err", "train_top5_err", "lr", "img_per_s", "seconds"}."""
        self._write({"kind": "partial_epoch", **values})

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def truncate_after(path: Path, step: int) -> None:
    """Keep only the records of `path` whose step is at most `step` (atomic rewrite); a torn
    last line (a full disk or a kill mid-write) goes too, and so do partial-epoch records (the
    resumed run completes that epoch)."""
    kept = [
        r
        for r in read_metrics(path)
        if r.get("step", 0) <= step and r.get("kind") != "partial_epoch"
    ]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl (a run dir or the file; none if it does not exist).

    The one reader of the format: a torn last line (a run killed or out of disk mid-write) is
    skipped; a bad line anywhere else is an error naming the file and line.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"a JSON {type(record).__name__}, not an object")
        except ValueError as err:  # json.JSONDecodeError is a ValueError
            if not any(rest.strip() for rest in lines[n:]):
                continue  # the last line: torn by a kill or a full disk
            raise ValueError(f"{path}:{n}: not a metrics record ({err})") from err
        records.append(record)
    return records


def epoch_records(path: str | Path) -> list[dict[str, Any]]:
    """The `{"kind": "epoch", ...}` records of a metrics.jsonl (a run dir or the file), in order."""
    return [r for r in read_metrics(path) if r.get("kind") == "epoch"]
