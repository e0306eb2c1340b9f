"""Section 3.3: cross-map response normalisation lowers the test error of a four-layer CIFAR-10
CNN from 13% (without) to 11% (with).

Net: `cifar_conv_local` (cuda-convnet's conv-local layout: two 5x5 conv layers of 64, two locally
connected 3x3 layers, FC 10) with `local_width=32` (the 13pct file) in both arms, so that
normalisation (size 9, alpha 1e-3 in the alpha/n convention, beta 0.75, after pool1 and after
conv2) is the only difference; the 11pct file also widens local3, which would confound the
comparison. The paper's numbers came after ~500 epochs and multi-view testing; this run is as
long as the hardware allows, tested on one centre view, so the claim under test is the
difference, not the absolute errors. Same lr, weight decay, reflections and schedule for both
arms. The lr is the conv-local files' own, 0.001 on the batch-mean gradient (reference section
5), not tuned; one weight decay (5e-4) for every layer instead of the files' per-layer values
(0 on conv, 0.004 on local, 0.01 on fc). At lr 0.01 (a first run, ten times the files' rate)
one seed in three without normalisation never left chance.

The schedule is the files' first phase: a constant lr, which they keep for ~350 epochs before
their two short drops. So a run is continued by asking for more epochs (`--epochs`), and a
longer run is the same run as a shorter one carried on: each length reached can be published.
"""

from __future__ import annotations

from typing import Any

from alexnet.experiments.common import CIFAR_NOTE, Context, prepared
from alexnet.experiments.compare import run_comparison

ARMS = {
    "with LRN": {"model_options": {"lrn": True, "local_width": 32}},
    "without LRN": {"model_options": {"lrn": False, "local_width": 32}},
}
PAPER = {
    "metric": "test top-1 error (CIFAR-10, multi-view, ~500 epochs)",
    "with LRN": "11%",
    "without LRN": "13%",
    "effect": "+2 points",
}
DEFAULT_EPOCHS = 10
LR = 0.001  # layers-conv-local-*: epsW 0.001 on the batch-mean gradient


def base_layer(data: str, lr: float, precision: str) -> dict[str, Any]:
    """Both arms' config: SGD momentum 0.9, weight decay 5e-4, reflections, constant lr."""
    return {
        "data": data,
        "image_size": 32,
        "model": "cifar_conv_local",
        "lr": lr,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "flip": True,
        "pca_std": 0.0,
        "schedule": "constant",  # the files' first phase (module docstring)
        "batch_size": 128,
        "precision": precision,
    }


def run(ctx: Context) -> dict[str, Any]:
    """Train both arms per seed; test error of each and the paired difference."""
    epochs = ctx.epochs or (1 if ctx.smoke else DEFAULT_EPOCHS)
    data = str(prepared(ctx.data_spec(32), 32))
    lr, precision = float(ctx.options.get("lr", LR)), ctx.options.get("precision", "fp32")
    base = base_layer(data, lr, precision)
    if ctx.smoke:
        base["batch_size"] = 32
    info = {
        "claim": "Response normalisation reduces CIFAR-10 test error from 13% to 11% (a four-layer "
        "CNN, section 3.3).",
        "paper": PAPER,
        "data": "CIFAR-10: train 50,000, test 10,000 (one centre view); " + CIFAR_NOTE,
        "net": "cifar_conv_local, local_width=32, lrn on/off",
        "title": "Section 3.3 on CIFAR-10 (JPEG): cifar_conv_local with and without LRN",
    }
    return run_comparison(ctx, base, ARMS, epochs, info)
