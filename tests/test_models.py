"""The model zoo against the paper (reference sections 1, 5), torchvision's layout, formulas."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet.models import create_model, list_models, model_defaults

# Reference section 1: 227 input, (channels, side) after each stage; 9216 into fc6.
PAPER_STAGES = {
    "conv1": (96, 55), "pool1": (96, 27), "conv2": (256, 27), "pool2": (256, 13),
    "conv3": (384, 13), "conv4": (384, 13), "conv5": (256, 13), "pool5": (256, 6),
}  # fmt: skip
SMALL = 67  # the smallest paper-net input whose pool5 is 1x1: keeps the big nets' tests fast


def conv_params(cin: int, cout: int, k: int, groups: int = 1) -> int:
    return cin // groups * k * k * cout + cout


def fc_params(fin: int, fout: int) -> int:
    return fin * fout + fout


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **options) -> nn.Module:
    """Architecture only (no memory, no init time): enough for counts, shapes and reprs."""
    with torch.device("meta"):
        return create_model(name, **options)


def record(model: nn.Module, names: Iterable[str], x: torch.Tensor, keep: Callable = torch.clone):
    """`keep(output)` of each named layer during one no-grad forward, via forward hooks."""
    outs = {}
    hooks = [
        getattr(model, n).register_forward_hook(
            lambda _m, _i, out, n=n: outs.__setitem__(n, keep(out))
        )
        for n in names
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return outs


@pytest.mark.parametrize(("input_size", "pad"), [(227, 0), (224, 2)])
def test_paper_stage_shapes(input_size: int, pad: int) -> None:
    model = create_model("alexnet", input_size=input_size).eval()
    assert model.conv1.padding == (pad, pad)
    x = torch.randn(1, 3, input_size, input_size)
    shapes = record(model, PAPER_STAGES, x, keep=lambda out: tuple(out.shape[1:]))
    assert shapes == {name: (c, s, s) for name, (c, s) in PAPER_STAGES.items()}
    assert model.fc6.in_features == 9216


def test_nonoverlapping_pool_keeps_sizes() -> None:
    """Section 3.4 compares 3/2 with 2/2 pooling, 'which produces output of the same dimensions'."""
    model = meta_model("alexnet", pool="nonoverlap")
    assert model.pool1.kernel_size == 2 and model.fc6.in_features == 9216


def test_input_size_sets_fc6_and_rejects_too_small() -> None:
    assert meta_model("alexnet", input_size=SMALL).fc6.in_features == 256  # pool5 1x1
    assert meta_model("alexnet", input_size=259).fc6.in_features == 256 * 7 * 7
    # 63 = 11 + 4 * 13: no padding, 14 -> 6 -> 2 -> 0; 64 pads by 2: 15 -> 7 -> 3 -> 1
    with pytest.raises(ValueError, match=r"input_size=63 is too small.*at least 64"):
        meta_model("alexnet", input_size=63)
    # torchvision's net always pads conv1 by 2: 63 -> 15 -> 7 -> 3 -> 1; 62 -> 14 -> 6 -> 2 -> 0
    assert meta_model("alexnet_owt", input_size=63).input_size == 63
    with pytest.raises(ValueError, match=r"input_size=62 is too small.*at least 63"):
        meta_model("alexnet_owt", input_size=62)


def test_parameter_counts_match_the_reference() -> None:
    model = meta_model("alexnet")
    convs = sum(n_params(getattr(model, f"conv{i}")) for i in range(1, 6))
    assert (convs, n_params(model.fc6), n_params(model.fc7), n_params(model.fc8)) == (
        2_334_080, 37_752_832, 16_781_312, 4_097_000,
    )  # fmt: skip
    assert n_params(model) == 60_965_224
    assert n_params(meta_model("alexnet", towers=1)) == 62_378_344
    assert n_params(meta_model("caffenet")) == 60_965_224
    assert n_params(meta_model("alexnet_owt")) == 61_100_840


def multiply_adds(model: nn.Module, input_size: int) -> int:
    """Multiply-adds of one image's forward: (output elements) x (one filter's size) per layer."""
    total = 0

    def count(module: nn.Module, _inputs, out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel() * module.weight[0].numel()  # one filter per output element

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    hooks = [m.register_forward_hook(count) for m in layers]
    model(torch.empty(1, model.in_chans, input_size, input_size, device="meta"))
    for h in hooks:
        h.remove()
    return total


def test_multiply_adds_match_the_reference() -> None:
    """Reference section 1: about 0.72 G multiply-adds per image at 227 (groups halve conv2/4/5)."""
    assert abs(multiply_adds(meta_model("alexnet"), 227) / 0.72e9 - 1) < 0.01
    ungrouped = multiply_adds(meta_model("alexnet", towers=1), 227)
    extra = 27 * 27 * 256 * 48 * 25 + 13 * 13 * (384 + 256) * 192 * 9  # the other tower's inputs
    assert ungrouped - multiply_adds(meta_model("alexnet"), 227) == extra


def test_onegpu_has_half_the_kernels_in_conv1_to_4() -> None:
    """Section 3.2: half of each conv layer's kernels (48, 128, 192, 192), conv5 and FC in full."""
    convs = [(3, 48, 11), (48, 128, 5), (128, 192, 3), (192, 192, 3), (192, 256, 3)]
    fcs = [(9216, 4096), (4096, 4096), (4096, 1000)]
    expected = sum(conv_params(*c) for c in convs) + sum(fc_params(*f) for f in fcs)
    model = meta_model("alexnet_onegpu")
    assert n_params(model) == expected
    assert all(getattr(model, f"conv{i}").groups == 1 for i in range(1, 6))


