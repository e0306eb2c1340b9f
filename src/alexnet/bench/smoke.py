"""Smoke runs of `alexnet train` in a child process, for benchmarks on a lent machine.

The child is this Python with this alexnet on its path (PYTHONPATH gets the package's parent
folder first), in its own session so that a run past its time is killed with every process it
started (torchrun's workers too). The result says how it went; `checked` makes a failure an
error that carries the tail of the output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import alexnet
from alexnet.train.metrics_log import read_metrics

TORCHRUN = ("-m", "torch.distributed.run", "--standalone")


def train_args(
    data: Path,
    run_dir: Path,
    *,
    steps: int,
    batch_size: int,
    workers: int,
    precision: str,
    input_size: int | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """`alexnet train` arguments for `steps` steps on prepared `data` (the recipe's epochs, cut
    short): the run and nothing more (no safetensors copy of the weights, no progress bar, a
    metrics line every step)."""
    args = [
        "train", "--data", str(data), "--out", str(run_dir), "--overwrite",
        "--max-steps", str(steps), "--batch-size", str(batch_size),
        "--workers", str(workers), "--log-every", "1", "--quiet", "--no-safetensors",
        "--precision", precision, *extra,
    ]  # fmt: skip
    return args + (["--model-option", f"input_size={input_size}"] if input_size else [])


def smoke_run(python_args: list[str], run_dir: Path, timeout_s: float) -> dict[str, Any]:
    """Run `python PYTHON_ARGS`, killed past `timeout_s`: rc, seconds, the last img/s of the
    run's metrics.jsonl and the tail of its output."""
    env = dict(os.environ)
    package_root = str(Path(alexnet.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, *python_args], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, timed_out = proc.communicate(timeout=max(1.0, timeout_s))[0], False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the session: torchrun's workers too
        output, timed_out = proc.communicate()[0], True
    rates = [r["img_per_s"] for r in read_metrics(run_dir) if "img_per_s" in r]
    return {
        "command": ["python", *python_args],
        "rc": proc.returncode,
        "timed_out": timed_out,
        "seconds": time.monotonic() - start,
        "img_per_s": rates[-1] if rates else None,
        "output_tail": output[-2000:],
    }


def checked(result: dict[str, Any]) -> dict[str, Any]:
    """`result` of `smoke_run`, or a RuntimeError naming the command and how it ended."""
    if result["rc"] != 0:
        why = "timed out" if result["timed_out"] else f"exit status {result['rc']}"
        raise RuntimeError(f"{' '.join(result['command'])}: {why}\n{result['output_tail']}")
    return result
