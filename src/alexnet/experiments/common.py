"""What every experiment shares: its context, training through `alexnet.train`, statistics over
seeds, provenance (hardware, commit, command) and the result.json it writes.

Training goes through the trainer's public entry points (`alexnet.train.run.train`, and
`resume` for a run directory left by an earlier invocation), one run directory per (arm, seed),
one `fit` per run: experiments that stop at a target (figure 1: 25% training error) or a
deadline pass it as the trainer's stop condition, checked after every epoch. A stopped run ends
at an epoch boundary with its checkpoint saved, so a stopped experiment picks up exactly where
it left off when started again.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from alexnet.cache import cache_dir
from alexnet.data.prepare import ensure_prepared
from alexnet.data.sources import default_cifar10_zip
from alexnet.fileio import atomic_write_text
from alexnet.train.config import make_config
from alexnet.train.loop import NonFiniteLossError
from alexnet.train.metrics_log import epoch_records
from alexnet.train.run import resume, train

CIFAR_NOTE = (
    "CIFAR-10 here is the shared quality-75 JPEG copy (chroma subsampled) of the original "
    "lossless images; accuracies run about 2-3 points lower than on the original batches."
)
SMOKE_DATA = "synthetic:64:{size}:10"  # tiny learnable stand-in: smoke runs need no data set


@dataclass
class Context:
    """One experiment invocation: where it writes, how much it runs, and its log."""

    name: str
    out: Path
    smoke: bool = False
    seeds: int = 3
    epochs: int | None = None  # None: the experiment's own default
    data: str = "cifar10"
    jobs: int = 1  # training runs in parallel (separate processes)
    threads: int = 0  # torch threads per run (0: the trainer's default)
    workers: int = 0  # loader processes per run (0: the run loads its own batches)
    options: dict[str, Any] = field(default_factory=dict)  # experiment-specific flags
    deadline: float | None = None  # time.time() after which no new epoch starts
    command: str = field(default_factory=lambda: shlex.join(["alexnet", *sys.argv[1:]]))
    started: float = field(default_factory=time.time)
    code: tuple[str, list[str]] = field(default_factory=lambda: git_state())  # at the start
    _log: TextIO | None = None

    def log(self, message: str) -> None:
        """A timestamped line to stdout and OUT/log.txt."""
        line = f"{time.strftime('%H:%M:%S', time.gmtime())} {message}"
        print(line, flush=True)
        if self._log is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self._log = (self.out / "log.txt").open("a", encoding="utf-8")
        self._log.write(line + "\n")
        self._log.flush()

    def data_spec(self, image_size: int) -> str:
        """The data source: a tiny synthetic set in smoke mode, else `data`."""
        return SMOKE_DATA.format(size=image_size) if self.smoke else self.data

    def smoke_text(self, text: str) -> str:
        """`text` (a description of the real data), or in smoke mode what the run really used."""
        if not self.smoke:
            return text
        return (
            f"--smoke: {SMOKE_DATA.format(size='SIZE')} (synthetic class-coloured noise, 64 "
            f"training images), not {self.data}: it checks the code and measures nothing"
        )


def prepared(spec: str, image_size: int, view: Path | None = None) -> Path:
    """The prepared directory of `spec` at `image_size` (prepared once into the trainer's cache).

    With `view`, a directory holding only the train split (a link), so the trainer neither
    validates nor tests on anything else: figure 1 measures training error only.
    """
    out = ensure_prepared(spec, cache_dir(), image_size, quiet=True)
    if view is None:
        return out
    view.mkdir(parents=True, exist_ok=True)
    link, target = view / "train", (out / "train").resolve()
    if link.is_symlink() and link.resolve() != target:
        link.unlink()  # left by a run with another cache (or a store since prepared again)
    if not link.exists():
        link.symlink_to(target, target_is_directory=True)
    return view


def held_out_zip(
    source: Path,
    dest: Path,
    fraction: float = 0.1,
    seed: int = 0,
    *,
    val_per_class: int | None = None,
    train_per_class: int | None = None,
    keep_test: bool = False,
) -> Path:
    """A copy of a `[prefix/]<split>/<class>/<file>` zip whose train split is divided into
    `train` and `val` (a seeded `fraction`, or `val_per_class` images, of every class), so
    nothing tuned on it can see the test images. With `train_per_class`, train keeps only that
    many of each class's remaining images (a reduced, stratified training set); with
    `keep_test`, the source's test split is copied whole. JPEG bytes are copied unchanged.
    Built once."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    rng = np.random.default_rng(seed)
    try:
        with zipfile.ZipFile(source) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zout:
            by_class: dict[str, list[str]] = {}
            tests: list[str] = []
            for name in zin.namelist():
                parts = name.split("/")
                if len(parts) >= 3 and not name.endswith("/"):
                    if parts[-3] == "train":
                        by_class.setdefault(parts[-2], []).append(name)
                    elif parts[-3] == "test":
                        tests.append(name)
            if not by_class:
                raise ValueError(f"{source}: no train/<class>/<file> members to hold out from")
            for cls in sorted(by_class):
                names = sorted(by_class[cls])
                n_val = round(len(names) * fraction) if val_per_class is None else val_per_class
                n_train = len(names) - n_val if train_per_class is None else train_per_class
                if n_val < 0 or n_train < 1 or n_val + n_train > len(names):
                    raise ValueError(
                        f"{source}: class {cls} has {len(names)} training images; cannot hold out "
                        f"{n_val} val and keep {n_train} train (val >= 0, train >= 1, both fitting)"
                    )
                order = rng.permutation(len(names)).tolist()
                split = {i: "val" for i in order[:n_val]}
                split.update({i: "train" for i in order[n_val : n_val + n_train]})
                for i, name in enumerate(names):
                    if i in split:
                        zout.writestr(f"{split[i]}/{cls}/{name.rsplit('/', 1)[1]}", zin.read(name))
            if keep_test:
                for name in sorted(tests):
                    parts = name.split("/")
                    zout.writestr(f"test/{parts[-2]}/{parts[-1]}", zin.read(name))
    except BaseException:  # a refused count or a full disk leaves no partial zip
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(dest)
    return dest


def source_zip(spec: str) -> Path:
    """The zip behind a data spec: the shared CIFAR-10 zip for `cifar10`, else `spec` itself."""
    path = default_cifar10_zip() if spec == "cifar10" else Path(spec)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{spec}: a held-out sweep needs a zip laid out <split>/<class>/<file>")
    return path


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Config layers overlaid in order; `model_options` merge key by key (as make_config does)."""
    out: dict[str, Any] = {}
    for layer in layers:
        options = {**out.get("model_options", {}), **layer.get("model_options", {})}
        out.update(layer)
        if options:
            out["model_options"] = options
    return out


def fit(
    layer: dict[str, Any],
    run_dir: Path,
    epochs: int,
    until: Callable[[list[dict[str, Any]]], bool] | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Train the config `layer` (TrainConfig fields) into `run_dir` for `epochs`, or until
    `until(epoch records)` holds; returns records, test metrics, seconds, divergence, and
    `cut_short` when `deadline` (a time.time()) stopped it first.

    One training call: `until` and `deadline` are its stop condition, asked after each epoch
    (no epoch starts after the deadline). Continues a run directory left by an earlier, stopped
    invocation from its checkpoint.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    start, diverged = time.perf_counter(), False
    records = epoch_records(run_dir)

    def reached(records: list[dict[str, Any]]) -> bool:
        return bool(until and records and until(records))

    def stop(records: list[dict[str, Any]]) -> bool:
        return reached(records) or (deadline is not None and time.time() >= deadline)

    done = len(records) >= epochs or reached(records)
    if not done and (deadline is None or time.time() < deadline):
        quiet = {"quiet": True, "epochs": epochs}  # quiet: not saved, so given on resume too
        with (run_dir / "train.log").open("a") as sink, contextlib.redirect_stdout(sink):
            try:
                if (run_dir / "checkpoints" / "last.pt").is_file():
                    resume(run_dir, overrides=quiet, stop=stop)
                else:  # no checkpoint: an earlier attempt's partial files are replaced
                    defaults = {"safetensors": False, "log_every": 0}
                    config = make_config(defaults, layer, {**quiet, "out": str(run_dir)})
                    train(config, stop=stop, overwrite=True)
            except NonFiniteLossError as err:
                print(f"diverged: {err}")
                diverged = True
        records = epoch_records(run_dir)
    test_path = run_dir / "test_metrics.json"
    return {
        "records": records,
        "test": json.loads(test_path.read_text()) if test_path.is_file() else None,
        "seconds": time.perf_counter() - start,
        "diverged": diverged,
        "cut_short": not diverged and not (len(records) >= epochs or reached(records)),
        "run_dir": str(run_dir),
    }


def _fit_task(args: tuple[dict[str, Any], str, int, Any, float | None]) -> dict[str, Any]:
    layer, run_dir, epochs, until, deadline = args
    return fit(layer, Path(run_dir), epochs, until, deadline)


def fit_all(
    ctx: Context,
    tasks: Sequence[tuple[str, dict[str, Any], Path, int, Any]],
) -> dict[str, dict[str, Any]]:
    """Run (key, layer, run_dir, epochs, until) tasks, `ctx.jobs` at a time in separate
    processes (each with `ctx.threads` torch threads and `ctx.workers` loader processes);
    {key: fit's result}. `until` must be picklable (a module-level callable or a
    functools.partial of one)."""
    machine = {"threads": ctx.threads, "workers": ctx.workers}
    machine = {key: value for key, value in machine.items() if value}
    tasks = [(k, {**machine, **lay}, d, e, u) for k, lay, d, e, u in tasks]
    results: dict[str, dict[str, Any]] = {}
    if ctx.jobs <= 1:
        for key, layer, run_dir, epochs, until in tasks:
            results[key] = fit(layer, run_dir, epochs, until, ctx.deadline)
            ctx.log(f"{key}: {describe(results[key])}")
        return results
    spawn = multiprocessing.get_context("spawn")  # no fork of a threaded torch process
    with ProcessPoolExecutor(max_workers=ctx.jobs, mp_context=spawn) as pool:
        futures = {
            key: pool.submit(_fit_task, (layer, str(run_dir), epochs, until, ctx.deadline))
            for key, layer, run_dir, epochs, until in tasks
        }
        for key, future in futures.items():
            results[key] = future.result()
            ctx.log(f"{key}: {describe(results[key])}")
    return results


def describe(result: dict[str, Any]) -> str:
    """One log line for a finished training run."""
    last = result["records"][-1] if result["records"] else {}
    text = f"{len(result['records'])} epochs in {result['seconds']:.0f} s"
    if last:
        text += f", last train top-1 err {last['train_top1_err']:.4f}"
    if result["test"]:
        text += f", {result['test']['split']} top-1 err {result['test']['top1_err']:.4f}"
    return (
        text
        + (" (diverged)" if result["diverged"] else "")
        + (" (cut short by the deadline)" if result["cut_short"] else "")
    )


def summary(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and spread over seeds: the sample standard deviation (n - 1), min and max; values
    that are None (e.g. a target never reached) are counted in `missing`, not averaged."""
    have = [float(v) for v in values if v is not None and math.isfinite(v)]
    out: dict[str, Any] = {
        "per_seed": list(values),
        "n": len(have),
        "missing": len(values) - len(have),
    }
    if have:
        out["mean"] = statistics.fmean(have)
        out["std"] = statistics.stdev(have) if len(have) > 1 else 0.0
        out["min"], out["max"] = min(have), max(have)
    return out


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    """Where the numbers were measured: CPU, cores usable, GPU if any, torch version."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cores": cores, "gpu": gpu, "torch": torch.__version__}


def git_state() -> tuple[str, list[str]]:
    """(HEAD of the checkout this package runs from, the files under src/alexnet that differ
    from it: edited or not yet committed), so a result names exactly the code it ran. For a
    copy of a clean checkout sent elsewhere, $ALEXNET_SOURCE_COMMIT names the commit it holds."""
    root = Path(__file__).resolve().parents[3]

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        # rstrip only: a porcelain line starts with its status column, which may be a space
        return done.stdout.rstrip() if done.returncode == 0 else ""

    given = os.environ.get("ALEXNET_SOURCE_COMMIT")
    if given:  # a copy sent elsewhere (a device machine), whose .git may be missing or stale
        return f"{given} (named by ALEXNET_SOURCE_COMMIT)", []
    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    status = git("status", "--porcelain", "--", "src/alexnet")
    return head, [line[3:] for line in status.splitlines() if line.strip()]


def write_result(ctx: Context, result: dict[str, Any]) -> Path:
    """OUT/result.json: the experiment's own fields plus provenance."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    commit, dirty = ctx.code
    if ctx.smoke:  # the description of the real data would say what this run did not use
        result = {**result, "data": ctx.smoke_text(str(result.get("data", "")))}
        if result.get("title"):
            result["title"] = f"--smoke, synthetic data (not {ctx.data}): {ctx.name}"
    result = {
        "experiment": ctx.name,
        **result,
        "smoke": ctx.smoke,
        "seeds": ctx.seeds,
        "wall_seconds": round(time.time() - ctx.started, 1),
        "hardware": hardware(),
        "load_average_at_end": [round(v, 2) for v in load] if load else None,
        "git_commit": commit,
        "uncommitted_sources": dirty,
        "command": ctx.command,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = ctx.out / "result.json"
    atomic_write_text(path, json.dumps(result, indent=1, default=float) + "\n")
    ctx.log(f"wrote {path}")
    return path
