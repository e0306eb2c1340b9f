"""Figure 1: a four-layer CNN with ReLUs reaches 25% training error on CIFAR-10 six times faster
(in epochs) than the same net with tanh neurons (section 3.1).

Net: `cifar_fig1` (cuda-convnet's "19pct" layout, the family figure 1 came from). As in the paper:
no regularisation (no weight decay, no dropout, no augmentation: the 32x32 image is the input,
no reflections, no colour noise), and each activation gets its own learning rate, "chosen to make
training as fast as possible". Here that choice is a sweep held out of the 50,000 training
images: each rate trains `sweep_epochs` on 45,000 and the one with the lowest top-1 error on the
other 5,000 (500 per class) wins; the sweep's data set (common.held_out_zip) holds no test
image. The chosen rates then train on all 50,000, constant, SGD with momentum 0.9, batch 128,
one run per seed, until the training error reaches 25%.

Training error is the running error over each epoch (the Meter of the training loop, on the
mini-batches as they were trained), as the paper's figure plots per epoch. The epoch at which a
run reaches 25% is read off by linear interpolation between epoch ends (epoch 0 at chance, 90%),
and also reported as the first whole epoch at or below 25%.
"""

from __future__ import annotations

import functools
from typing import Any

from alexnet.experiments.common import (
    CIFAR_NOTE,
    Context,
    fit_all,
    held_out_zip,
    prepared,
    source_zip,
    summary,
    write_result,
)
from alexnet.experiments.compare import row
from alexnet.viz.common import new_figure, save

CLAIM = (
    "A four-layer CNN with ReLUs reaches 25% training error on CIFAR-10 six times faster (in "
    "epochs) than the same net with tanh; no regularisation, learning rates tuned separately."
)
PAPER = {"metric": "tanh epochs / ReLU epochs to 25% training error", "value": 6.0}
TARGET = 0.25
ACTIVATIONS = ("relu", "tanh")
LRS = (0.005, 0.01, 0.02, 0.04)
DEFAULT_EPOCHS = 30  # the cap: a run that has not reached 25% by then is reported as such


def base_layer(activation: str, data: str) -> dict[str, Any]:
    """The TrainConfig fields of every figure-1 run: no regularisation, constant lr."""
    return {
        "data": data,
        "image_size": 32,
        "model": "cifar_fig1",
        "model_options": {"activation": activation},
        "weight_decay": 0.0,
        "flip": False,
        "pca_std": 0.0,
        "schedule": "constant",
        "momentum": 0.9,
        "batch_size": 128,
        "precision": "fp32",
    }


def reached(records: list[dict[str, Any]], target: float = TARGET) -> bool:
    """Whether the last epoch's running training error is at or below `target`."""
    return records[-1]["train_top1_err"] <= target


def epochs_to(
    errors: list[float], target: float = TARGET, chance: float = 0.9
) -> tuple[float | None, int | None]:
    """(interpolated epoch, first whole epoch) at which per-epoch `errors` reach `target`;
    (None, None) if they never do. Epoch e's error sits at x = e; x = 0 is `chance`."""
    previous = chance
    for epoch, err in enumerate(errors, start=1):
        if err <= target:
            frac = (previous - target) / (previous - err) if previous > err else 1.0
            return epoch - 1 + frac, epoch
        previous = err
    return None, None