def test_cifar_parameter_counts_and_sizes() -> None:
    """Reference section 5's layer lists, with cuda-convnet's round-up pools (32->16->8->4)."""
    fig1 = meta_model("cifar_fig1")
    expected = (
        conv_params(3, 32, 5) + conv_params(32, 32, 5) + conv_params(32, 64, 5)
        + fc_params(64 * 4 * 4, 10)
    )  # fmt: skip
    assert n_params(fig1) == expected
    local = meta_model("cifar_conv_local")
    positions = 8 * 8  # local3/local4 see 8x8 maps; one filter bank and bias per position
    expected = (
        conv_params(3, 64, 5) + conv_params(64, 64, 5)
        + positions * (64 * 9 * 32 + 32) + positions * (32 * 9 * 32 + 32)
        + fc_params(32 * 8 * 8, 10)
    )  # fmt: skip
    assert n_params(local) == expected
    assert n_params(meta_model("cifar_conv_local", lrn=False)) == expected  # one change only
    assert meta_model("cifar_fig1", in_chans=1, input_size=28).fc.in_features == 64 * 3 * 3


def test_cifar_pools_round_up_and_average_only_what_they_cover() -> None:
    """cuda-convnet's pools: ceil((32 - 3) / 2) + 1 = 16 windows; the last one overhangs the edge
    and averages the pixels it covers, so a constant image stays constant."""
    model = create_model("cifar_fig1").eval()
    ones = torch.ones(1, 32, 16, 16)
    assert model.pool1(torch.zeros(1, 32, 32, 32)).shape[-1] == 16
    torch.testing.assert_close(model.pool2(ones), torch.ones(1, 32, 8, 8))
    torch.testing.assert_close(model.pool3(ones[..., :8, :8]), torch.ones(1, 32, 4, 4))


CONVS = ("conv2", "conv3", "conv4", "conv5")


