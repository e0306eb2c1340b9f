"""The two-tower split (paper section 3.2) computes the grouped single-device net exactly."""

import pytest
import torch

from alexnet.models import create_model
from alexnet.train.towers import (
    GroupedLayout,
    TwoTowerAlexNet,
    load_portable_state_dict,
    portable_state_dict,
)


def _pair(num_classes: int = 7):
    torch.manual_seed(0)
    # float64 so that the only differences left would be real ones, not summation order
    grouped = create_model(
        "alexnet", num_classes=num_classes, input_size=67, dropout=0.0, init="caffe"
    ).double()
    split = TwoTowerAlexNet(grouped, ["cpu", "cpu"]).double()
    return grouped, split


def test_outputs_and_gradients_match_grouped_model():
    grouped, split = _pair(num_classes=7)  # odd: fc8 splits 4 + 3
    x = torch.randn(3, 3, 67, 67, dtype=torch.float64) * 50
    labels = torch.tensor([0, 3, 6])
    out_g, out_s = grouped(x), split(x)
    torch.testing.assert_close(out_s, out_g, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(split.embed(x), grouped.embed(x), rtol=1e-10, atol=1e-10)
    torch.nn.functional.cross_entropy(out_g, labels).backward()
    torch.nn.functional.cross_entropy(out_s, labels).backward()
    grads = split.gather(lambda p: p.grad)
    assert len(grads) == 16
    for name, param in grouped.named_parameters():
        torch.testing.assert_close(grads[name], param.grad, rtol=1e-9, atol=1e-12)


def test_grouped_state_dict_round_trip():
    """What checkpoints store (portable_state_dict): the split gives the grouped net's own
    state dict, and it loads into a split or a plain net alike."""
    grouped, split = _pair()
    assert isinstance(split, GroupedLayout) and not isinstance(grouped, GroupedLayout)
    state = portable_state_dict(split)
    assert state.keys() == grouped.state_dict().keys() == portable_state_dict(grouped).keys()
    for key, value in grouped.state_dict().items():
        assert torch.equal(state[key], value)
    x = torch.randn(2, 3, 67, 67, dtype=torch.float64)
    for make in (lambda m: TwoTowerAlexNet(m, ["cpu", "cpu"]), lambda m: m):
        other = make(create_model("alexnet", num_classes=7, input_size=67, dropout=0.0)).double()
        load_portable_state_dict(other, state)
        torch.testing.assert_close(other(x), grouped(x), rtol=1e-10, atol=1e-10)


def test_rejects_nets_that_mix_towers():
    with torch.device("meta"):  # the checks need shapes only
        onegpu, caffenet = (create_model(n, input_size=67) for n in ("alexnet_onegpu", "caffenet"))
        paper = create_model("alexnet", input_size=67)
    with pytest.raises(ValueError, match="two-tower"):
        TwoTowerAlexNet(onegpu, ["meta", "meta"])
    with pytest.raises(ValueError, match="across both towers"):
        TwoTowerAlexNet(caffenet, ["meta", "meta"])
    with pytest.raises(ValueError, match="exactly two"):
        TwoTowerAlexNet(paper, ["meta"])


@pytest.mark.slow  # two 20M-parameter nets, two steps each: ~4 s on two idle cores
def test_sgd_step_through_the_trainer_matches_the_grouped_model(tmp_path):
    from alexnet.train.config import make_config
    from alexnet.train.loop import Trainer

    torch.manual_seed(0)
    grouped = create_model("alexnet", num_classes=5, input_size=67, dropout=0.0, init="caffe")
    split = TwoTowerAlexNet(grouped, ["cpu", "cpu"])
    config = make_config({"data": "mem", "lr": 0.01, "quiet": True})

    def trainer(model):
        return Trainer(config, model, [], None, preprocess={}, run_dir=tmp_path,
                       device=torch.device("cpu"), precision="fp32")  # fmt: skip

    a, b = trainer(grouped), trainer(split)
    x, y = torch.randn(2, 3, 67, 67) * 50, torch.tensor([1, 4])
    for _ in range(2):  # the second step uses momentum and weight decay
        _, loss_a = a.train_step(x, y)
        _, loss_b = b.train_step(x, y)
        assert loss_b == pytest.approx(loss_a, rel=1e-5)
    state = b.state()["model"]  # checkpoints hold the grouped layout
    for key, value in grouped.state_dict().items():
        torch.testing.assert_close(state[key], value, rtol=1e-4, atol=1e-6)


def test_towers_of_imported_caffe_weights_against_float64(tmp_path, monkeypatch, capsys):
    """Figure 3's measure on the Caffe bvlc_alexnet weights, as a user runs it (`alexnet
    weights pull caffe-alexnet`, then `alexnet figures caffe-alexnet`): here a .caffemodel of the
    paper's two-tower shapes whose tower 1 is made grey in RGB, imported offline under a test
    name. The command's per-tower means must be the float64 measure of the kernels as written,
    and the experiments' tower gap and permutation test must find the towers apart."""
    import hashlib

    import numpy as np
    import yaml

    from alexnet.cli import main
    from alexnet.experiments.towers import permutation_p, tower_gap
    from caffe_files import data_blobs, write_caffemodel
    from test_weights_pull_foreign import entry, random_state

    state = random_state(3)
    w = state["conv1.weight"]  # RGB, as the model holds it; the file is written BGR
    w[:48] = w[:48].mean(1, keepdim=True).expand(48, 3, 11, 11)  # tower 1 grey
    w[48:, 0] *= 3.0  # tower 2 leans red
    caffemodel = write_caffemodel(tmp_path / "net.caffemodel", data_blobs(state), "alexnet")
    registry = tmp_path / "extra.yaml"
    digest = ("sha1", hashlib.sha1(caffemodel.read_bytes()).hexdigest())
    test_entry = entry("caffemodel", "net.caffemodel", "http://127.0.0.1:9/x", digest)
    registry.write_text(yaml.safe_dump({"caffetowers": test_entry}))
    monkeypatch.setenv("ALEXNET_WEIGHTS_REGISTRY", str(registry))
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ALEXNET_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    assert main(["weights", "import", str(caffemodel), "--name", "caffetowers"]) == 0
    assert main(["figures", "caffetowers"]) == 0
    out = capsys.readouterr().out

    kernels = w.double().numpy().reshape(96, 3, -1)
    grey = kernels.mean(1, keepdims=True)
    spec = ((kernels - grey) ** 2).sum((1, 2)) / (kernels**2).sum((1, 2))
    for t, half in enumerate(np.split(spec, 2)):
        assert f"tower {t + 1} (48 kernels): mean {half.mean():.3f}, median" in out
    assert spec[:48].max() < 1e-12 and spec[48:].mean() > 0.5
    assert tower_gap(spec) == pytest.approx(spec[48:].mean(), rel=1e-9)
    assert permutation_p(spec) < 0.01