def _sweep(
    ctx: Context, data: str, lrs: tuple[float, ...], epochs: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """Per activation: every lr's train/val error after `epochs` on 45k, and the winner."""
    tasks = [
        (
            f"sweep {act} lr={lr:g}",
            {**base_layer(act, data), **extra, "lr": lr, "seed": 0},
            ctx.out / "sweep" / f"{act}-lr{lr:g}",
            epochs,
            None,
        )
        for act in ACTIVATIONS
        for lr in lrs
    ]
    results = fit_all(ctx, tasks)
    out: dict[str, Any] = {}
    for act in ACTIVATIONS:
        rows = []
        for lr in lrs:
            res = results[f"sweep {act} lr={lr:g}"]
            last = res["records"][-1] if res["records"] and not res["diverged"] else None
            rows.append(
                {
                    "lr": lr,
                    "diverged": res["diverged"],
                    "train_top1_err": last and last["train_top1_err"],
                    "val_top1_err": last and last["val_top1_err"],
                }
            )
        usable = [r for r in rows if r["val_top1_err"] is not None]
        if not usable:
            raise RuntimeError(f"fig1 sweep: every learning rate diverged for {act}: {lrs}")
        best = min(usable, key=lambda r: r["val_top1_err"])
        out[act] = {"rows": rows, "chosen_lr": best["lr"]}
        ctx.log(f"sweep {act}: chosen lr {best['lr']:g} (val top-1 err {best['val_top1_err']:.4f})")
    return out


def run(ctx: Context) -> dict[str, Any]:
    """Sweep, then train each activation per seed to 25% training error; result.json + figure."""
    smoke = ctx.smoke
    lrs = tuple(ctx.options.get("lrs") or ((0.01, 0.02) if smoke else LRS))
    sweep_epochs = int(ctx.options.get("sweep_epochs") or (1 if smoke else 2))
    cap = ctx.epochs or (2 if smoke else DEFAULT_EPOCHS)
    layer_extra = {"batch_size": 32} if smoke else {}  # smoke: a few steps per epoch
    data = str(prepared(ctx.data_spec(32), 32, view=ctx.out / "data"))
    if smoke:  # the synthetic set has its own val split
        held_out = str(prepared(ctx.data_spec(32), 32))
    else:
        zip_path = held_out_zip(source_zip(ctx.data), ctx.out / "data-holdout" / "holdout.zip")
        held_out = str(prepared(str(zip_path), 32))
    sweep = _sweep(ctx, held_out, lrs, sweep_epochs, layer_extra)
    until = functools.partial(reached, target=TARGET)
    tasks = [
        (
            f"{act} seed {seed}",
            {**base_layer(act, data), **layer_extra, "lr": sweep[act]["chosen_lr"], "seed": seed},
            ctx.out / "runs" / f"{act}-lr{sweep[act]['chosen_lr']:g}-seed{seed}",
            cap,
            until,
        )
        for act in ACTIVATIONS  # ReLU first: under a time budget its short runs must finish
        for seed in range(ctx.seeds)
    ]
    results = fit_all(ctx, tasks)
    arms: dict[str, Any] = {}
    curves: dict[str, list[list[float]]] = {}
    for act in ACTIVATIONS:
        runs = [results[f"{act} seed {s}"] for s in range(ctx.seeds)]
        curves[act] = [[r["train_top1_err"] for r in res["records"]] for res in runs]
        crossings = [epochs_to(c) for c in curves[act]]
        arms[act] = {
            "lr": sweep[act]["chosen_lr"],
            "epochs_to_25": summary([c[0] for c in crossings]),
            "first_epoch_at_25": [c[1] for c in crossings],
            "curves": curves[act],
            "epochs_run": [len(c) for c in curves[act]],
            "cut_short": [res["cut_short"] for res in runs],
            "diverged": [res["diverged"] for res in runs],
            "seconds": [round(res["seconds"], 1) for res in runs],
        }
    ratios = [
        t / r if t is not None and r else None
        for t, r in zip(
            arms["tanh"]["epochs_to_25"]["per_seed"],
            arms["relu"]["epochs_to_25"]["per_seed"],
            strict=True,
        )
    ]
    data_name = "synthetic smoke data (not CIFAR-10)" if smoke else "CIFAR-10 (JPEG)"
    figure = plot(curves, ctx.out / "fig1.png", data_name)
    effect = summary(ratios)
    rows = [
        row(
            f"epochs to 25% training error, ReLU (lr {arms['relu']['lr']:g})",
            None,
            arms["relu"]["epochs_to_25"],
            "epochs",
        ),
        row(
            f"epochs to 25% training error, tanh (lr {arms['tanh']['lr']:g})",
            None,
            arms["tanh"]["epochs_to_25"],
            "epochs",
        ),
        row("ratio tanh / ReLU (per seed)", "about 6x", effect, "x"),
    ]
    result = {
        "claim": CLAIM,
        "paper": PAPER,
        "data": "CIFAR-10 train (50,000), no augmentation; " + CIFAR_NOTE,
        "net": "cifar_fig1 (cuda-convnet 19pct layout: conv 32-32-64 5x5, pools, fc 10)",
        "training_error": "running error over each epoch's mini-batches (train mode)",
        "sweep": {
            "lrs": list(lrs),
            "epochs": sweep_epochs,
            "criterion": ctx.smoke_text(
                "val top-1 error on 5,000 training images held out (500 per class, "
                "seeded), trained on the other 45,000; the test split is not in the sweep's data"
            ),
            **sweep,
        },
        "epoch_cap": cap,
        "arms": arms,
        "effect": {"metric": PAPER["metric"], **effect},
        "rows": rows,
        "lower_bound": _lower_bound(arms),
        "figure": figure.name,
    }
    write_result(ctx, result)
    return result


def _lower_bound(arms: dict[str, Any]) -> float | None:
    """For seeds where ReLU reached 25% and tanh did not (cap or deadline): the smallest
    (tanh epochs run) / (ReLU epochs to 25%), a lower bound on those seeds' ratio."""
    tanh, relu = arms["tanh"], arms["relu"]["epochs_to_25"]["per_seed"]
    bounds = [
        ran / r
        for t, ran, r in zip(
            tanh["epochs_to_25"]["per_seed"], tanh["epochs_run"], relu, strict=True
        )
        if t is None and r
    ]
    return min(bounds) if bounds else None


def plot(curves: dict[str, list[list[float]]], path: Any, data: str = "CIFAR-10 (JPEG)") -> Any:
    """Training error (%) against epochs, every seed; ReLU solid, tanh dashed as in the paper."""
    fig = new_figure(640, 420)
    ax = fig.add_subplot(1, 1, 1)
    for act, style in (("relu", "-"), ("tanh", "--")):
        for i, errs in enumerate(curves[act]):
            x = range(1, len(errs) + 1)
            label = f"{'ReLU' if act == 'relu' else 'tanh'}" if i == 0 else None
            ax.plot(
                x, [100 * e for e in errs], style, marker=".", color="k", alpha=0.8, label=label
            )
    ax.axhline(100 * TARGET, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="epochs", ylabel="training error rate (%)", ylim=(0, 90))
    ax.set_title(f"{data}, cifar_fig1: one line per seed", fontsize=10)
    ax.legend()
    fig.tight_layout()
    return save(fig, path)
