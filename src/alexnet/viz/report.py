"""`alexnet report RUN_DIR`: one self-contained HTML page for a run.

The page holds the command, the config, a table of the epoch metrics, the timings, and every
figure embedded as a base64 PNG (so the page opens from disk, offline, anywhere); links to the
run's own files (config.yaml, metrics.jsonl, full-size figures) are relative to the page, which
is written into the run directory.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

from alexnet.paths import inside, write_atomic
from alexnet.train.weights import read_metrics

COLUMNS = [
    ("epoch", "epoch", "{}"),
    ("step", "step", "{}"),
    ("train_loss", "train loss", "{:.4f}"),
    ("train_top1_err", "train top-1 err", "{:.2%}"),
    ("train_top5_err", "train top-5 err", "{:.2%}"),
    ("val_loss", "val loss", "{:.4f}"),
    ("val_top1_err", "val top-1 err", "{:.2%}"),
    ("val_top5_err", "val top-5 err", "{:.2%}"),
    ("lr", "lr", "{:.2g}"),
    ("img_per_s", "img/s", "{:.0f}"),
    ("seconds", "seconds", "{:.1f}"),
]
FIGURES = [
    ("curves", "Training curves (lr drops dashed)"),
    ("kernels", "conv1 kernels, tower 1 above tower 2 (paper figure 3)"),
    ("predictions", "Top-5 predictions on test images (paper figure 4, left)"),
    ("neighbours", "Nearest training images by fc7 distance (paper figure 4, right)"),
]
STYLE = """body{font-family:sans-serif;margin:2em;max-width:1250px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}pre{background:#f4f4f4;padding:8px;overflow-x:auto}img{max-width:100%}"""


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return html.escape(str(value))


def metrics_table(epochs: list[dict[str, Any]]) -> str:
    """The epoch records as an HTML table."""
    if not epochs:
        return "<p>No epoch records in metrics.jsonl (a run stopped by --max-steps mid-epoch).</p>"
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_cell(r.get(key), fmt)}</td>" for key, _, fmt in COLUMNS) + "</tr>"
        for r in epochs
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def _figure(fig_dir: Path, entry: dict[str, Any], caption: str, rel: str) -> str:
    png = inside(fig_dir, entry.get("file"), f"{fig_dir / 'figures.json'}: file")
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    link = f"{rel}/{entry['file']}"
    return (
        f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(caption)} (<a href='{html.escape(link)}'>file</a>)"
        "</figcaption></figure>"
    )


def _colour(kern: dict[str, Any]) -> str:
    if "tower_mean" not in kern:
        return "<p>Colour specificity: not defined for single-channel kernels.</p>"
    per = kern.get("per_tower") or [{"mean": m} for m in kern["tower_mean"]]
    towers = "; ".join(
        f"tower {t + 1}: mean {s['mean']:.3f}"
        + (f", median {s['median']:.3f}, {s['above_half']:.0%} above 0.5" if "median" in s else "")
        for t, s in enumerate(per)
    )
    return f"<p>Colour specificity per tower: {towers}. {html.escape(kern['measure'])}.</p>"


def _timings(epochs: list[dict[str, Any]]) -> str:
    seconds = [r["seconds"] for r in epochs if r.get("seconds") is not None]
    speeds = [r["img_per_s"] for r in epochs if r.get("img_per_s") is not None]
    if not seconds:
        return "<p>No timings recorded.</p>"
    total = sum(seconds)
    text = f"{len(seconds)} epochs, {total:.1f} s in all, {total / len(seconds):.1f} s per epoch"
    if speeds:
        text += f", {sum(speeds) / len(speeds):.0f} images/s on average"
    return f"<p>{text}.</p>"


def test_section(run_dir: Path) -> str:
    """The final test numbers `alexnet train` wrote (test_metrics.json), with their weights."""
    path = run_dir / "test_metrics.json"
    if not path.is_file():
        return "<p>No test numbers (test_metrics.json): the run has not finished.</p>"
    t = json.loads(path.read_text())
    crops = "ten crops" if t.get("ten_crop") else "centre crop"
    weights = f"; weights: {html.escape(str(t['weights']))}" if t.get("weights") else ""
    pct = {k: _cell(t.get(k), "{:.2%}") for k in ("top1_acc", "top1_err", "top5_acc", "top5_err")}
    return (
        f"<p>{html.escape(str(t.get('split', 'test')))} split, {t.get('count', '?')} images, "
        f"{crops}: top-1 accuracy <b>{pct['top1_acc']}</b> (error {pct['top1_err']}), top-5 "
        f"accuracy {pct['top5_acc']} (error {pct['top5_err']}){weights}.</p>"
    )


def build_report(run_dir: str | Path, *, out: str | Path | None = None) -> Path:
    """Write RUN_DIR/report.html (or `out`) from the run's files and its figures/ manifest."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "report.html"
    fig_dir = run_dir / "figures"
    manifest_path = fig_dir / "figures.json"
    try:
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    except ValueError as err:
        raise ValueError(f"{manifest_path}: not JSON ({err})") from None
    if not isinstance(manifest, dict) or not all(
        isinstance(manifest.get(key, {}), dict) for key, _ in FIGURES
    ):
        raise ValueError(f"{manifest_path}: not a figures manifest (objects by figure name)")
    epochs = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("kind") == "epoch"]
    rel = Path(_relpath(fig_dir, out.parent)).as_posix()
    parts = [f"<h1>Run {html.escape(run_dir.resolve().name)}</h1>"]
    model = manifest.get("model_name", "?")
    parts.append(
        f"<p>Model <b>{html.escape(model)}</b>; checkpoint "
        f"{html.escape(str(manifest.get('checkpoint', '?')))}.</p>"
    )
    for name in ("command.txt", "config.yaml"):
        if (run_dir / name).is_file():
            link = Path(_relpath(run_dir / name, out.parent)).as_posix()
            parts.append(
                f"<h2><a href='{html.escape(link)}'>{name}</a></h2>"
                f"<pre>{html.escape((run_dir / name).read_text())}</pre>"
            )
    parts += ["<h2>Test</h2>", test_section(run_dir)]
    parts += ["<h2>Metrics</h2>", metrics_table(epochs), "<h2>Timings</h2>", _timings(epochs)]
    parts.append("<h2>Figures</h2>")
    for key, caption in FIGURES:
        if key in manifest:
            if key == "kernels" and manifest[key].get("towers", 1) == 1:
                caption = "First-layer kernels (one tower; paper figure 3)"
            parts.append(_figure(fig_dir, manifest[key], caption, rel))
            if key == "kernels":
                parts.append(_colour(manifest[key]))
    for note in manifest.get("skipped", []):
        parts.append(f"<p>Not drawn: {html.escape(note)}.</p>")
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>alexnet run "
        f"{html.escape(run_dir.name)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )
    write_atomic(out, page)
    return out


def _relpath(target: Path, start: Path) -> str:
    return os.path.relpath(target.resolve(), start.resolve())
