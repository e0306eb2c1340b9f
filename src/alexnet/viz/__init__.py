"""Figures and the HTML report: they read saved artefacts (metrics.jsonl, checkpoints, prepared
data) and never train. One module per figure; `alexnet figures` and `alexnet report` drive them."""
