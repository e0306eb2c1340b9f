"""Fine-tuning (`alexnet train --init-from`): the loaded layers are the source's, the new head
is fresh and learns at new_layer_lr x the lr, frozen layers do not move, resume stays exact."""

from __future__ import annotations

import pytest
import torch
import yaml

from alexnet.cli import main
from alexnet.data.prepare import prepare
from alexnet.models import create_model
from alexnet.models.transfer import freeze_through, load_fitting

TINY = ["--model", "cifar_fig1", "--model-option", "input_size=12", "--batch-size", "8",
        "--lr", "0.05", "--quiet", "--precision", "fp32", "--log-every", "100"]  # fmt: skip


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained 3-class source run and a 4-class target data set."""
    root = tmp_path_factory.mktemp("ft")
    prepare("synthetic:48:16:3", root / "src-data", size=16, workers=1, quiet=True)
    prepare("synthetic:64:16:4", root / "dst-data", size=16, workers=1, quiet=True)
    run = root / "source"
    assert main(["train", "--data", str(root / "src-data"), "--out", str(run), "--epochs", "1",
                 *TINY]) == 0  # fmt: skip
    return root, run


def weights(run) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def fine_tune(root, run, out, *extra) -> int:
    return main(["train", "--data", str(root / "dst-data"), "--init-from", str(run),
                 "--out", str(out), "--seed", "1", *TINY, *extra])  # fmt: skip


def test_loaded_frozen_and_fresh_layers(source, capsys) -> None:
    root, run = source
    src = weights(run)
    out = root / "frozen"
    capsys.readouterr()
    assert fine_tune(root, run, out, "--epochs", "1", "--freeze", "conv3") == 0
    said = capsys.readouterr().out
    assert "loaded conv1, conv2, conv3; initialised afresh: fc" in said and "conv3" in said
    got = weights(out)
    for k in ("conv1.weight", "conv2.bias", "conv3.weight"):  # frozen: exactly the source's
        assert torch.equal(got[k], src[k]), k
    assert got["fc.weight"].shape[0] == 4 and src["fc.weight"].shape[0] == 3  # a new head
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["init_from"] == str(run) and config["freeze"] == "conv3"
    # the head's group learns at 10x the lr; the frozen layers are in no group
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    groups = ckpt["optimizer"]["param_groups"]
    assert [(g["lr_mult"], len(g["params"])) for g in groups] == [(10.0, 2)]


def test_unfrozen_layers_start_from_the_source_and_move(source) -> None:
    root, run = source
    src = weights(run)
    out = root / "moving"
    assert fine_tune(root, run, out, "--max-steps", "1", "--lr", "1e-9") == 0
    got = weights(out)
    # one step at a negligible lr: the loaded layers are the source's to ~1e-9, not re-drawn
    for k in ("conv1.weight", "conv3.bias"):
        torch.testing.assert_close(got[k], src[k], rtol=0, atol=1e-6)
    fresh = create_model("cifar_fig1", input_size=12, num_classes=4)
    assert not torch.allclose(got["conv1.weight"], fresh.conv1.weight)


def test_resume_of_a_fine_tuning_run_is_exact(source) -> None:
    root, run = source
    whole, cut = root / "whole", root / "cut"
    # plateau: the small-image recipe's cosine anneals over --epochs, so extending changes it
    same = ("--freeze", "conv1", "--schedule", "plateau")
    assert fine_tune(root, run, whole, "--epochs", "2", *same) == 0
    assert fine_tune(root, run, cut, "--epochs", "1", *same) == 0
    assert main(["train", "--resume", str(cut), "--epochs", "2", "--quiet"]) == 0
    a, b = weights(whole), weights(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_transfer_helpers() -> None:
    src = create_model("alexnet", input_size=67, num_classes=10).state_dict()
    grey = create_model("alexnet", input_size=67, num_classes=5, in_chans=1)
    transfer = load_fitting(grey, src)
    assert transfer.fresh == ("conv1", "fc8")  # 1 input channel, 5 classes
    assert torch.equal(grey.conv2.weight, src["conv2.weight"])
    assert freeze_through(grey, "conv2") == ["conv1", "conv2"]
    assert not grey.conv2.weight.requires_grad and grey.conv3.weight.requires_grad
    with pytest.raises(ValueError, match="not a learned layer"):
        freeze_through(grey, "conv9")


def test_freeze_without_init_is_refused(source, capsys) -> None:
    root, _ = source
    assert main(["train", "--data", str(root / "dst-data"), "--freeze", "conv1",
                 "--out", str(root / "x"), *TINY]) == 2  # fmt: skip
    assert "--freeze needs --init-from" in capsys.readouterr().err


def test_the_head_is_fresh_for_other_classes_of_the_same_count(source, tmp_path, capsys) -> None:
    """Three other classes are not the source's three: its classifier fits but is not loaded."""
    from PIL import Image

    root, run = source
    folder = tmp_path / "other"
    for i, name in enumerate(("ant", "bee", "cow")):
        (folder / name).mkdir(parents=True)
        for j in range(8):
            pixel = (40 + 60 * i, 200 - 20 * j, 90)
            Image.new("RGB", (16, 16), pixel).save(folder / name / f"{j}.png")
    prepare(str(folder), tmp_path / "other-data", size=16, workers=1, quiet=True)
    src = weights(run)
    for data, said in ((tmp_path / "other-data", "initialised afresh: fc;"),
                       (root / "src-data", "loaded conv1, conv2, conv3, fc; initialised afresh: "
                                           "none")):  # fmt: skip
        out = tmp_path / f"ft-{data.name}"
        capsys.readouterr()
        assert main(["train", "--data", str(data), "--init-from", str(run), "--out", str(out),
                     *TINY, "--max-steps", "1", "--lr", "1e-9"]) == 0  # fmt: skip
        assert said in capsys.readouterr().out
        kept = torch.allclose(weights(out)["fc.weight"], src["fc.weight"], rtol=0, atol=1e-6)
        assert kept == (data.name == "src-data")


