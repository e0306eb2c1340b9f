"""Figures: curves, the conv1 kernel grid and its colour measure, predictions, fc7 neighbours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.cli import main
from alexnet.infer.features import nearest, store_features
from alexnet.infer.weights import load_weights, read_metrics
from alexnet.viz import curves, kernels, neighbours
from alexnet.viz.figures import make_figures
from test_infer_helpers import make_run, prepared_data, tiny_model


@pytest.fixture(scope="module")
def run_with_figures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("figs")
    data = prepared_data(root / "data")
    run = make_run(root / "run")
    return run, data, make_figures(run, data=str(data), index_size=30, count=5, queries=3)


def test_every_figure_exists_at_its_pixel_size(run_with_figures: tuple) -> None:
    run, _, manifest = run_with_figures
    fig = run / "figures"
    assert Image.open(fig / "curves.png").size == curves.SIZE
    assert Image.open(fig / "conv1_kernels.png").size == (
        16 * (11 * 4 + 2) + 2,
        2 * (3 * 46 + 2) + 12,
    )
    assert Image.open(fig / "predictions.png").size == (4 * 300, 2 * 420)  # 5 images: 2 rows
    assert Image.open(fig / "neighbours.png").size == (7 * 150, 3 * 150)
    assert manifest["curves"]["lr_drops"] == [1.5]  # lr 0.01, 0.01, 0.001


def test_lr_drops_mark_only_decreases() -> None:
    recs = [{"epoch": e, "lr": lr} for e, lr in enumerate([0.1, 0.1, 0.01, 0.02, 0.002])]
    assert curves.lr_drops(recs) == [1.5, 3.5]


def test_kernel_grid_shows_96_kernels_tower_1_above_tower_2(tmp_path: Path) -> None:
    from skimage.measure import label

    model = tiny_model()
    with torch.no_grad():  # tower 1 grey (R = G = B), tower 2 red-only
        model.conv1.weight[:48] = torch.randn(48, 1, 11, 11).expand(48, 3, 11, 11)
        model.conv1.weight[48:] = 0
        model.conv1.weight[48:, 0] = torch.randn(48, 11, 11)
    summary = kernels.plot_kernels(model, tmp_path / "k.png", tmp_path / "k.json")
    grid = np.asarray(Image.open(tmp_path / "k.png"))
    assert label((grid != 255).any(axis=2), connectivity=1).max() == 96
    top, bottom = grid[: grid.shape[0] // 2], grid[grid.shape[0] // 2 :]
    assert (top[..., 0] == top[..., 1]).all() and (top[..., 1] == top[..., 2]).all()
    assert (bottom[..., 0] != bottom[..., 1]).any()
    assert summary["kernels"] == 96 and summary["tower_mean"][0] == 0.0
    assert summary["tower_mean"][1] == pytest.approx(2 / 3, abs=1e-4)  # one channel: 1 - 1/3


def test_colour_specificity_against_a_float64_projection() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(200, 3, 11, 11, generator=g)
    u = np.ones(3) / np.sqrt(3)  # the grey direction
    wn = w.double().numpy()
    along = np.einsum("ocij,c->oij", wn, u)
    want = 1 - (along**2).sum(axis=(1, 2)) / (wn**2).sum(axis=(1, 2, 3))
    got = kernels.colour_specificity(w)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert abs(got.mean() - 2 / 3) < 0.01  # iid weights: two of three directions are colour
    with pytest.raises(ValueError, match="RGB"):
        kernels.colour_specificity(torch.zeros(4, 1, 3, 3))


def test_nearest_training_image_of_a_training_image_is_itself(run_with_figures: tuple) -> None:
    from alexnet.data.store import open_store

    run, data, _ = run_with_figures
    model, pre, _ = load_weights(run)
    train = open_store(data / "train")
    bank = np.load(run / "figures" / "fc7_index.npz")
    picks = bank["indices"][[0, 7, 19]]
    feats = store_features(model, pre, train, picks)
    dist, idx = nearest(feats, bank["features"], 3)
    assert bank["indices"][idx[:, 0]].tolist() == picks.tolist()
    # not exactly 0: features of a batch of 3 and of the index's batch of 30 differ in rounding
    assert (dist[:, 0] < 1e-3 * dist[:, 1]).all()


def test_fc7_index_is_built_once_and_rebuilt_for_a_new_checkpoint(run_with_figures: tuple) -> None:
    from alexnet.data.store import open_store

    run, data, manifest = run_with_figures
    assert manifest["neighbours"]["index_built_now"]
    model, pre, _ = load_weights(run)
    train = open_store(data / "train")
    ckpt = run / "checkpoints" / "last.pt"
    path = run / "figures" / "fc7_index.npz"
    key = neighbours.index_key(ckpt, train)
    assert not neighbours.load_or_build_index(path, key, model, pre, train, 30)[2]
    other = neighbours.index_key(ckpt, open_store(data / "val"))
    assert neighbours.load_or_build_index(path, other, model, pre, train, 30)[2]


def test_figures_command_without_data_draws_what_it_can(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "run")
    (run / "config.yaml").write_text("lr: 0.01\n")  # no data recorded
    assert main(["figures", str(run)]) == 0
    out = capsys.readouterr().out
    assert "curves.png" in out and "colour specificity" in out and "no image figures" in out
    assert not (run / "figures" / "predictions.png").exists()
    assert len(read_metrics(run / "metrics.jsonl")) == 6
