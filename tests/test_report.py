"""The HTML report: self-contained, every link and image resolves, renders in a real browser."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.cli import main
from test_infer_helpers import make_run, prepared_data


class Links(HTMLParser):
    """Collects img src, a href and the table rows of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.rows = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "tr":
            self.rows += 1


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    data = prepared_data(root / "data")
    run = make_run(root / "run")
    (run / "command.txt").write_text("alexnet train --max-steps 30\n")
    assert main(["figures", str(run), "--data", str(data), "--index-size", "20"]) == 0
    assert main(["report", str(run)]) == 0
    return run / "report.html"


def test_every_image_and_link_resolves(report: Path) -> None:
    page = Links()
    page.feed(report.read_text())
    assert len(page.images) == 4  # curves, kernels, predictions, neighbours
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert {"config.yaml", "command.txt", "figures/curves.png"} <= set(page.links)
    for href in page.links:
        assert (report.parent / href).is_file(), href
    assert page.rows == 1 + 3  # header + three epochs
    text = report.read_text()
    assert "alexnet train --max-steps 30" in text and "37.5 s in all" in text


def test_report_opens_from_another_directory(report: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "r.html"
    out.parent.mkdir()
    assert main(["report", str(report.parent), "--out", str(out)]) == 0
    page = Links()
    page.feed(out.read_text())
    for href in page.links:
        assert (out.parent / href).is_file(), href


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", "--window-size=1300,2400",
             f"--screenshot={shot}", report.resolve().as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (2400, 1300)
    colourful = (img.max(axis=2) - img.min(axis=2)) > 60  # plot lines and kernels, not text
    assert colourful.sum() > 10_000
