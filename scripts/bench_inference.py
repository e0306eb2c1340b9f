#!/usr/bin/env python3
"""What does reduced-precision CPU inference cost in accuracy, and what does it buy in speed?
(issue 18, item 3)

1. Short runs train here, one per (data, seed): `alexnet train --data D --epochs 1
   --max-steps N --seed S --val-split 0` (Fashion-MNIST and CIFAR-10, the paper's net at 67 px,
   the small-image recipe). Runs already complete in OUT/runs are reused.
2. Each run's weights are evaluated on the data's held-out test split (every image, centre
   crop) at fp32, bf16 and int8 (`alexnet.infer.quantize`; int8 calibrated on 128 training
   images); the top-1 change against fp32 is given in points per seed and as the mean.
3. Latency at batch 1 and batch 64, for one trained net per data and for the paper's ImageNet
   net at 227 px (random weights: speed does not depend on them; calibrated on noise), every
   precision timed in each round one after the other (the order rotating) so that the
   machine's drift cancels; medians over the rounds.
4. OUT/result.json holds the numbers with the machine, the commit and the command; a table is
   printed. `--profile` adds onnxruntime's per-operator times of the int8 227-px net at batch 1.

    nice -n 10 python scripts/bench_inference.py --out /tmp/quantbench
"""

from __future__ import annotations

import os

# Before torch loads libgomp, which reads it once: spinning OpenMP threads collapse on a loaded
# two-core machine (docs/speed.md); the `alexnet` command sets it the same way.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alexnet import runtime
from alexnet.bench.run import machine
from alexnet.data.store import open_store
from alexnet.experiments.common import git_state
from alexnet.fileio import atomic_write_text
from alexnet.infer.features import prepared_splits
from alexnet.infer.quantize import calibration_data, for_inference, has_vnni, onnx_session
from alexnet.models import create_model
from alexnet.train.weights import load_weights

PRECISIONS = ("fp32", "bf16", "int8")


def train_command(data: str, seed: int, out: Path, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "alexnet", "train", "--data", data, "--epochs", "1",
        "--max-steps", str(args.max_steps), "--seed", str(seed), "--val-split", "0",
        "--threads", str(args.train_threads), "--out", str(out), "--quiet",
    ]  # fmt: skip


def train_all(args: argparse.Namespace, log: Callable[[str], None]) -> dict[tuple[str, int], Path]:
    """Every (data, seed) run, trained unless complete; `--jobs` of them at a time."""
    runs, pending = {}, []
    for data in args.data:
        for seed in args.seeds:
            run = Path(args.out) / "runs" / f"{data}-s{seed}"
            runs[data, seed] = run
            if not (run / "test_metrics.json").is_file():
                pending.append([*train_command(data, seed, run, args), "--overwrite"])
    while pending:
        batch, pending = pending[: args.jobs], pending[args.jobs :]
        log("training: " + "; ".join(shlex.join(c[2:]) for c in batch))
        procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL) for c in batch]
        for cmd, proc in zip(batch, procs, strict=True):
            if proc.wait() != 0:
                raise SystemExit(f"training failed: {shlex.join(cmd)}")
    return runs


@torch.inference_mode()
def test_top1(net: nn.Module, pre: Any, store_dir: Path, batch_size: int = 250) -> float:
    """Top-1 accuracy of `net` on every image of a prepared store (centre crop)."""
    store = open_store(store_dir)
    correct = 0
    for start in range(0, len(store), batch_size):
        idx = range(start, min(start + batch_size, len(store)))
        x = torch.stack([pre.center(store.image(i)) for i in idx])
        correct += int((net(x).argmax(1).numpy() == store.labels[list(idx)]).sum())
    return correct / len(store)


def accuracy(runs: dict[tuple[str, int], Path], log: Callable[[str], None]) -> dict[str, Any]:
    """{data: {precision: [top-1 per seed]}} on the test split."""
    out: dict[str, Any] = {}
    for (data, seed), run in runs.items():
        model, pre, _ = load_weights(run)
        test = prepared_splits(data, pre.image_size)["test"]
        calibration = calibration_data(str(run), pre, None)
        row = out.setdefault(data, {p: [] for p in PRECISIONS})
        for precision in PRECISIONS:
            net = for_inference(model, precision, torch.device("cpu"), calibration)
            row[precision].append(test_top1(net, pre, test))
        log(f"{data} seed {seed}: " + ", ".join(f"{p} {row[p][-1]:.4f}" for p in PRECISIONS))
    return out


def nets_for(model: nn.Module, calibration: list[np.ndarray]) -> dict[str, Callable]:
    """Every precision's forward pass, plus fp32 in onnxruntime (what int8's runtime does
    without quantization: it separates the runtime's share of the speed-up from int8's)."""
    nets: dict[str, Callable] = {
        p: for_inference(model, p, torch.device("cpu"), calibration) for p in PRECISIONS
    }
    fp32_onnx = onnx_session(model, calibration, int8=False)
    nets["onnx-fp32"] = lambda x: fp32_onnx.run(None, {"input": x.numpy()})[0]
    return nets


@torch.inference_mode()
def latency(
    nets: dict[str, Callable], shape: tuple[int, ...], rounds: int, calls: int
) -> dict[str, float]:
    """Median ms per forward pass over `rounds`; each round times `calls` passes of every net,
    the nets' order rotating from round to round."""
    x = torch.randn(shape) * 60.0
    names = list(nets)
    for name in names:  # warm-up: first calls build oneDNN primitives and ORT's plans
        for _ in range(2):
            nets[name](x)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            for _ in range(calls):
                nets[name](x)
            samples[name].append((time.perf_counter() - start) / calls * 1e3)
    return {n: statistics.median(s) for n, s in samples.items()}


