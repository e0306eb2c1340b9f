#!/usr/bin/env python3
"""Does fine-tuning (`alexnet train --init-from`) reach a given accuracy in fewer steps than
training from scratch on the same small data? (issue 14's last fine-tuning check)

1. A source net trains on one task (default: CIFAR-10 classes 0-4, every training image).
2. On a different target task with little data (default: CIFAR-10 classes 5-9, 500 training
   images per class; 200 other training images per class held out as the val split; the 1,000
   test images per class as the test split) two arms train with the same seed, data, batch and
   schedule: `--init-from SOURCE_RUN` (every layer but the classifier loaded, the new classifier at
   `--new-layer-lr` x the lr) and from scratch; optionally a third arm with `--freeze LAYER`.
3. Each run's metrics.jsonl gives val accuracy at every epoch end; the steps an arm needs to
   reach the threshold are read off (the first epoch end at or above it, and linearly
   interpolated between epoch ends, step 0 at chance). Thresholds are fixed before the runs:
   the scratch arm's final val accuracy (per seed) and the round numbers of `--thresholds`.
4. OUT/result.json holds the numbers and the curves; a table is printed.

The CIFAR-10 subsets are image folders (`ROOT/{train,val,test}/<class>/*.jpg`) extracted from the
shared zip into OUT/data (JPEG bytes copied unchanged). `--source-data` / `--target-data` take any
data spec instead (the test uses `synthetic:`). Runs already complete in OUT are reused, so the
script continues where it stopped.

    ALEXNET_CACHE=/tmp/cache nice -n 19 python scripts/bench_finetune.py --out /tmp/ftbench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.cli import main as alexnet_main
from alexnet.data.sources import default_cifar10_zip

ARMS = ("finetune", "scratch")


def class_range(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '5,7,9' -> [5, 7, 9]."""
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    return out


def subset_folder(
    zip_path: Path,
    dest: Path,
    classes: list[int],
    train_per_class: int,
    val_per_class: int,
    with_test: bool = True,
    seed: int = 0,
) -> Path:
    """An image folder of CIFAR-10 `classes` (indices in the sorted class order) from the zip:
    train and val drawn without overlap (seeded) from the zip's train split (`train_per_class`
    0: every image not in val), test the zip's whole test split of those classes. Built once."""
    done = dest / ".complete"
    if done.is_file():
        return dest
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(zip_path) as zf:
        by: dict[tuple[str, str], list[str]] = {}
        for name in zf.namelist():
            parts = name.split("/")
            if len(parts) >= 3 and not name.endswith("/") and parts[-3] in ("train", "test"):
                by.setdefault((parts[-3], parts[-2]), []).append(name)
        names = sorted({c for _, c in by})
        for index in classes:
            cls = names[index]
            pool = sorted(by[("train", cls)])
            order = rng.permutation(len(pool))
            val = [pool[i] for i in order[:val_per_class]]
            rest = [pool[i] for i in order[val_per_class:]]
            train = rest[:train_per_class] if train_per_class else rest
            picks = {"train": train, "val": val} if val else {"train": train}
            if with_test:
                picks["test"] = sorted(by[("test", cls)])
            for split, members in picks.items():
                folder = dest / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                for member in members:
                    (folder / member.rsplit("/", 1)[1]).write_bytes(zf.read(member))
    done.write_text(json.dumps({"zip": str(zip_path), "classes": [names[i] for i in classes]}))
    return dest


def read_curve(run_dir: Path) -> list[tuple[int, float]]:
    """[(step, val top-1 accuracy)] at every epoch end of a run's metrics.jsonl."""
    curve = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "epoch" and record.get("val_top1_err") is not None:
            curve.append((int(record["step"]), 1.0 - float(record["val_top1_err"])))
    return curve


def steps_to(
    curve: list[tuple[int, float]], threshold: float, chance: float
) -> tuple[float | None, int | None]:
    """(interpolated step, first epoch-end step) at which val accuracy reaches `threshold`;
    (None, None) if it never does. Between epoch ends accuracy is taken as linear; step 0 sits
    at `chance` (a fresh classifier guesses)."""
    prev_step, prev_acc = 0, chance
    for step, acc in curve:
        if acc >= threshold:
            if acc > prev_acc and threshold > prev_acc:
                at = prev_step + (threshold - prev_acc) / (acc - prev_acc) * (step - prev_step)
            else:
                at = float(prev_step if threshold <= prev_acc else step)
            return at, step
        prev_step, prev_acc = step, acc
    return None, None


