"""Paper figure 4, left: test images with the net's top-5 classes and their probabilities;
the true class is named under each image and its bar, when in the top 5, is drawn in red."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from alexnet.data.preset import Preprocess
from alexnet.viz.common import display_image, new_figure, save

COLUMNS = 4
PANEL = (300, 420)  # pixels per image-and-bars panel


def figure_size(count: int) -> tuple[int, int]:
    """Pixel size of the figure for `count` images."""
    rows = -(-count // COLUMNS)
    return PANEL[0] * min(count, COLUMNS), PANEL[1] * rows


@torch.inference_mode()
def plot_predictions(
    model: nn.Module, pre: Preprocess, store: object, indices: Sequence[int], path: Path
) -> Path:
    """One panel per store image: the image over a bar chart of its top-5 softmax."""
    model.eval()
    device = next(model.parameters()).device
    images = [store.image(int(i)) for i in indices]
    x = torch.stack([pre.center(img) for img in images]).to(device)
    probs = model(x).float().softmax(-1).cpu()
    top_p, top_i = probs.topk(min(5, probs.shape[1]), dim=-1)
    names = pre.classes or [str(i) for i in range(probs.shape[1])]
    fig = new_figure(*figure_size(len(images)))
    rows = -(-len(images) // COLUMNS)
    for n, img in enumerate(images):
        truth = int(store.labels[int(indices[n])])
        r, c = divmod(n, COLUMNS)
        pw, left = 1 / COLUMNS, c / COLUMNS  # panel width and left edge, figure fractions
        ax = fig.add_axes([left + 0.05 * pw, 1 - (r + 0.52) / rows, 0.9 * pw, 0.45 / rows])
        ax.imshow(display_image(img), cmap="gray")
        ax.set_axis_off()
        ax.set_title(names[truth] if truth < len(names) else str(truth), fontsize=10)
        bars = fig.add_axes([left + 0.36 * pw, 1 - (r + 0.95) / rows, 0.58 * pw, 0.38 / rows])
        labels = [names[int(i)] for i in top_i[n]]
        colours = ["tab:red" if int(i) == truth else "tab:blue" for i in top_i[n]]
        bars.barh(range(len(labels))[::-1], top_p[n].tolist(), color=colours)
        bars.set_yticks(range(len(labels))[::-1], [label[:18] for label in labels], fontsize=8)
        bars.set_xlim(0, 1)
        bars.tick_params(axis="x", labelsize=7)
    return save(fig, path)