@pytest.mark.parametrize(
    ("perturbed", "half", "isolated", "crossing"),
    [("conv1", 48, "conv2", "conv3"), ("conv3", 192, "conv4", None), ("conv4", 192, "conv5", None)],
)
def test_towers_are_isolated(
    perturbed: str, half: int, isolated: str, crossing: str | None
) -> None:
    """Changing tower 2's kernels of one layer leaves tower 1 of the next grouped layer unchanged.

    Strong form: the perturbation passes through ReLU, LRN and pooling first, so LRN must
    normalise each tower on its own (as each GPU did); conv3 sees both towers and changes.
    """
    torch.manual_seed(0)
    model = create_model("alexnet", input_size=SMALL).eval()
    x = torch.randn(1, 3, SMALL, SMALL) * 50
    before = record(model, CONVS, x)
    with torch.no_grad():
        getattr(model, perturbed).weight[half:] += 0.05 * torch.randn_like(
            getattr(model, perturbed).weight[half:]
        )
    after = record(model, CONVS, x)
    n = before[isolated].shape[1] // 2
    assert torch.equal(after[isolated][:, :n], before[isolated][:, :n])
    assert not torch.allclose(after[isolated][:, n:], before[isolated][:, n:])
    if crossing:
        for part in (slice(None, before[crossing].shape[1] // 2), slice(None)):
            assert not torch.allclose(after[crossing][:, part], before[crossing][:, part])


def test_caffenet_lrn_crosses_towers() -> None:
    """Caffe normalises across all 96 maps, so tower 2's conv1 kernels reach tower 1's conv2."""
    torch.manual_seed(0)
    model = create_model("caffenet", input_size=SMALL).eval()
    x = torch.randn(1, 3, SMALL, SMALL) * 50
    before = record(model, CONVS, x)["conv2"]
    with torch.no_grad():
        model.conv1.weight[48:50] *= 3.0  # the two maps beside the tower boundary
    assert not torch.allclose(record(model, CONVS, x)["conv2"][:, :128], before[:, :128])


def lrn_formula(a: torch.Tensor, n: int, alpha: float, beta: float, k: float, towers: int = 1):
    """Section 3.3 read literally, in float64: b = a / (k + alpha * sum of a^2 over n maps)^beta.

    The window of n maps is centred on each map and clipped at the edges of its tower.
    """
    a = a.double()
    out = torch.empty_like(a)
    per = a.shape[1] // towers
    for c in range(a.shape[1]):
        first = c // per * per
        lo, hi = max(first, c - n // 2), min(first + per - 1, c + n // 2)
        total = (a[:, lo : hi + 1] ** 2).sum(dim=1)
        out[:, c] = a[:, c] / (k + alpha * total) ** beta
    return out


@pytest.mark.parametrize(
    ("name", "options", "n", "alpha", "k", "towers"),
    [
        ("alexnet", {"lrn": "code"}, 5, 1e-4 / 5, 2.0, 2),  # cuda-convnet divides alpha by n
        ("alexnet", {"lrn": "paper"}, 5, 1e-4, 2.0, 2),  # the printed formula, literally
        ("alexnet", {"lrn": "code", "towers": 1}, 5, 1e-4 / 5, 2.0, 1),
        ("caffenet", {}, 5, 1e-4 / 5, 1.0, 1),  # Caffe: k = 1, across both towers
        ("cifar_conv_local", {}, 9, 1e-3 / 9, 1.0, 1),  # the 11pct file: size 9, scale 1e-3
    ],
)
def test_lrn_matches_formula(name: str, options: dict, n: int, alpha: float, k: float, towers: int):
    torch.manual_seed(0)
    model = meta_model(name, **options)
    channels = 96 if name != "cifar_conv_local" else 64
    a = torch.rand(2, channels, 3, 3) * 100  # large enough that the alpha conventions differ
    for norm in (model.norm1, model.norm2):
        expected = lrn_formula(a, n, alpha, 0.75, k, towers)
        torch.testing.assert_close(norm(a).double(), expected, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(expected, lrn_formula(a, n, alpha * 3, 0.75, k, towers))


def paper_forward(model: nn.Module, x: torch.Tensor, lrn: tuple, pool_first: bool, towers: int):
    """Section 3's net written out with functional ops and lrn_formula (eval mode, float64):
    ReLU after every layer but fc8, LRN after the ReLU of conv1 and conv2, max-pool 3/2."""
    p = {k: v.double() for k, v in model.state_dict().items()}

    def conv(x: torch.Tensor, name: str, pad: int, groups: int = 1, stride: int = 1):
        return F.relu(F.conv2d(x, p[f"{name}.weight"], p[f"{name}.bias"], stride, pad, 1, groups))

    def norm_pool(x: torch.Tensor) -> torch.Tensor:
        if pool_first:
            return lrn_formula(F.max_pool2d(x, 3, 2), *lrn, towers=towers)
        return F.max_pool2d(lrn_formula(x, *lrn, towers=towers), 3, 2)

    x = norm_pool(conv(x, "conv1", 0, stride=4))
    x = norm_pool(conv(x, "conv2", 2, groups=2))
    x = conv(conv(conv(x, "conv3", 1), "conv4", 1, groups=2), "conv5", 1, groups=2)
    x = F.max_pool2d(x, 3, 2).flatten(1)
    x = F.relu(F.linear(F.relu(F.linear(x, p["fc6.weight"], p["fc6.bias"])), *_fc(p, "fc7")))
    return F.linear(x, *_fc(p, "fc8"))


def _fc(p: dict[str, torch.Tensor], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    return p[f"{name}.weight"], p[f"{name}.bias"]


@pytest.mark.parametrize(
    ("name", "lrn", "pool_first", "towers"),
    [
        ("alexnet", (5, 1e-4 / 5, 0.75, 2.0), False, 2),  # LRN then pool, within each tower
        ("caffenet", (5, 1e-4 / 5, 0.75, 1.0), True, 1),  # pool then LRN, across both towers
    ],
)
def test_forward_matches_functional_definition(name, lrn, pool_first, towers) -> None:
    torch.manual_seed(0)
    model = create_model(name, input_size=SMALL, num_classes=10).eval()
    x = torch.randn(2, 3, SMALL, SMALL, dtype=torch.float64) * 60
    expected = paper_forward(model, x, lrn, pool_first, towers)
    with torch.no_grad():
        torch.testing.assert_close(model.double()(x), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    ("name", "stds", "biases"),
    [
        ("alexnet", [0.01] * 8, [0, 1, 0, 1, 1, 1, 1, 0]),  # section 5
        ("caffenet", [0.01] * 5 + [0.005, 0.005, 0.01], [0, 0.1, 0, 0.1, 0.1, 0.1, 0.1, 0]),
    ],
)
def test_initialisation(name: str, stds: list[float], biases: list[float]) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    layers = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    for layer, std, bias in zip(layers, stds, biases, strict=True):
        w, b = getattr(model, layer).weight.double(), getattr(model, layer).bias
        assert abs(w.std().item() - std) < 0.03 * std, layer  # >= 34,848 draws: ~0.4% spread
        assert abs(w.mean().item()) < 0.03 * std, layer
        assert torch.all(b == bias), layer


@pytest.mark.parametrize("init", ["kaiming", "kaiming_paper_conv1"])
def test_kaiming_initialisation(init: str) -> None:
    """He et al. 2015: std sqrt(2 / fan_in) (fan_in: one tower's maps); fc8 sqrt(1 / fan_in);
    "kaiming_paper_conv1" puts conv1 at the paper's N(0, 0.01) and leaves the rest Kaiming."""
    torch.manual_seed(0)
    model = create_model("alexnet", init=init)
    fan_in = {
        "conv1": 3 * 11 * 11, "conv2": 48 * 5 * 5, "conv3": 256 * 3 * 3, "conv4": 192 * 3 * 3,
        "conv5": 192 * 3 * 3, "fc6": 9216, "fc7": 4096, "fc8": 4096,
    }  # fmt: skip
    for layer, fan in fan_in.items():
        std = (1 if layer == "fc8" else 2) ** 0.5 / fan**0.5
        if init == "kaiming_paper_conv1" and layer == "conv1":
            std = 0.01
        assert abs(getattr(model, layer).weight.double().std().item() - std) < 0.03 * std, layer
        assert torch.all(getattr(model, layer).bias == 0), layer


def test_cifar_initialisation() -> None:
    """cuda-convnet's initW per layer (reference section 5), biases 0."""
    torch.manual_seed(0)
    for name, stds in [
        ("cifar_fig1", {"conv1": 1e-4, "conv2": 0.01, "conv3": 0.01, "fc": 0.01}),
        ("cifar_conv_local", {"conv1": 1e-4, "conv2": 0.01, "local3": 0.04, "local4": 0.04}),
    ]:
        model = create_model(name)
        for layer, std in stds.items():
            w = getattr(model, layer).weight.double()
            assert abs(w.std().item() - std) < 0.05 * std, (name, layer)
            assert torch.all(getattr(model, layer).bias == 0), (name, layer)


def small_options(name: str) -> dict:
    """Grey input, 7 classes, and the smallest input each net accepts (fast, and unusual)."""
    options = {"num_classes": 7, "in_chans": 1}
    if model_defaults(name)["input_size"] > 64:
        options["input_size"] = SMALL
    return options


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_a_step(name: str) -> None:
    """Forward of a small batch gives finite (N, num_classes) logits; every parameter gets a
    gradient; the model exposes the documented attributes and methods."""
    torch.manual_seed(0)
    model = create_model(name, **small_options(name))
    assert (model.num_classes, model.in_chans) == (7, 1)
    assert model.model_name == name and model.model_options["num_classes"] == 7
    x = torch.randn(2, 1, model.input_size, model.input_size) * 30
    logits = model(x)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([1, 5])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    model.eval()
    with torch.no_grad():
        features, embedding = model.forward_features(x), model.embed(x)
        assert features.dim() == 4 and features.shape[0] == 2
        assert embedding.dim() == 2 and embedding.shape[0] == 2
        torch.testing.assert_close(model(x), F.linear(embedding, *_head(model)))


def _head(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The output layer's weight and bias: logits are an affine map of `embed`."""
    head = getattr(model, "fc8", None) or getattr(model, "fc", None) or model.classifier[6]
    return head.weight, head.bias


def test_paper_embed_is_fc7_after_relu() -> None:
    torch.manual_seed(0)
    model = create_model("alexnet", input_size=SMALL).eval()
    x = torch.randn(2, 3, SMALL, SMALL) * 30
    with torch.no_grad():
        expected = F.relu(model.fc7(F.relu(model.fc6(model.forward_features(x).flatten(1)))))
        torch.testing.assert_close(model.embed(x), expected)
    assert model.embed(x).shape == (2, 4096)


def child_reprs(model: nn.Module) -> dict[str, str]:
    return {name: repr(child) for name, child in model.named_children()}


ACTS = {f"act{i}" for i in range(1, 8)}


@pytest.mark.parametrize(
    ("options", "changed"),
    [
        ({"lrn": "paper"}, {"norm1", "norm2"}),
        ({"lrn": None}, {"norm1", "norm2"}),
        ({"lrn": False}, {"norm1", "norm2"}),  # what `--model-option lrn=false` gives
        ({"pool": "nonoverlap"}, {"pool1", "pool2", "pool5"}),
        ({"activation": "tanh"}, ACTS),
        ({"dropout": 0.2}, {"drop6", "drop7"}),
        ({"towers": 1}, {"conv2", "conv4", "conv5", "norm1", "norm2"}),
        ({"input_size": 224}, {"conv1"}),
        ({"init": "caffe"}, set()),  # values only: see test_initialisation
    ],
)
def test_each_option_changes_only_what_it_names(options: dict, changed: set[str]) -> None:
    base, variant = (
        child_reprs(meta_model("alexnet")),
        child_reprs(meta_model("alexnet", **options)),
    )
    assert list(base) == list(variant)
    assert {name for name in base if base[name] != variant[name]} == changed


def test_cifar_options_change_only_what_they_name() -> None:
    base = child_reprs(meta_model("cifar_fig1"))
    tanh = child_reprs(meta_model("cifar_fig1", activation="tanh"))
    assert {n for n in base if base[n] != tanh[n]} == {"act1", "act2", "act3"}
    base = child_reprs(meta_model("cifar_conv_local"))
    plain = child_reprs(meta_model("cifar_conv_local", lrn=False))
    assert {n for n in base if base[n] != plain[n]} == {"norm1", "norm2"}


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("alexnet", {"lrn": "paper", "towers": 1, "input_size": 224, "activation": "tanh"}),
        ("caffenet", {"num_classes": 10, "dropout": 0.1}),
        ("alexnet_onegpu", {"lrn": None, "in_chans": 1}),
        ("alexnet_owt", {"num_classes": 5}),
        ("cifar_fig1", {"activation": "tanh", "input_size": 28, "in_chans": 1}),
        ("cifar_conv_local", {"lrn": False, "local_width": 64}),
    ],
)
def test_model_options_rebuild_the_same_net(name: str, options: dict) -> None:
    model = meta_model(name, **options)
    assert set(model.model_options) == set(model_defaults(name))
    assert options.items() <= model.model_options.items()
    rebuilt = meta_model(model.model_name, **model.model_options)
    assert repr(rebuilt) == repr(model)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }


def test_same_seed_same_model() -> None:
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = create_model("cifar_conv_local")
        outs.append(model(torch.ones(1, 3, 32, 32) * 40))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (
            lambda: create_model("alexnet_v9"),
            r"unknown model 'alexnet_v9'.*alexnet, alexnet_onegpu",
        ),
        (lambda: create_model("alexnet", lrm="code"), r"unknown option\(s\) lrm.*valid.*lrn"),
        (lambda: create_model("alexnet", lrn="fast"), r"lrn='fast' is not one of"),
        (lambda: create_model("alexnet", pool="avg"), r"pool='avg' is not one of"),
        (lambda: create_model("alexnet", towers=3), r"towers=3 must divide"),
        (lambda: create_model("alexnet", dropout=1.0), r"dropout=1.0 must be a number in \[0, 1\)"),
        (lambda: create_model("alexnet", num_classes=0), r"num_classes=0 must be an integer"),
        (lambda: create_model("cifar_conv_local", lrn="yes"), r"lrn='yes' is not one of"),
        (lambda: create_model("cifar_fig1", in_chans=True), r"in_chans=True must be an integer"),
    ],
)
def test_bad_names_and_options_are_named_in_the_error(call, pattern: str) -> None:
    with torch.device("meta"), pytest.raises(ValueError, match=pattern):
        call()


# torchvision's documented alexnet state dict: key -> shape (its models/alexnet.py layout).
TORCHVISION_ALEXNET = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}  # fmt: skip


