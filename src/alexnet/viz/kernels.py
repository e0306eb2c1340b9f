"""Paper figure 3: the first layer's kernels as an image grid, the towers apart (tower 1 above
tower 2), and how colour-specific each tower's kernels are.

The paper saw one tower's 48 kernels come out largely colour-agnostic and the other's largely
colour-specific, in every run, and could not say why (section 6.1). Which maps are which tower:
the first half of conv1's output maps feed conv2's first group (tower 1), the second half its
second group (tower 2). A net without towers (conv2 not grouped: `alexnet_owt`, `alexnet_onegpu`)
gets one panel.

The colour-specificity measure, per kernel. Let w be the kernel as it acts on RGB pixels, shape
(3, k, k) (the stored weight, divided by the channel's std when the weights' preprocessing
divides by one; a mean subtraction changes nothing), and grey(w) the kernel whose R, G and B
weights at every position are replaced by their mean over the three channels (the kernel's
colour-agnostic component: it responds to luminance only). Then

    colour specificity(w) = ||w - grey(w)||^2 / ||w||^2,

the fraction of the kernel's weight energy outside the grey (R = G = B) direction. It is 0 for a
pure grey kernel, 2/3 for a kernel on one channel only (w = (a, 0, 0): the grey part (a/3, a/3,
a/3) holds 1/3 of the energy) and at most 1 (a kernel whose channels sum to 0 at every position,
such as red minus green); weights drawn at random (iid per channel) give 2/3 on average. Per
tower we report the mean, the median and the fraction of kernels above 0.5 (more colour than
grey energy). The paper's claim, read with this measure: one tower's numbers well below the
other's, the grey tower's well below 2/3.

The grid is drawn pixel for pixel (`figimage`, no resampling): each kernel is scaled to [0, 255]
by its own largest absolute weight (0 is mid-grey), enlarged by an integer factor, and separated
by white borders; the figure around it carries the title (naming the weights), a label per tower
with its numbers, and the measure's definition.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from alexnet.data.preset import Preprocess
from alexnet.viz.common import new_figure, save

COLUMNS = 16  # the paper's figure 3 shows 3 rows of 16 kernels per tower
BORDER = 2
TOWER_GAP = 12
THRESHOLD = 0.5  # "colour-specific": more of the kernel's energy in colour than in grey
MEASURE = (
    "colour specificity = ||w - grey(w)||^2 / ||w||^2, grey(w) = mean of w over R, G, B at each "
    "position: the fraction of a kernel's energy outside the R=G=B direction (0: colour-agnostic; "
    "one channel only: 2/3; random kernels: 2/3 on average)"
)
# figure layout, pixels
MARGIN = 10
TITLE_H = 56
LABEL_H = 38
FOOT_H = 40
MIN_WIDTH = 760


def first_conv_weight(model: nn.Module) -> torch.Tensor:
    """The first Conv2d's weight (out, in, k, k): conv1 for AlexNet, features.0 for alexnet_owt."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.detach().float().cpu()
    raise ValueError(f"{type(model).__name__} has no Conv2d layer")


