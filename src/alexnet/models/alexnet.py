"""AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012, section 3) and its best-known relatives.

- `alexnet`: the paper's two-tower net. The towers are grouped convolutions (groups=2 in conv2,
  conv4, conv5; conv3 and the FC layers cross), and each tower normalises only its own maps, as
  each GPU did. Input 227 without padding by default (the paper's 224 does not fit an 11x11
  stride-4 kernel; `input_size=224` pads conv1 by 2 as torchvision does).
- `caffenet`: Caffe's reference variant: pool before LRN, LRN with k=1 across both towers,
  Caffe's initialisation (bias 0.1, fc6/fc7 std 0.005).
- `alexnet_onegpu`: section 3.2's comparison net: half the kernels in conv1-conv4, no towers.
- `alexnet_owt`: torchvision's single-tower layout and state-dict keys, for its weights.

LRN default: `lrn="code"`, what Krizhevsky's cuda-convnet computed (alpha divided by n inside,
PyTorch's convention); `lrn="paper"` reads section 3.3's printed formula literally (alpha 5e-4 in
PyTorch's convention); `lrn="caffe"` is Caffe's k=1; None (or False) removes it.
"""

from __future__ import annotations

import torch
from torch import nn

from alexnet.models.layers import PerTower, out_size
from alexnet.models.lrn import LocalResponseNorm
from alexnet.models.registry import check_choice, check_int, check_probability, register_model

# size, alpha (in PyTorch's alpha/n convention), beta, k; section 3.3: n=5, alpha=1e-4, k=2
LRN_SETTINGS: dict[str, tuple[int, float, float, float]] = {
    "code": (5, 1e-4, 0.75, 2.0),  # cuda-convnet: the paper's numbers came from this
    "paper": (5, 5e-4, 0.75, 2.0),  # the printed formula: alpha not divided by n
    "caffe": (5, 1e-4, 0.75, 1.0),  # Caffe's LRN layer leaves k at 1
}
POOLS: dict[str, int] = {"overlap": 3, "nonoverlap": 2}  # window; stride 2 (section 3.4)
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}
LEARNED = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
# (weight std, bias) per learned layer, under init="paper" and init="caffe". Paper (section 5):
# N(0, 0.01); bias 1 in conv2, conv4, conv5, fc6, fc7, else 0. Caffe's bvlc_alexnet: bias 0.1
# there (1 gave a flat loss), fc6/fc7 weights std 0.005. A third choice, init="kaiming" (not the
# paper's), trains from the start where N(0, 0.01) with bias 1 can sit at ln(num_classes) for
# epochs (reference section 1). A fourth, "kaiming_paper_conv1", is Kaiming with conv1 at the
# paper's N(0, 0.01): a random start 7 times smaller than Kaiming's sqrt(2 / 363), so that on a
# short run conv1's learned part, not its random start, dominates its kernels (figure 3's towers).
_INIT_TABLE: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    #         paper          caffe
    "conv1": ((0.01, 0.0), (0.01, 0.0)),
    "conv2": ((0.01, 1.0), (0.01, 0.1)),
    "conv3": ((0.01, 0.0), (0.01, 0.0)),
    "conv4": ((0.01, 1.0), (0.01, 0.1)),
    "conv5": ((0.01, 1.0), (0.01, 0.1)),
    "fc6": ((0.01, 1.0), (0.005, 0.1)),
    "fc7": ((0.01, 1.0), (0.005, 0.1)),
    "fc8": ((0.01, 0.0), (0.01, 0.0)),
}
INITS: dict[str, dict[str, tuple[float, float]]] = {
    scheme: {layer: row[i] for layer, row in _INIT_TABLE.items()}
    for i, scheme in enumerate(("paper", "caffe"))
}
KAIMING_INITS = ("kaiming", "kaiming_paper_conv1")
PAPER_WIDTHS = (96, 256, 384, 384, 256)  # conv1..conv5, both towers together (table, section 3.5)


def conv1_padding(input_size: int) -> int:
    """0 when an 11x11 stride-4 kernel tiles the input exactly (227), else 2 (torchvision's 224)."""
    return 0 if (input_size - 11) % 4 == 0 else 2


def _pool5_size(input_size: int, pool: int, pad: int | None) -> int:
    """Side of pool5's maps: 6 at 227 and at 224 (for both pool settings).

    `pad`: conv1's padding, or None for the paper net's rule (`conv1_padding`).
    """
    size = out_size(input_size, 11, 4, conv1_padding(input_size) if pad is None else pad)
    for _ in range(3):  # pool1, pool2, pool5; the 5x5 and 3x3 convs keep the size
        size = out_size(size, pool, 2)
    return size