def test_quiet_stays_quiet_with_init_from(source, capsys) -> None:
    root, run = source
    capsys.readouterr()
    assert fine_tune(root, run, root / "quiet", "--max-steps", "2") == 0
    assert "batch/s" not in capsys.readouterr().err  # no progress bar under --quiet


def test_init_from_without_model_takes_the_sources_net(source) -> None:
    """No --model: the small-image recipe's options (the paper net's) do not reach the source's."""
    root, run = source
    out = root / "no-model"
    assert main(["train", "--data", str(root / "dst-data"), "--init-from", str(run),
                 "--out", str(out), "--max-steps", "1", "--batch-size", "8", "--quiet",
                 "--precision", "fp32"]) == 0  # fmt: skip
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"] == "cifar_fig1" and config["model_options"]["input_size"] == 12
    assert "dropout" not in config["model_options"]


def test_asked_for_options_win_over_the_sources_and_another_model_is_refused(
    source, capsys
) -> None:
    """--model-option by flag is kept (it used to be replaced by the source's silently); the
    loaded layers still fit, since an activation changes no shape."""
    root, run = source
    out = root / "tanh"
    assert fine_tune(root, run, out, "--max-steps", "1", "--model-option", "activation=tanh") == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model_options"]["activation"] == "tanh"
    assert config["model_options"]["input_size"] == 12  # the rest is still the source's
    capsys.readouterr()
    other = root / "other-net"
    assert main(["train", "--data", str(root / "dst-data"), "--init-from", str(run),
                 "--out", str(other), "--model", "alexnet", "--quiet"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--model alexnet" in err and "cifar_fig1" in err and len(err.strip().splitlines()) == 1
    assert not (other / "checkpoints").exists()
    # without --model the options are checked against the source's net, not the recipe's alexnet
    assert main(["train", "--data", str(root / "dst-data"), "--init-from", str(run),
                 "--out", str(root / "bogus"), "--model-option", "bogus=1",
                 "--quiet"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "bogus" in err and "'cifar_fig1'" in err and len(err.strip().splitlines()) == 1


def test_smaller_images_than_the_sources_are_stored_at_their_own_size(source) -> None:
    """The source's preset stores 16 px; 8-px images are not enlarged on prepare (a 256-px
    preset would store CIFAR-10 at 12 GB) but fed whole and upscaled per batch to its input."""
    root, run = source
    out = root / "small-images"
    assert main(["train", "--data", "synthetic:40:8:4", "--init-from", str(run),
                 "--out", str(out), "--max-steps", "2", "--batch-size", "8", "--quiet",
                 "--precision", "fp32"]) == 0  # fmt: skip
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["image_size"] == 8 and config["model_options"]["input_size"] == 12
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["preprocess"]["image_size"] == 8 and ckpt["preprocess"]["crop_size"] == 12


def test_fresh_layers_are_drawn_as_a_scratch_run_draws_them(source) -> None:
    root, run = source
    tuned, scratch = root / "same-seed-tuned", root / "same-seed-scratch"
    tiny_lr = ["--max-steps", "1", "--lr", "1e-12"]  # one step that moves nothing visibly
    assert fine_tune(root, run, tuned, *tiny_lr) == 0
    assert main(["train", "--data", str(root / "dst-data"), "--out", str(scratch), "--seed", "1",
                 *TINY, *tiny_lr]) == 0  # fmt: skip
    a, b = weights(tuned), weights(scratch)
    torch.testing.assert_close(a["fc.weight"], b["fc.weight"], rtol=0, atol=1e-6)
    assert not torch.allclose(a["conv1.weight"], b["conv1.weight"])  # loaded, not drawn


def test_a_refused_run_leaves_no_directory(source, capsys) -> None:
    root, run = source
    out = root / "never"
    assert fine_tune(root, run, out, "--freeze", "conv9") == 2
    assert "not a learned layer" in capsys.readouterr().err and not out.exists()
    kept = root / "kept"
    kept.mkdir()  # a directory the user made is left as it was, lock file aside
    assert fine_tune(root, root / "nope", kept) == 2
    assert kept.is_dir() and [p.name for p in kept.iterdir()] in ([], [".lock"])


@pytest.mark.parametrize(
    ("init_from", "name"),
    [
        ("caffe-alexnet", "caffe-alexnet-tuned-flowers-"),
        ("runs/cifar-a/checkpoints/best.pt", "cifar-a-tuned-flowers-"),
        ("runs/cifar-a/", "cifar-a-tuned-flowers-"),
        ("weights/net.safetensors", "net-tuned-flowers-"),
        ("", "alexnet-flowers-"),
    ],
)
def test_default_run_dir_names_the_source_of_a_fine_tuning_run(init_from, name) -> None:
    """The recipe's model is not the net a fine-tuning run trains, so the name is the source's."""
    from alexnet.train.config import make_config
    from alexnet.train.run import default_run_dir

    out = default_run_dir(make_config({"data": "photos/flowers/", "init_from": init_from}))
    assert out.parent.name == "runs" and out.name.startswith(name)
