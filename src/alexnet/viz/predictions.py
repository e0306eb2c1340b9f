"""Paper figure 4, left: images with the net's top-5 classes and their probabilities. Where the
true class is known (a prepared store's labels) it is named under each image and its bar, when
in the top 5, is drawn in red; a legend says so, and the title names the weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.patches import Patch
from torch import nn

from alexnet.data.images import load_image
from alexnet.data.preset import Preprocess
from alexnet.viz.common import display_image, new_figure, save
from alexnet.viz.neighbours import thumbnail

COLUMNS = 4
PANEL = (300, 420)  # pixels per image-and-bars panel
TITLE_H = 50  # pixels above the panels: title and legend
TRUE_COLOUR, OTHER_COLOUR = "tab:red", "tab:blue"


def figure_size(count: int) -> tuple[int, int]:
    """Pixel size of the figure for `count` images."""
    rows = -(-count // COLUMNS)
    return PANEL[0] * min(count, COLUMNS), PANEL[1] * rows + TITLE_H


@torch.inference_mode()
def top5(model: nn.Module, pre: Preprocess, images: Sequence[np.ndarray]) -> torch.Tensor:
    """Softmax (N, classes) of the images' centre crops under the weights' preprocessing."""
    model.eval()
    device = next(model.parameters()).device
    x = torch.stack([pre.center(img) for img in images]).to(device)
    return model(x).float().softmax(-1).cpu()


def predictions_figure(
    images: Sequence[np.ndarray],
    probs: torch.Tensor,
    names: Sequence[str],
    *,
    truths: Sequence[int | None] | None = None,
    captions: Sequence[str] | None = None,
    title: str = "top-5 predictions",
) -> Any:
    """The figure: one panel per image, its caption (the true class, else `captions`) over a bar
    chart of its top-5 softmax; true-class bars red, a legend explaining the colours."""
    truths = list(truths) if truths is not None else [None] * len(images)
    top_p, top_i = probs.topk(min(5, probs.shape[1]), dim=-1)
    width, height = figure_size(len(images))
    fig = new_figure(width, height)
    fig.suptitle(title, x=0.01, y=1 - 6 / height, ha="left", va="top", fontsize=12)
    body = 1 - TITLE_H / height  # figure fraction the panels share
    rows = -(-len(images) // COLUMNS)
    for n, img in enumerate(images):
        truth = truths[n]
        r, c = divmod(n, COLUMNS)
        pw, left = 1 / COLUMNS, c / COLUMNS  # panel width and left edge, figure fractions
        ax = fig.add_axes(
            [left + 0.05 * pw, body * (1 - (r + 0.52) / rows), 0.9 * pw, body * 0.45 / rows]
        )
        ax.imshow(display_image(img), cmap="gray")
        ax.set_axis_off()
        if truth is not None:
            label = names[truth] if truth < len(names) else str(truth)
            in_top = truth in top_i[n].tolist()
            caption = f"true: {label}" + ("" if in_top else " (not in top 5)")
        else:
            caption = captions[n] if captions is not None else ""
        ax.set_title(caption[:40], fontsize=9)
        bars = fig.add_axes(
            [left + 0.36 * pw, body * (1 - (r + 0.95) / rows), 0.58 * pw, body * 0.38 / rows]
        )
        labels = [names[int(i)] if int(i) < len(names) else str(int(i)) for i in top_i[n]]
        colours = [TRUE_COLOUR if int(i) == truth else OTHER_COLOUR for i in top_i[n]]
        bars.barh(range(len(labels))[::-1], top_p[n].tolist(), color=colours)
        bars.set_yticks(range(len(labels))[::-1], [label[:18] for label in labels], fontsize=8)
        bars.set_xlim(0, 1)
        bars.tick_params(axis="x", labelsize=7)
    handles = [Patch(color=OTHER_COLOUR, label="top-5 class, bar = softmax probability")]
    if any(t is not None for t in truths):
        handles.insert(0, Patch(color=TRUE_COLOUR, label="true class"))
    fig.legend(
        handles=handles,
        loc="upper right",
        bbox_to_anchor=(0.995, 1 - 4 / height),
        ncol=len(handles),
        fontsize=9,
        frameon=False,
    )
    return fig


def plot_predictions(
    model: nn.Module,
    pre: Preprocess,
    store: object,
    indices: Sequence[int],
    path: Path,
    *,
    title: str = "top-5 predictions on test images",
) -> Path:
    """One panel per store image, true class from the store's labels."""
    images = [store.image(int(i)) for i in indices]
    probs = top5(model, pre, images)
    names = pre.classes or [str(i) for i in range(probs.shape[1])]
    truths = [int(store.labels[int(i)]) for i in indices]
    return save(predictions_figure(images, probs, names, truths=truths, title=title), path)


def plot_file_predictions(
    model: nn.Module,
    pre: Preprocess,
    files: Sequence[Path],
    captions: Sequence[str],
    path: Path,
    *,
    truths: Sequence[int | None] | None = None,
    title: str = "top-5 predictions",
) -> list[list[dict[str, Any]]]:
    """Panels for image files (a user's folder), captioned with their file names. The net sees
    each file as `alexnet predict` does (same decoder, the weights' preprocessing, centre crop);
    the panel shows the whole image. Returns each file's top 5 as [{label, probability}]."""
    probs = top5(model, pre, [load_image(f, draft_size=pre.image_size) for f in files])
    names = pre.classes or [str(i) for i in range(probs.shape[1])]
    shown = [thumbnail(f) for f in files]
    fig = predictions_figure(shown, probs, names, truths=truths, captions=captions, title=title)
    save(fig, path)
    top_p, top_i = probs.topk(min(5, probs.shape[1]), dim=-1)
    return [
        [
            {"label": names[i] if i < len(names) else str(i), "probability": round(p, 6)}
            for p, i in zip(ps, ids, strict=True)
        ]
        for ps, ids in zip(top_p.tolist(), top_i.tolist(), strict=True)
    ]