def towers_of(model: nn.Module) -> int:
    """How many towers the first layer's kernels split into: the groups of the second Conv2d
    (conv2 of the paper's net and of CaffeNet: 2; alexnet_owt, alexnet_onegpu: 1)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) >= 2:
        return int(convs[1].groups)
    return int(getattr(model, "model_options", {}).get("towers", 1) or 1)


def pixel_space(weight: torch.Tensor, pre: Preprocess | None) -> torch.Tensor:
    """The kernels as they act on pixels: divided by the channel's std under per-channel
    normalisation (torchvision's weights); unchanged for a mean subtraction (ours, Caffe's)."""
    if pre is None or pre.normalize != "channel" or pre.std is None:
        return weight
    std = torch.tensor(pre.std, dtype=weight.dtype).view(1, -1, 1, 1)
    return weight / std


def colour_specificity(weight: torch.Tensor) -> np.ndarray:
    """Per-kernel fraction of energy outside the R = G = B direction, (out,) float64; needs RGB."""
    if weight.shape[1] != 3:
        raise ValueError(f"colour specificity needs RGB kernels, got {weight.shape[1]} channels")
    w = weight.double()
    grey = w.mean(dim=1, keepdim=True)
    energy = w.pow(2).sum(dim=(1, 2, 3)).clamp_min(1e-30)
    return ((w - grey).pow(2).sum(dim=(1, 2, 3)) / energy).numpy()


def tower_stats(spec: np.ndarray, towers: int) -> list[dict[str, float]]:
    """Per tower (kernels split in order, first block = tower 1): count, mean, median and the
    fraction of kernels above THRESHOLD."""
    out = []
    for part in np.split(np.asarray(spec, dtype=np.float64), towers):
        out.append(
            {
                "kernels": len(part),
                "mean": round(float(part.mean()), 4),
                "median": round(float(np.median(part)), 4),
                "above_half": round(float((part > THRESHOLD).mean()), 4),
            }
        )
    return out


def kernel_grid(weight: torch.Tensor, towers: int, scale: int | None = None) -> np.ndarray:
    """uint8 (H, W, 3) grid of all kernels, tower t's block of rows above tower t + 1's; each
    kernel pixel becomes scale x scale (default: about 44 pixels per kernel side)."""
    out_ch, in_ch, k, _ = weight.shape
    scale = scale or max(1, 44 // k)
    per_tower = out_ch // towers
    rows = -(-per_tower // COLUMNS)
    cell = k * scale + BORDER
    tower_h = rows * cell + BORDER
    grid = np.full(
        (towers * tower_h + (towers - 1) * TOWER_GAP, COLUMNS * cell + BORDER, 3), 255, np.uint8
    )
    w = weight.numpy()
    for i in range(out_ch):
        t, j = divmod(i, per_tower)
        r, c = divmod(j, COLUMNS)
        tile = w[i].transpose(1, 2, 0)
        tile = 127.5 + 127.5 * tile / max(float(np.abs(tile).max()), 1e-12)
        tile = np.repeat(np.repeat(tile, scale, 0), scale, 1)
        tile = np.broadcast_to(tile, (*tile.shape[:2], 3)) if in_ch == 1 else tile[:, :, :3]
        top = t * (tower_h + TOWER_GAP) + BORDER + r * cell
        left = BORDER + c * cell
        grid[top : top + k * scale, left : left + k * scale] = np.clip(np.rint(tile), 0, 255)
    return grid


def tower_label(t: int, towers: int, per: int, stats: dict[str, float] | None) -> str:
    """The label drawn above tower t's block (0-based t)."""
    if towers == 1:
        head = f"one tower (conv2 not grouped): {per} kernels"
    else:
        head = f"tower {t + 1}: kernels {t * per + 1}-{(t + 1) * per} (conv1 maps {t * per}-"
        head += f"{(t + 1) * per - 1}, conv2 group {t + 1})"
    if stats is None:
        return head + "\ncolour specificity: not defined (single-channel kernels)"
    return (
        f"{head}\ncolour specificity: mean {stats['mean']:.3f}, median {stats['median']:.3f}, "
        f"{stats['above_half']:.0%} of kernels above {THRESHOLD}"
    )


def summarise(weight: torch.Tensor, towers: int) -> dict[str, Any]:
    """What figures.json / the kernels JSON store about the first layer's kernels."""
    summary: dict[str, Any] = {
        "kernels": int(weight.shape[0]),
        "towers": towers,
        "kernel_size": int(weight.shape[-1]),
        "in_chans": int(weight.shape[1]),
        "measure": MEASURE,
        "threshold": THRESHOLD,
    }
    if weight.shape[1] == 3:
        spec = colour_specificity(weight)
        stats = tower_stats(spec, towers)
        summary["per_kernel"] = [round(float(s), 4) for s in spec]
        summary["per_tower"] = stats
        summary["tower_mean"] = [s["mean"] for s in stats]
        summary["tower_median"] = [s["median"] for s in stats]
        summary["tower_above_half"] = [s["above_half"] for s in stats]
    return summary


def kernel_figure(
    model: nn.Module, *, title: str | None = None, pre: Preprocess | None = None
) -> tuple[Any, dict[str, Any]]:
    """(matplotlib Figure, summary): the towers' grids, drawn 1:1, with title and labels."""
    weight = pixel_space(first_conv_weight(model), pre)
    name = getattr(model, "model_name", type(model).__name__)
    return weight_figure(weight, towers_of(model), name=name, title=title)