def _check_input_size(input_size: int, pool: int, pad: int | None = None) -> int:
    check_int("input_size", input_size)
    side = _pool5_size(input_size, pool, pad)
    if side < 1:
        smallest = next(s for s in range(11, 512) if _pool5_size(s, pool, pad) >= 1)
        raise ValueError(
            f"input_size={input_size} is too small: pool5 would be empty; use at least {smallest}"
        )
    return side


def _check_options(
    num_classes: int, in_chans: int, lrn: str | None, pool: str, activation: str,
    dropout: float, init: str, towers: int, widths: tuple[int, ...],
) -> None:  # fmt: skip
    check_choice("lrn", lrn, [*LRN_SETTINGS, None, False])
    check_choice("pool", pool, list(POOLS))
    check_choice("activation", activation, list(ACTIVATIONS))
    check_choice("init", init, [*INITS, *KAIMING_INITS])
    check_int("num_classes", num_classes)
    check_int("in_chans", in_chans)
    check_int("towers", towers)
    check_probability("dropout", dropout)
    if any(w % towers for w in widths):
        raise ValueError(f"towers={towers} must divide every conv width {widths}")


class AlexNet(nn.Module):
    """The paper's net with each design choice switchable; the builders below fix the variants."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        lrn: str | None,
        pool: str,
        activation: str,
        dropout: float,
        init: str,
        towers: int,
        widths: tuple[int, int, int, int, int] = PAPER_WIDTHS,
        pool_before_norm: bool = False,
        norm_within_towers: bool = True,
    ) -> None:
        super().__init__()
        _check_options(num_classes, in_chans, lrn, pool, activation, dropout, init, towers, widths)
        side = _check_input_size(input_size, POOLS[pool])
        self.num_classes, self.in_chans, self.input_size = num_classes, in_chans, input_size
        self.pool_before_norm = pool_before_norm
        act, window = ACTIVATIONS[activation], POOLS[pool]
        c1, c2, c3, c4, c5 = widths

        def norm() -> nn.Module:
            if lrn is None or lrn is False:
                return nn.Identity()
            layer = LocalResponseNorm(*LRN_SETTINGS[lrn])
            return PerTower(layer, towers) if norm_within_towers and towers > 1 else layer

        # Shapes for the default 227 input. Tower t owns the t-th block of every layer's maps.
        self.conv1 = nn.Conv2d(in_chans, c1, 11, stride=4, padding=conv1_padding(input_size))
        self.act1 = act()  # (N, 96, 55, 55)
        self._add_norm_pool(1, norm(), nn.MaxPool2d(window, 2))  # (N, 96, 27, 27)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2, groups=towers)  # its own tower only
        self.act2 = act()  # (N, 256, 27, 27)
        self._add_norm_pool(2, norm(), nn.MaxPool2d(window, 2))  # (N, 256, 13, 13)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)  # crosses the towers
        self.act3 = act()  # (N, 384, 13, 13)
        self.conv4 = nn.Conv2d(c3, c4, 3, padding=1, groups=towers)
        self.act4 = act()  # (N, 384, 13, 13)
        self.conv5 = nn.Conv2d(c4, c5, 3, padding=1, groups=towers)
        self.act5 = act()  # (N, 256, 13, 13)
        self.pool5 = nn.MaxPool2d(window, 2)  # (N, 256, 6, 6) = 9216 features
        self.fc6 = nn.Linear(c5 * side * side, 4096)
        self.act6 = act()
        self.drop6 = nn.Dropout(dropout)  # section 4.2: dropout in the first two FC layers
        self.fc7 = nn.Linear(4096, 4096)
        self.act7 = act()
        self.drop7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(4096, num_classes)  # softmax lives in the loss
        self._initialise(init)

    def _initialise(self, init: str) -> None:
        """Gaussian weights and constant biases per INITS; "kaiming": He et al. 2015, bias 0;
        "kaiming_paper_conv1": the same with conv1's weights N(0, 0.01) as the paper's."""
        if init not in KAIMING_INITS:
            for name, (std, bias) in INITS[init].items():
                nn.init.normal_(getattr(self, name).weight, 0.0, std)
                nn.init.constant_(getattr(self, name).bias, bias)
            return
        for name in LEARNED:  # std sqrt(2 / fan_in) before a ReLU, sqrt(1 / fan_in) for fc8
            gain = "linear" if name == "fc8" else "relu"
            nn.init.kaiming_normal_(getattr(self, name).weight, nonlinearity=gain)
            nn.init.zeros_(getattr(self, name).bias)
        if init == "kaiming_paper_conv1":
            nn.init.normal_(self.conv1.weight, 0.0, INITS["paper"]["conv1"][0])

    def _add_norm_pool(self, index: int, norm: nn.Module, pool: nn.Module) -> None:
        """Register norm{index} and pool{index} in the order they run, so print() reads right."""
        pair = [(f"norm{index}", norm), (f"pool{index}", pool)]
        for name, module in reversed(pair) if self.pool_before_norm else pair:
            self.add_module(name, module)

    def _norm_pool(self, x: torch.Tensor, norm: nn.Module, pool: nn.Module) -> torch.Tensor:
        return norm(pool(x)) if self.pool_before_norm else pool(norm(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The conv stack: pool5's output, (N, 256, 6, 6) at 227."""
        x = self._norm_pool(self.act1(self.conv1(x)), self.norm1, self.pool1)
        x = self._norm_pool(self.act2(self.conv2(x)), self.norm2, self.pool2)
        x = self.act3(self.conv3(x))
        x = self.act4(self.conv4(x))
        return self.pool5(self.act5(self.conv5(x)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """fc7 after its ReLU, (N, 4096): the feature of figure 4's nearest-neighbour search."""
        x = self.drop6(self.act6(self.fc6(torch.flatten(self.forward_features(x), 1))))
        return self.act7(self.fc7(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes)."""
        return self.fc8(self.drop7(self.embed(x)))


@register_model
def alexnet(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    input_size: int = 227,
    lrn: str | None = "code",
    pool: str = "overlap",
    activation: str = "relu",
    dropout: float = 0.5,
    init: str = "paper",
    towers: int = 2,
    lrn_scope: str = "tower",
) -> AlexNet:
    """The paper's two-tower net (section 3): 5 conv + 3 FC, LRN, overlapping max-pool.

    `lrn_scope="tower"` normalises each tower's maps alone, as each GPU did; "all" lets the
    window cross the towers, as Caffe's bvlc_alexnet (one device, one LRN layer) does.
    """
    check_choice("lrn_scope", lrn_scope, ["tower", "all"])
    return AlexNet(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        lrn=lrn,
        pool=pool,
        activation=activation,
        dropout=dropout,
        init=init,
        towers=towers,
        norm_within_towers=lrn_scope == "tower",
    )


@register_model
def caffenet(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    input_size: int = 227,
    dropout: float = 0.5,
    init: str = "caffe",
) -> AlexNet:
    """Caffe's reference CaffeNet: pool before LRN (k=1, across both towers), bias 0.1."""
    return AlexNet(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        lrn="caffe",
        pool="overlap",
        activation="relu",
        dropout=dropout,
        init=init,
        towers=2,
        pool_before_norm=True,
        norm_within_towers=False,
    )


@register_model
def alexnet_onegpu(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    input_size: int = 227,
    lrn: str | None = "code",
    dropout: float = 0.5,
    init: str = "paper",
) -> AlexNet:
    """Section 3.2's one-GPU net: half the kernels in conv1-4 (48-128-192-192), full conv5/FC."""
    return AlexNet(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        lrn=lrn,
        pool="overlap",
        activation="relu",
        dropout=dropout,
        init=init,
        towers=1,
        widths=(48, 128, 192, 192, 256),
    )


class AlexNetOWT(nn.Module):
    """torchvision's `alexnet` ("one weird trick" single tower): same keys, shapes and numerics.

    64-192-384-256-256 kernels, conv1 padded by 2, no LRN, adaptive 6x6 average pool, dropout
    before fc6 and fc7, PyTorch's default initialisation.
    """

    def __init__(self, *, num_classes: int, in_chans: int, input_size: int, dropout: float) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        check_int("in_chans", in_chans)
        check_probability("dropout", dropout)
        _check_input_size(input_size, POOLS["overlap"], pad=2)
        self.num_classes, self.in_chans, self.input_size = num_classes, in_chans, input_size
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 64, kernel_size=11, stride=4, padding=2),  # features.0
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # features.3
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # features.6
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # features.8
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),  # features.10
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),  # classifier.1 (fc6)
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),  # classifier.4 (fc7)
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),  # classifier.6 (fc8)
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The conv stack (before the adaptive pool): (N, 256, 6, 6) at 224."""
        return self.features(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """fc7 after its ReLU, (N, 4096)."""
        x = torch.flatten(self.avgpool(self.forward_features(x)), 1)
        return self.classifier[:6](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes)."""
        return self.classifier[6](self.embed(x))


@register_model
def alexnet_owt(
    *, num_classes: int = 1000, in_chans: int = 3, input_size: int = 224, dropout: float = 0.5
) -> AlexNetOWT:
    """torchvision's single-tower AlexNet (64-192-384-256-256, no LRN); its weights load as-is."""
    return AlexNetOWT(
        num_classes=num_classes, in_chans=in_chans, input_size=input_size, dropout=dropout
    )