def torchvision_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's alexnet in eval mode, written out with functional ops."""
    x = F.max_pool2d(
        F.relu(F.conv2d(x, sd["features.0.weight"], sd["features.0.bias"], 4, 2)), 3, 2
    )
    x = F.max_pool2d(
        F.relu(F.conv2d(x, sd["features.3.weight"], sd["features.3.bias"], 1, 2)), 3, 2
    )
    for i in (6, 8, 10):
        x = F.relu(F.conv2d(x, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], 1, 1))
    x = F.adaptive_avg_pool2d(F.max_pool2d(x, 3, 2), 6).flatten(1)
    x = F.relu(F.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"]))
    x = F.relu(F.linear(x, sd["classifier.4.weight"], sd["classifier.4.bias"]))
    return F.linear(x, sd["classifier.6.weight"], sd["classifier.6.bias"])


@pytest.mark.parametrize("input_size", [224, 127])  # 127: pool5 is 3x3, the adaptive pool upsamples
def test_owt_loads_torchvision_layout_and_matches_its_forward(input_size: int) -> None:
    torch.manual_seed(0)
    sd = {k: torch.randn(shape) * 0.02 for k, shape in TORCHVISION_ALEXNET.items()}
    assert sum(v.numel() for v in sd.values()) == 61_100_840
    model = meta_model("alexnet_owt").eval()
    model.load_state_dict(sd, strict=True, assign=True)  # meta: no time spent on init
    x = torch.randn(1, 3, input_size, input_size) * 10
    with torch.no_grad():
        torch.testing.assert_close(model(x), torchvision_forward(sd, x), rtol=1e-4, atol=1e-5)
