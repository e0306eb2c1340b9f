"""Figures: curves, the conv1 kernel grid and its colour measure, predictions, fc7 neighbours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.cli import main
from alexnet.infer.features import nearest, store_features
from alexnet.train.weights import load_weights, read_metrics
from alexnet.viz import curves, kernels, neighbours, predictions
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
    # the kernel grids sit in the labelled figure pixel for pixel, at the recorded origins
    png = np.asarray(Image.open(fig / "conv1_kernels.png").convert("RGB"))
    model, _, _ = load_weights(run)
    weight = kernels.first_conv_weight(model)
    origins = json.loads((fig / "conv1_colour.json").read_text())["grid_origins"]
    for t, (x, y) in enumerate(origins):
        grid = kernels.kernel_grid(weight[48 * t : 48 * (t + 1)], 1)
        assert grid.shape == (3 * 46 + 2, 16 * (11 * 4 + 2) + 2, 3)
        np.testing.assert_array_equal(png[y : y + grid.shape[0], x : x + grid.shape[1]], grid)
    assert Image.open(fig / "predictions.png").size == predictions.figure_size(5)
    assert predictions.figure_size(5) == (4 * 300, 2 * 420 + predictions.TITLE_H)
    assert Image.open(fig / "neighbours.png").size == neighbours.figure_size(3)
    assert manifest["curves"]["lr_drops"] == [1.5]  # lr 0.01, 0.01, 0.001
    assert manifest["weights"] == "run run" and manifest["neighbours"]["distance"].startswith("d =")


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
    grid = kernels.kernel_grid(kernels.first_conv_weight(model), 2)
    assert label((grid != 255).any(axis=2), connectivity=1).max() == 96
    top, bottom = grid[: grid.shape[0] // 2], grid[grid.shape[0] // 2 :]
    assert (top[..., 0] == top[..., 1]).all() and (top[..., 1] == top[..., 2]).all()
    assert (bottom[..., 0] != bottom[..., 1]).any()
    summary = kernels.plot_kernels(model, tmp_path / "k.png", tmp_path / "k.json")
    assert summary["kernels"] == 96 and summary["tower_mean"][0] == 0.0
    assert summary["tower_mean"][1] == pytest.approx(2 / 3, abs=1e-4)  # one channel: 1 - 1/3
    assert json.loads((tmp_path / "k.json").read_text())["per_tower"] == summary["per_tower"]


def test_colour_specificity_of_hand_made_kernels() -> None:
    g = torch.Generator().manual_seed(3)
    base = torch.randn(5, 5, generator=g, dtype=torch.float64)
    grey = base.expand(3, 5, 5)
    red = torch.stack([base, torch.zeros(5, 5), torch.zeros(5, 5)])
    red_minus_green = torch.stack([base, -base, torch.zeros(5, 5)])
    w = torch.stack([grey, red, red_minus_green, grey + 0.5 * red_minus_green]).float()
    got = kernels.colour_specificity(w)
    # float64 by hand: the grey part g = mean over channels; ||w - g||^2 / ||w||^2
    b2 = float((base**2).sum())
    want = [0.0, 2 / 3, 1.0, 0.5 * 0.5 * 2 * b2 / (3 * b2 + 0.25 * 2 * b2)]
    np.testing.assert_allclose(got, want, atol=1e-7)
    stats = kernels.tower_stats(got, 2)
    assert stats[0] == {"kernels": 2, "mean": 0.3333, "median": 0.3333, "above_half": 0.5}
    assert stats[1]["mean"] == pytest.approx((1.0 + want[3]) / 2, abs=1e-4)
    assert stats[1]["above_half"] == 0.5  # 1.0 is above 0.5, 1/7 not


def test_tower_made_grey_measures_near_zero_the_other_not() -> None:
    model = tiny_model(seed=4)
    with torch.no_grad():  # tower 2's kernels replaced by their grey component, plus a hair
        w = model.conv1.weight
        grey = w[48:].mean(1, keepdim=True).expand(48, 3, 11, 11)
        w[48:] = grey + 1e-4 * torch.randn(48, 3, 11, 11)
    fig, summary = kernels.kernel_figure(model, title="conv1 kernels of test weights")
    t1, t2 = summary["per_tower"]
    assert t2["mean"] < 1e-3 and t2["median"] < 1e-3 and t2["above_half"] == 0.0
    assert t1["mean"] == pytest.approx(2 / 3, abs=0.03) and t1["above_half"] == 1.0
    texts = figure_texts(fig)
    assert "conv1 kernels of test weights" in texts
    assert "tower 1: kernels 1-48" in texts and "tower 2: kernels 49-96" in texts
    assert "tower 2's mean is lower by 0.6" in texts
    assert "colour specificity = ||w - grey(w)||^2" in texts


def test_colour_specificity_is_measured_on_the_kernels_as_they_act_on_pixels() -> None:
    from alexnet.models.pretrained.torchvision import torchvision_preprocess

    model = tiny_model("alexnet_owt", input_size=224)
    pre = torchvision_preprocess([])
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    with torch.no_grad():  # grey in pixel space: the stored weights are grey * std
        conv1 = kernels.first_conv_weight(model)
        model.features[0].weight.copy_(conv1.mean(1, keepdim=True) * std)
    fig, summary = kernels.kernel_figure(model, pre=pre)
    assert summary["towers"] == 1 and summary["kernels"] == 64
    assert summary["tower_mean"][0] < 1e-10
    assert kernels.colour_specificity(kernels.first_conv_weight(model)).mean() > 1e-6
    texts = figure_texts(fig)
    assert "one tower (conv2 not grouped): 64 kernels" in texts
    assert "first-layer kernels of alexnet_owt" in texts


def test_a_published_grid_is_redrawn_with_labels_and_the_same_numbers(tmp_path: Path) -> None:
    model = tiny_model(seed=5)
    with torch.no_grad():
        model.conv1.weight[48:, 1:] *= 0.3  # tower 2 leans red: its numbers differ from tower 1
    weight = kernels.first_conv_weight(model)
    grid = kernels.kernel_grid(weight, 2)
    Image.fromarray(grid).save(tmp_path / "old.png")
    back = kernels.kernels_from_grid(grid, 96, 2, 11)
    np.testing.assert_array_equal(kernels.kernel_grid(back, 2), grid)  # the grid is exact
    summary = kernels.redraw_grid(
        tmp_path / "old.png", tmp_path / "new.png", count=96, towers=2, k=11, title="t"
    )
    want = kernels.tower_stats(kernels.colour_specificity(weight), 2)
    for got, ref in zip(summary["per_tower"], want, strict=True):
        assert got["mean"] == pytest.approx(ref["mean"], abs=2e-3)  # 8-bit quantisation
    png = np.asarray(Image.open(tmp_path / "new.png").convert("RGB"))
    x, y = summary["grid_origins"][1]
    np.testing.assert_array_equal(png[y : y + 140, x : x + 738], grid[152:])


def figure_texts(fig) -> str:
    """Every text drawn on a matplotlib Figure (titles, labels, tick labels, legends), joined."""
    from matplotlib.text import Text

    return "\n".join(t.get_text() for t in fig.findobj(Text) if t.get_text())


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


def photo_folder(directory: Path) -> Path:
    """Real photographs (scikit-image's), each with its mirror image, and one exact copy."""
    from skimage import data

    directory.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket", "retina", "hubble_deep_field"):
        img = getattr(data, name)()
        Image.fromarray(img).save(directory / f"{name}.png")
        Image.fromarray(np.ascontiguousarray(img[:, ::-1])).save(directory / f"{name}_flip.png")
    (directory / "chelsea_copy.png").write_bytes((directory / "chelsea.png").read_bytes())
    return directory


@pytest.fixture(scope="module")
def photos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return photo_folder(tmp_path_factory.mktemp("photos") / "photos")


def test_folder_neighbours_agree_with_float64_distances(photos_dir: Path) -> None:
    model, pre, _ = load_weights(make_run(photos_dir.parent / "run"))
    result = neighbours.folder_neighbours(model, pre, photos_dir, queries=13, k=4)
    names = [f.name for f in result.files]
    assert len(names) == 13 and result.queries.tolist() == list(range(13))  # all are queries
    f = result.features.astype(np.float64)
    d = np.sqrt(((f[:, None, :] - f[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)  # a query is not its own neighbour
    want = np.argsort(d, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(result.found, want)
    np.testing.assert_allclose(result.distances, np.take_along_axis(d, want, 1), rtol=1e-9)
    # the exact copy is the nearest other image, at distance 0 (same pixels, same features)
    chelsea, copy = names.index("chelsea.png"), names.index("chelsea_copy.png")
    assert result.found[chelsea, 0] == copy and result.distances[chelsea, 0] == 0.0
    assert set(result.found[copy, :2]) == {chelsea, names.index("chelsea_flip.png")}
    # each photo's mirror image is among its 2 nearest (these random weights keep colour and
    # texture statistics, which a reflection does not change)
    for n, name in enumerate(names):
        twin = name.replace("_flip", "") if "_flip" in name else name.replace(".png", "_flip.png")
        if twin in names:
            assert names.index(twin) in result.found[n, :2], name


def test_figures_of_a_weights_file_with_an_image_folder(
    photos_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from alexnet.train.checkpoint import save_atomic
    from test_infer_helpers import checkpoint

    weights = tmp_path / "w" / "mynet.pt"
    save_atomic(checkpoint(tiny_model()), weights)
    monkeypatch.chdir(tmp_path)
    assert main(["figures", str(weights), "--images", str(photos_dir), "--queries", "3"]) == 0
    out = capsys.readouterr().out
    fig = tmp_path / "figures-mynet"  # no run: next to where the user is, named by the file
    assert f"in {Path('figures-mynet')}" in out and "tower 2 (48 kernels): mean" in out
    assert "weights without a run: no training curves" in out and "d = ||fc7" in out
    assert {p.name for p in fig.iterdir()} == {
        "conv1_kernels.png",
        "conv1_colour.json",
        "predictions.png",
        "neighbours.png",
        "figures.json",
    }
    manifest = json.loads((fig / "figures.json").read_text())
    assert manifest["weights"] == "mynet.pt" and "curves" not in manifest
    assert len(manifest["neighbours"]["queries"]) == 3 and manifest["neighbours"]["embedded"] == 13
    assert Image.open(fig / "neighbours.png").size == neighbours.figure_size(3)
    # the panels' numbers are `alexnet predict`'s for the same files
    from alexnet.infer.predict import predict_files

    pred = manifest["predictions"]
    model, pre, _ = load_weights(weights)
    items = predict_files(model, pre, [photos_dir / f for f in pred["files"]], top=5)
    for item, top in zip(items, pred["top5"], strict=True):
        assert [e["label"] for e in item.top] == [e["label"] for e in top]
        np.testing.assert_allclose(
            [e["probability"] for e in item.top], [e["probability"] for e in top], atol=1e-5
        )


def test_figures_of_missing_weights_create_nothing(tmp_path: Path, capsys) -> None:
    assert main(["figures", str(tmp_path / "runs" / "nope")]) == 2
    assert "no such run directory or weights file" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    run = make_run(tmp_path / "run")
    assert main(["figures", str(run), "--images", str(tmp_path / "nothere")]) == 2
    assert "no such image folder" in capsys.readouterr().err
    (tmp_path / "one").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "one" / "a.png")
    assert main(["figures", str(run), "--images", str(tmp_path / "one")]) == 2
    assert "1 image file(s); fc7 neighbours need at least 2" in capsys.readouterr().err
    assert main(["figures", str(run), "--queries", "0"]) == 2
    assert "--queries must be at least 1" in capsys.readouterr().err
    assert not (run / "figures").exists()


def test_predictions_figure_names_weights_and_explains_colours() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    imgs = [np.zeros((8, 8, 3), np.uint8)] * 2
    fig = predictions.predictions_figure(
        imgs, probs, ["cat", "dog", "fish"], truths=[1, 0], title="top-5 predictions of w.pt"
    )
    texts = figure_texts(fig)
    assert "top-5 predictions of w.pt" in texts and "true: dog" in texts and "true: cat" in texts
    assert "true class" in texts and "softmax probability" in texts
    bars = [p for ax in fig.axes for p in ax.patches]
    red = [p for p in bars if p.get_facecolor()[:3] == pytest.approx((0.839, 0.153, 0.157), 1e-2)]
    assert len(red) == 2  # the true class's bar in each panel
    fig = predictions.predictions_figure(imgs, probs, ["cat", "dog", "fish"], captions=["a", "b"])
    assert "true class" not in figure_texts(fig)  # no truth known: no red, no legend entry


def test_neighbours_figure_names_the_distance_and_the_classes(run_with_figures: tuple) -> None:
    fig = neighbours.neighbours_figure(
        [np.zeros((8, 8), np.uint8)],
        ["query, true: cat"],
        [[np.zeros((8, 8), np.uint8)] * 2],
        [["true: cat", "true: dog"]],
        np.array([[1.5, 2.25]]),
        title="fc7 nearest training images of w.pt",
    )
    texts = figure_texts(fig)
    assert "fc7 nearest training images of w.pt" in texts and neighbours.DISTANCE in texts
    assert "query, true: cat" in texts and "true: dog\nd = 2.25" in texts
    _, _, manifest = run_with_figures  # the run's figure: true class names of the store
    assert manifest["neighbours"]["distance"] == neighbours.DISTANCE


def test_towers_experiment_figure_is_labelled(tmp_path: Path, monkeypatch) -> None:
    from alexnet.experiments import towers

    drawn = []
    real_save = kernels.save
    monkeypatch.setattr(kernels, "save", lambda fig, p: drawn.append(fig) or real_save(fig, p))
    run = make_run(tmp_path / "runs" / "seed0")
    towers.measure(run, tmp_path / "kernels-seed0.png")
    texts = figure_texts(drawn[0])
    assert "conv1 kernels after training (towers experiment, seed0)" in texts
    assert "tower 1: kernels 1-48" in texts and "colour specificity: mean" in texts


def test_report_states_each_towers_numbers() -> None:
    from alexnet.viz.report import _colour

    stats = kernels.tower_stats(np.array([0.1, 0.2, 0.9, 0.7]), 2)
    text = _colour({"tower_mean": [0.15, 0.8], "per_tower": stats, "measure": kernels.MEASURE})
    assert "tower 1: mean 0.150, median 0.150, 0% above 0.5" in text
    assert "tower 2: mean 0.800, median 0.800, 100% above 0.5" in text
    assert "tower 1: mean 0.150" in _colour({"tower_mean": [0.15], "measure": "m"})  # older json


def test_figures_of_registry_weights_with_an_image_folder(
    photos_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`alexnet figures NAME --images DIR` for a registry name (as for caffe-alexnet), here a
    test entry of torchvision's layout imported offline: one tower, 64 kernels."""
    import yaml

    from alexnet.models import create_model
    from test_weights_registry import sha256, tv_entry

    torch.manual_seed(0)
    pth = tmp_path / "tv-test.pth"
    torch.save(create_model("alexnet_owt").state_dict(), pth)
    (tmp_path / "extra.yaml").write_text(
        yaml.safe_dump({"tvtest": tv_entry("http://127.0.0.1:9/tv-test.pth", sha256(pth))})
    )
    monkeypatch.setenv("ALEXNET_WEIGHTS_REGISTRY", str(tmp_path / "extra.yaml"))
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ALEXNET_OFFLINE", "1")
    assert main(["weights", "import", str(pth), "--name", "tvtest"]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["figures", "tvtest", "--images", str(photos_dir), "--queries", "2"]) == 0
    out = capsys.readouterr().out
    assert "figures of tvtest (alexnet_owt) in figures-tvtest" in out
    assert "all kernels (64 kernels): mean" in out
    manifest = json.loads((tmp_path / "figures-tvtest" / "figures.json").read_text())
    assert manifest["kernels"]["towers"] == 1 and len(manifest["neighbours"]["found"]) == 2
    assert manifest["predictions"]["top5"][0][0]["label"] in imagenet_names()


def imagenet_names() -> list[str]:
    from alexnet.data.classes import imagenet_class_names

    return imagenet_class_names()