def weight_figure(
    weight: torch.Tensor, towers: int, *, name: str, title: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """`kernel_figure` for a first-layer weight (out, in, k, k) split into `towers`."""
    if weight.shape[0] % towers:
        towers = 1
    summary = summarise(weight, towers)
    per = weight.shape[0] // towers
    grids = [kernel_grid(weight[t * per : (t + 1) * per], 1) for t in range(towers)]
    grid_w = grids[0].shape[1]
    width = max(MIN_WIDTH, grid_w + 2 * MARGIN)
    foot = FOOT_H if "per_tower" in summary else 0
    height = TITLE_H + sum(LABEL_H + g.shape[0] for g in grids) + TOWER_GAP * (towers - 1) + foot
    fig = new_figure(width, height)
    k, c = int(weight.shape[-1]), int(weight.shape[1])
    head = title or f"first-layer kernels of {name}"
    line = f"{name}: {weight.shape[0]} kernels of {k}x{k}x{c}"
    line += f", {towers} towers apart" if towers > 1 else ""
    line += " (paper figure 3)"
    if towers == 2 and "tower_mean" in summary:
        means = summary["tower_mean"]
        line += f"; tower {1 + int(means[1] < means[0])}'s mean is lower by "
        line += f"{abs(means[0] - means[1]):.3f}"
    fig.suptitle(head, x=MARGIN / width, y=1 - 8 / height, ha="left", va="top", fontsize=13)
    fig.text(
        MARGIN / width,
        1 - 32 / height,
        line,
        ha="left",
        va="top",
        fontsize=9,
    )
    y = TITLE_H  # from the top, pixels
    left = (width - grid_w) // 2
    for t, grid in enumerate(grids):
        stats = summary["per_tower"][t] if "per_tower" in summary else None
        fig.text(
            left / width,
            1 - (y + 2) / height,
            tower_label(t, towers, per, stats),
            ha="left",
            va="top",
            fontsize=9,
            fontweight="bold",
        )
        y += LABEL_H
        fig.figimage(grid, xo=left, yo=height - y - grid.shape[0], origin="upper")
        y += grid.shape[0] + TOWER_GAP
    if foot:
        fig.text(
            MARGIN / width,
            (FOOT_H - 6) / height,
            MEASURE.replace(": the fraction", ":\nthe fraction"),
            ha="left",
            va="top",
            fontsize=7.5,
            color="0.25",
        )
    summary["grid_origins"] = [
        [left, TITLE_H + sum(LABEL_H + g.shape[0] + TOWER_GAP for g in grids[:t]) + LABEL_H]
        for t in range(towers)
    ]
    return fig, summary


def plot_kernels(
    model: nn.Module,
    png: Path,
    json_path: Path,
    *,
    title: str | None = None,
    pre: Preprocess | None = None,
) -> dict[str, Any]:
    """Write the labelled kernel figure and the colour-specificity JSON; return the JSON's
    content (`grid_origins`: the top-left pixel (x, y) of each tower's grid in the PNG)."""
    fig, summary = kernel_figure(model, title=title, pre=pre)
    save(fig, png)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def kernels_from_grid(grid: np.ndarray, count: int, towers: int, k: int) -> torch.Tensor:
    """The kernels of a `kernel_grid` image, each up to its positive display scale (pixel -
    127.5), quantised to the grid's 8 bits: (count, 3, k, k). Colour specificity does not
    depend on a kernel's scale, so it can be measured again from a published grid."""
    scale = max(1, 44 // k)
    per = count // towers
    cell = k * scale + BORDER
    tower_h = -(-per // COLUMNS) * cell + BORDER
    out = np.empty((count, 3, k, k), np.float32)
    for i in range(count):
        t, j = divmod(i, per)
        r, c = divmod(j, COLUMNS)
        top = t * (tower_h + TOWER_GAP) + BORDER + r * cell
        left = BORDER + c * cell
        tile = grid[top : top + k * scale : scale, left : left + k * scale : scale, :3]
        out[i] = tile.transpose(2, 0, 1).astype(np.float32) - 127.5
    return torch.from_numpy(out)


def redraw_grid(src: Path, dst: Path, *, count: int, towers: int, k: int, title: str) -> dict:
    """Redraw an unlabelled `kernel_grid` PNG (an older figure, its weights gone) as the
    labelled figure; the numbers come from the 8-bit grid. Returns the summary."""
    grid = np.asarray(Image.open(src).convert("RGB"))
    weight = kernels_from_grid(grid, count, towers, k)
    fig, summary = weight_figure(weight, towers, name="alexnet", title=title)
    save(fig, dst)
    return summary
