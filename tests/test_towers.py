"""The two-tower split (paper section 3.2) computes the grouped single-device net exactly."""

import pytest
import torch

from alexnet.models import create_model
from alexnet.train.towers import TwoTowerAlexNet


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
    grouped, split = _pair()
    state = split.grouped_state_dict()
    assert state.keys() == grouped.state_dict().keys()
    for key, value in grouped.state_dict().items():
        assert torch.equal(state[key], value)
    other = create_model("alexnet", num_classes=7, input_size=67, dropout=0.0).double()
    split2 = TwoTowerAlexNet(other, ["cpu", "cpu"]).double()
    split2.load_grouped_state_dict(state)
    x = torch.randn(2, 3, 67, 67, dtype=torch.float64)
    torch.testing.assert_close(split2(x), grouped(x), rtol=1e-10, atol=1e-10)


def test_rejects_nets_that_mix_towers():
    with pytest.raises(ValueError, match="two-tower"):
        TwoTowerAlexNet(create_model("alexnet_onegpu", input_size=67), ["cpu", "cpu"])
    with pytest.raises(ValueError, match="across both towers"):
        TwoTowerAlexNet(create_model("caffenet", input_size=67), ["cpu", "cpu"])
    with pytest.raises(ValueError, match="exactly two"):
        TwoTowerAlexNet(create_model("alexnet", input_size=67), ["cpu"])
