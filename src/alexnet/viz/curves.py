"""Training curves: train and validation top-1 / top-5 error against epochs, with the
learning-rate drops marked (the paper divided the rate by 10 three times; section 5)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from alexnet.viz.common import new_figure, save

SIZE = (1200, 500)


def lr_drops(epochs: list[dict[str, Any]]) -> list[float]:
    """Epochs at which the learning rate went down: the midpoint between the two records."""
    return [
        (a["epoch"] + b["epoch"]) / 2
        for a, b in itertools.pairwise(epochs)
        if b.get("lr") is not None and a.get("lr") is not None and b["lr"] < a["lr"]
    ]


def plot_curves(records: list[dict[str, Any]], path: Path) -> Path:
    """Two panels (top-1, top-5) of error in percent from metrics.jsonl epoch records."""
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if not epochs:
        raise ValueError("metrics.jsonl has no epoch records: nothing to plot")
    fig = new_figure(*SIZE)
    x = [r["epoch"] for r in epochs]
    for col, k in enumerate(("top1", "top5")):
        ax = fig.add_subplot(1, 2, col + 1)
        for split, style in (("train", "-o"), ("val", "-s")):
            key = f"{split}_{k}_err"
            pts = [
                (e, 100 * r[key]) for e, r in zip(x, epochs, strict=True) if r.get(key) is not None
            ]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label=split, markersize=3)
        for i, drop in enumerate(lr_drops(epochs)):
            ax.axvline(drop, color="grey", linestyle="--", label="lr / 10" if i == 0 else None)
        ax.set(xlabel="epoch", ylabel=f"{k.replace('top', 'top-')} error (%)", title=f"{k} error")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return save(fig, path)