def train_args(args: argparse.Namespace) -> list[str]:
    """The `alexnet train` flags every run shares: net, recipe (figure 1's: no regularisation,
    constant lr, SGD momentum 0.9, mean-image normalisation, no val held out of train; every
    field the data-dependent recipe would choose is given) and logging."""
    return [
        "--model", args.model, "--image-size", str(args.image_size),
        "--weight-decay", "0", "--no-flip", "--pca-std", "0", "--schedule", "constant",
        "--normalize", "mean_image", "--val-split", "0",
        "--momentum", "0.9", "--precision", "fp32", "--threads", str(args.threads),
        "--log-every", str(args.log_every), "--quiet", "--no-safetensors",
        *[item for option in args.model_option for item in ("--model-option", option)],
    ]  # fmt: skip


def train(run_dir: Path, argv: list[str], log: Any) -> dict[str, Any]:
    """`alexnet train ... --out run_dir` unless run_dir already holds a finished run:
    {"seconds", "diverged"} (a non-finite loss stops a run: exit 3, kept as diverged)."""
    done = run_dir / "done.json"
    if done.is_file():
        return {"diverged": False, **json.loads(done.read_text())}
    start = time.time()
    full = ["train", *argv, "--out", str(run_dir)]
    log(f"alexnet {shlex.join(full)}")
    code = alexnet_main(full)
    if code not in (0, 3):
        raise RuntimeError(f"alexnet train exited {code}: {shlex.join(full)}")
    status = {"seconds": round(time.time() - start, 1), "diverged": code == 3}
    done.write_text(json.dumps(status))
    return status


def summary(values: list[float | None]) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    return {
        "per_seed": values,
        "n": len(got),
        "mean": statistics.fmean(got) if got else None,
        "std": statistics.stdev(got) if len(got) > 1 else None,
    }


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__}


