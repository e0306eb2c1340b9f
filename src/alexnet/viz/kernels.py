"""Paper figure 3: the first layer's kernels as an image grid, tower 1 above tower 2, and how
colour-specific each kernel is.

The paper saw tower 1's 48 kernels come out largely colour-agnostic and tower 2's largely
colour-specific, in every run, and could not say why (section 6.1). To measure it:

    colour specificity of a kernel w (3, k, k) = ||w - grey(w)||^2 / ||w||^2,

where grey(w) replaces the R, G, B weights at every position by their mean: the fraction of the
kernel's energy outside the grey (R = G = B) direction. 0 means the kernel responds only to
luminance; it cannot exceed 1. Weights drawn at random (iid per channel) give 2/3 on average,
so a tower well below 2/3 has learned colour-agnostic kernels.

The grid is written pixel for pixel (no resampling): each kernel is scaled to [0, 255] by its
own largest absolute weight (0 is mid-grey), enlarged by an integer factor, and separated by
white borders; a wider white band separates the towers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

COLUMNS = 16  # the paper's figure 3 shows 3 rows of 16 kernels per tower
BORDER = 2
TOWER_GAP = 12
MEASURE = (
    "colour specificity = ||w - grey(w)||^2 / ||w||^2, the fraction of a kernel's energy outside "
    "the R=G=B direction (0: colour-agnostic; random kernels: 2/3)"
)


def first_conv_weight(model: nn.Module) -> torch.Tensor:
    """The first Conv2d's weight (out, in, k, k): conv1 for AlexNet, features.0 for alexnet_owt."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.detach().float().cpu()
    raise ValueError(f"{type(model).__name__} has no Conv2d layer")


def towers_of(model: nn.Module) -> int:
    """How many towers the first layer's kernels split into (the paper's net: 2)."""
    return int(getattr(model, "model_options", {}).get("towers", 1) or 1)


def colour_specificity(weight: torch.Tensor) -> np.ndarray:
    """Per-kernel fraction of energy outside the R = G = B direction, (out,); needs 3 inputs."""
    if weight.shape[1] != 3:
        raise ValueError(f"colour specificity needs RGB kernels, got {weight.shape[1]} channels")
    w = weight.double()
    grey = w.mean(dim=1, keepdim=True)
    energy = w.pow(2).sum(dim=(1, 2, 3)).clamp_min(1e-30)
    return ((w - grey).pow(2).sum(dim=(1, 2, 3)) / energy).numpy()


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


def plot_kernels(model: nn.Module, png: Path, json_path: Path) -> dict:
    """Write the grid PNG and the colour-specificity JSON; return the JSON's content."""
    weight = first_conv_weight(model)
    towers = towers_of(model)
    png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(kernel_grid(weight, towers)).save(png)
    summary: dict = {
        "kernels": int(weight.shape[0]),
        "towers": towers,
        "kernel_size": int(weight.shape[-1]),
        "measure": MEASURE,
    }
    if weight.shape[1] == 3:
        spec = colour_specificity(weight)
        per = len(spec) // towers
        summary["per_kernel"] = [round(float(s), 4) for s in spec]
        summary["tower_mean"] = [
            round(float(spec[t * per : (t + 1) * per].mean()), 4) for t in range(towers)
        ]
    json_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
