"""Shared figure plumbing: figures drawn without pyplot, saved at an exact pixel size.

A bare `matplotlib.figure.Figure` renders with Agg when saved to PNG, so no backend is chosen
for the whole process (pyplot's global state would switch a user's interactive backend) and no
figure has to be closed to be freed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from alexnet.fileio import atomic_path

DPI = 100


def new_figure(width_px: int, height_px: int) -> Figure:
    """A figure that saves to exactly width_px x height_px pixels."""
    return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)


def save(fig: Figure, path: Path) -> Path:
    """Save as PNG at the figure's own size (no tight bbox: the pixel size stays as asked),
    written by temporary name and rename (alexnet.fileio)."""
    with atomic_path(path, mkdir=True) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    return path


def display_image(img: np.ndarray) -> np.ndarray:
    """A stored uint8 HWC image in a form imshow draws: (H, W) for grey, (H, W, 3) for colour."""
    return img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img