def git_commit() -> str:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                         text=True)  # fmt: skip
    return out.stdout.strip()[:12]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build the data, train the source and every (arm, seed), read the curves; the result."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    log_file = (out / "log.txt").open("a")

    def log(message: str) -> None:
        line = f"{time.strftime('%H:%M:%S', time.gmtime())} {message}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    src_classes, dst_classes = class_range(args.source_classes), class_range(args.target_classes)
    if args.source_data:
        source_data = args.source_data
    else:
        zip_path = Path(args.zip) if args.zip else default_cifar10_zip()
        source_data = str(subset_folder(zip_path, out / "data" / "source", src_classes,
                                        args.source_per_class, 0))  # fmt: skip
    if args.target_data:
        target_data = args.target_data
    else:
        zip_path = Path(args.zip) if args.zip else default_cifar10_zip()
        target_data = str(subset_folder(zip_path, out / "data" / "target", dst_classes,
                                        args.target_per_class, args.val_per_class))  # fmt: skip
    common = train_args(args)
    source_run = out / "source"
    source_status = train(
        source_run,
        ["--data", source_data, *common, "--epochs", str(args.source_epochs),
         "--batch-size", str(args.source_batch_size), "--lr", str(args.source_lr), "--seed", "0"],
        log,
    )  # fmt: skip
    if source_status["diverged"]:
        raise RuntimeError(f"the source run diverged: {source_run}")
    source_seconds = source_status["seconds"]
    head_lr = {"finetune": args.new_layer_lr}
    if args.extra_new_layer_lr:
        head_lr[f"finetune-head{args.extra_new_layer_lr:g}x"] = args.extra_new_layer_lr
    arms = [*head_lr, "scratch"] + ([f"freeze-{args.freeze}"] if args.freeze else [])
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    for seed in range(args.seeds):
        for arm in arms:
            extra = []
            if arm != "scratch":
                lr_x = head_lr.get(arm, args.new_layer_lr)
                extra = ["--init-from", str(source_run), "--new-layer-lr", str(lr_x)]
            if arm.startswith("freeze-"):
                extra += ["--freeze", args.freeze]
            run_dir = out / "target" / f"{arm}-seed{seed}"
            status = train(
                run_dir,
                ["--data", target_data, *common, "--epochs", str(args.epochs),
                 "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                 "--seed", str(seed), *extra],
                log,
            )  # fmt: skip
            test = run_dir / "test_metrics.json"
            runs[arm].append(
                {
                    "run": str(run_dir),
                    "curve": read_curve(run_dir),
                    "seconds": status["seconds"],
                    "diverged": status["diverged"],
                    "test_top1_acc": json.loads(test.read_text())["top1_acc"]
                    if test.is_file()
                    else None,
                }
            )
    num_classes = args.num_classes if args.target_data else len(dst_classes)
    result = analyse(runs, num_classes, args.thresholds)
    source_curve = read_curve(source_run)
    source_test = source_run / "test_metrics.json"
    result.update(
        {
            "claim": "fine-tuning from a source task reaches a given val accuracy in fewer steps "
            "than training from scratch on the same small target data",
            "source": {
                "data": source_data,
                "classes": src_classes,
                "epochs": args.source_epochs,
                "batch_size": args.source_batch_size,
                "lr": args.source_lr,
                "seconds": round(source_seconds, 1),
                "final_val_top1_acc": source_curve[-1][1] if source_curve else None,
                "test_top1_acc": json.loads(source_test.read_text())["top1_acc"]
                if source_test.is_file()
                else None,
            },
            "target": {
                "data": target_data,
                "classes": dst_classes,
                "train_per_class": args.target_per_class,
                "val_per_class": args.val_per_class,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "lr": args.lr,
                "new_layer_lr": args.new_layer_lr,
                "seeds": args.seeds,
            },
            "model": args.model,
            "image_size": args.image_size,
            "recipe": "SGD momentum 0.9, constant lr, no weight decay, no flips, no colour "
            "noise, fp32, mean-image normalisation (the fine-tuned arms: the source's)",
            "wall_seconds": round(time.time() - started, 1),
            "hardware": hardware(),
            "git_commit": git_commit(),
            "command": shlex.join([sys.executable, *sys.argv]),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    log(f"wrote {out / 'result.json'}")
    return result


def analyse(
    runs: dict[str, list[dict[str, Any]]], num_classes: int, fixed: list[float]
) -> dict[str, Any]:
    """Steps to each threshold per arm and seed, and scratch's steps over each other arm's (the
    speed-up). A diverged run counts as never reaching any threshold and has no final value."""
    chance = 1.0 / num_classes
    seeds = len(runs["scratch"])

    def final(run: dict[str, Any]) -> float | None:
        return None if run.get("diverged") or not run["curve"] else run["curve"][-1][1]

    thresholds: list[dict[str, Any]] = []
    named = [("scratch final", None)] + [(f"{t:g}", t) for t in fixed]
    for label, value in named:
        levels = [value if value is not None else final(r) for r in runs["scratch"]]
        per_arm: dict[str, Any] = {}
        for arm, arm_runs in runs.items():
            hits = [
                (None, None)
                if level is None or r.get("diverged")
                else steps_to(r["curve"], level, chance)
                for r, level in zip(arm_runs, levels, strict=True)
            ]
            per_arm[arm] = {
                "interpolated": summary([h[0] for h in hits]),
                "epoch_end": [h[1] for h in hits],
            }
        scratch = per_arm["scratch"]["interpolated"]["per_seed"]
        speedup = {}
        for arm in runs:
            if arm != "scratch":
                pairs = zip(scratch, per_arm[arm]["interpolated"]["per_seed"], strict=True)
                speedup[arm] = summary([a / b if a is not None and b else None for a, b in pairs])
        thresholds.append(
            {"label": label, "levels": levels, "arms": per_arm, "scratch_over": speedup}
        )
    arms = {
        arm: {
            "final_val_top1_acc": summary([final(r) for r in arm_runs]),
            "best_val_top1_acc": summary(
                [None if r.get("diverged") else max(a for _, a in r["curve"]) for r in arm_runs]
            ),
            "test_top1_acc": summary(
                [None if r.get("diverged") else r["test_top1_acc"] for r in arm_runs]
            ),
            "diverged": [bool(r.get("diverged")) for r in arm_runs],
            "steps": [r["curve"][-1][0] if r["curve"] else 0 for r in arm_runs],
            "seconds": [r["seconds"] for r in arm_runs],
            "curves": [r["curve"] for r in arm_runs],
            "runs": [r["run"] for r in arm_runs],
        }
        for arm, arm_runs in runs.items()
    }
    return {"chance": chance, "seeds": seeds, "thresholds": thresholds, "arms": arms}


def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(result: dict[str, Any]) -> str:
    """Steps to each threshold per arm and seed: interpolated, the first epoch end at or above
    it in brackets, and scratch's steps over the arm's."""
    names = list(result["arms"])
    lines = ["| threshold (val acc) | seed | " + " | ".join(names) + " |"]
    lines.append("|---" * (len(names) + 2) + "|")
    for th in result["thresholds"]:
        for s, level in enumerate(th["levels"]):
            cells = []
            for arm in names:
                data = th["arms"][arm]
                at, end = data["interpolated"]["per_seed"][s], data["epoch_end"][s]
                if result["arms"][arm]["diverged"][s]:
                    cells.append("diverged")
                    continue
                cell = "not reached" if at is None else f"{at:.0f} ({end})"
                ratio = th["scratch_over"].get(arm, {}).get("per_seed", [None] * (s + 1))[s]
                cells.append(cell + ("" if ratio is None else f", {ratio:.2f}x"))
            shown = "-" if level is None else f"{level:.3f}"
            lines.append(f"| {th['label']} = {shown} | {s} | {' | '.join(cells)} |")
    lines += ["", "| arm | final val acc per seed | test acc per seed | steps | seconds |",
              "|---|---|---|---|---|"]  # fmt: skip
    for arm, data in result["arms"].items():
        marks = ["diverged" if d else None for d in data["diverged"]]
        finals, tested = data["final_val_top1_acc"]["per_seed"], data["test_top1_acc"]["per_seed"]
        vals = ", ".join(m or _f(v, 4) for m, v in zip(marks, finals, strict=True))
        tests = ", ".join(m or _f(v, 4) for m, v in zip(marks, tested, strict=True))
        secs = ", ".join(_f(v) for v in data["seconds"])
        lines.append(f"| {arm} | {vals} | {tests} | {max(data['steps'])} | {secs} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output dir (data, runs, result.json)")
    p.add_argument("--zip", help="the CIFAR-10 zip (default: the shared copy)")
    p.add_argument("--source-data", help="a data spec for the source task instead of CIFAR-10")
    p.add_argument("--target-data", help="a data spec for the target task instead of CIFAR-10")
    p.add_argument("--source-classes", default="0-4", help="CIFAR-10 classes of the source task")
    p.add_argument("--target-classes", default="5-9", help="CIFAR-10 classes of the target task")
    p.add_argument("--num-classes", type=int, default=5,
                   help="with --target-data: its class count (chance accuracy)")  # fmt: skip
    p.add_argument("--source-per-class", type=int, default=0, help="0: every training image")
    p.add_argument("--target-per-class", type=int, default=500)
    p.add_argument("--val-per-class", type=int, default=200)
    p.add_argument("--model", default="cifar_fig1")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--source-epochs", type=int, default=3)
    p.add_argument("--source-batch-size", type=int, default=128)
    p.add_argument("--source-lr", type=float, default=0.005)
    p.add_argument("--epochs", type=int, default=15, help="target epochs, every arm")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--new-layer-lr", type=float, default=10.0)
    p.add_argument("--extra-new-layer-lr", type=float, default=0.0,
                   help="also a fine-tuned arm with this head lr multiplier (0: none)")  # fmt: skip
    p.add_argument("--freeze", default="", help="also a third arm frozen through this layer")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--thresholds", type=float, nargs="*", default=[0.5, 0.6])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=10)
    return p.parse_args(argv)


if __name__ == "__main__":
    measure(parse_args())
