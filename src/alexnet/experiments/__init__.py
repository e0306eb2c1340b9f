"""The paper's claims that this hardware can test, each an experiment with a result.json.

`alexnet experiment NAME --out DIR` runs one (NAME in `EXPERIMENTS`); `alexnet experiment page`
builds docs/results.md from the published result.json files (see results_page).
"""

from __future__ import annotations

# name -> module under alexnet.experiments; each module has `run(ctx: Context) -> dict`
EXPERIMENTS: dict[str, str] = {
    "fig1": "fig1",
    "lrn": "lrn",
    "pooling": "ablations",
    "dropout": "ablations",
    "colour": "ablations",
    "towers": "towers",
}
