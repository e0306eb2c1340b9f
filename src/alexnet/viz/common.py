"""Shared figure plumbing: the Agg backend and saving at an exact pixel size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

DPI = 100


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, works without a display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def new_figure(width_px: int, height_px: int) -> Any:
    """A figure that saves to exactly width_px x height_px pixels."""
    return pyplot().figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)


def save(fig: Any, path: Path) -> Path:
    """Save as PNG at the figure's own size (no tight bbox: the pixel size stays as asked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    pyplot().close(fig)
    return path


def display_image(img: np.ndarray) -> np.ndarray:
    """A stored uint8 HWC image in a form imshow draws: (H, W) for grey, (H, W, 3) for colour."""
    return img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img