def speed(
    runs: dict[tuple[str, int], Path], args: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, Any]:
    """{net: {batch: {precision: ms}}} for one trained net per data and the 227-px paper net."""
    cases: list[tuple[str, nn.Module, list[np.ndarray]]] = []
    for data in args.data:
        run = runs[data, args.seeds[0]]
        model, pre, _ = load_weights(run)
        cases.append((f"{data} (67 px)", model, calibration_data(str(run), pre, None)))
    torch.manual_seed(0)
    paper = create_model("alexnet").eval()  # 227 px, 1000 classes: the paper's net
    g = torch.Generator().manual_seed(0)
    noise = [(torch.randn(16, 3, 227, 227, generator=g) * 60).numpy() for _ in range(2)]
    cases.append(("alexnet ImageNet (227 px)", paper, noise))
    out: dict[str, Any] = {}
    for name, model, calibration in cases:
        nets = nets_for(model, calibration)
        side = model.input_size
        out[name] = {}
        for batch, rounds in ((1, args.rounds), (64, max(3, args.rounds // 4))):
            calls = 5 if batch == 1 else 1
            ms = latency(nets, (batch, model.in_chans, side, side), rounds, calls)
            out[name][str(batch)] = ms
            log(f"{name} batch {batch}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items()))
    if args.profile:
        out["profile_int8_227_batch1"] = profile_int8(paper, noise)
    return out


def profile_int8(model: nn.Module, calibration: list[np.ndarray]) -> list[dict[str, Any]]:
    """onnxruntime's per-operator time of the int8 net at batch 1 (50 runs), largest first."""
    x = np.random.default_rng(0).normal(0, 60, (1, 3, 227, 227)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        sess = onnx_session(model, calibration, profile_prefix=str(Path(tmp) / "ort"))
        for _ in range(50):
            sess.run(None, {"input": x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            by_op[op] = by_op.get(op, 0.0) + e["dur"] / 50 / 1e3
    total = sum(by_op.values())
    return [
        {"op": op, "ms": round(ms, 3), "share": round(ms / total, 3)}
        for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])
    ]


def summarise(acc: dict[str, Any]) -> dict[str, Any]:
    """Per data: top-1 per seed and mean per precision, and the change in points vs fp32."""
    out = {}
    for data, rows in acc.items():
        entry: dict[str, Any] = {}
        for p, values in rows.items():
            change = [100 * (v - f) for v, f in zip(values, rows["fp32"], strict=True)]
            entry[p] = {
                "top1": values,
                "mean_top1": statistics.fmean(values),
                "change_points": change,
                "mean_change_points": statistics.fmean(change),
            }
        out[data] = entry
    return out


def table(result: dict[str, Any]) -> str:
    lines = ["| data | precision | top-1 per seed | mean | change (points) per seed | mean |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for data, entry in result["accuracy"].items():
        for p, e in entry.items():
            seeds = ", ".join(f"{v:.4f}" for v in e["top1"])
            change = ", ".join(f"{v:+.2f}" for v in e["change_points"])
            lines.append(f"| {data} | {p} | {seeds} | {e['mean_top1']:.4f} | {change} | "
                         f"{e['mean_change_points']:+.2f} |")  # fmt: skip
    for threads, by_net in result["latency_ms"].items():
        names = list(next(iter(by_net.values()))["1"])
        lines += ["", f"| net ({threads} threads) | batch | "
                  + " | ".join(f"{n} ms" for n in names) + " |",
                  "|---|---|" + "---|" * len(names)]  # fmt: skip
        for net, by_batch in by_net.items():
            if net.startswith("profile"):
                continue
            for batch, ms in by_batch.items():
                cells = " | ".join(f"{ms[n]:.2f}" for n in names)
                lines.append(f"| {net} | {batch} | {cells} |")
        for row in by_net.get("profile_int8_227_batch1", [])[:8]:
            lines.append(f"int8 227 px batch 1: {row['op']:<18} {row['ms']:7.3f} ms "
                         f"{row['share']:.0%}")  # fmt: skip
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    def log(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S', time.gmtime())} {message}", flush=True)

    runs = train_all(args, log)
    runtime.configure_threads(args.threads[0])
    result: dict[str, Any] = {"accuracy": summarise(accuracy(runs, log))}
    result["latency_ms"] = {}
    for threads in args.threads:  # torch's and onnxruntime's sessions follow torch's count
        runtime.configure_threads(threads)
        log(f"latency with {threads} thread(s)")
        result["latency_ms"][str(threads)] = speed(runs, args, log)
    result.update(
        {
            "runs": {f"{d}-s{s}": str(p) for (d, s), p in runs.items()},
            "train_command": shlex.join(train_command("DATA", 0, Path("RUN"), args)[2:]),
            "threads": args.threads,
            "int8": {"vnni": has_vnni(), "calibration_images": 128},
            "machine": machine(),
            "wall_seconds": round(time.time() - started, 1),
            "git": git_state(),  # (HEAD, files under src/alexnet that differ from it)
            "command": shlex.join([sys.executable, *sys.argv]),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    atomic_write_text(out / "result.json", json.dumps(result, indent=1) + "\n")
    print(table(result))
    log(f"wrote {out / 'result.json'}")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output dir (runs, result.json)")
    p.add_argument("--data", nargs="+", default=["fashion-mnist", "cifar10"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-steps", type=int, default=120, help="training steps per run")
    p.add_argument("--train-threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="runs trained at a time")
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                   help="inference threads (torch and ORT): latency for each")  # fmt: skip
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds at batch 1")
    p.add_argument("--profile", action="store_true", help="int8 per-operator times, 227 px")
    return p.parse_args(argv)


if __name__ == "__main__":
    measure(parse_args())
