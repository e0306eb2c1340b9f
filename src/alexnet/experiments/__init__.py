"""The paper's claims that this hardware can test, each an experiment with a result.json.

`alexnet experiment NAME --out DIR` runs one (NAME in `EXPERIMENTS`); `alexnet experiment page`
builds docs/results.md from the published result.json files (see results_page).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module under alexnet.experiments; each module has `run(ctx: Context) -> dict`
EXPERIMENTS: dict[str, str] = {
    "fig1": "fig1",
    "lrn": "lrn",
    "pooling": "ablations",
    "dropout": "ablations",
    "colour": "ablations",
    "towers": "towers",
}


def experiment_module(name: str) -> Any:
    """The module that runs experiment `name`."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {sorted(EXPERIMENTS)}")
    return importlib.import_module(f"alexnet.experiments.{EXPERIMENTS[name]}")
