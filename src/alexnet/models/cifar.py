"""The small CIFAR-10 nets behind the paper's checkable claims (cuda-convnet's example layers).

- `cifar_fig1`: the "19pct" family (three 5x5 conv layers of 32, 32, 64 kernels, pooling, one
  FC output): the four-layer net of figure 1, ReLU against tanh.
- `cifar_conv_local`: the "conv-local" nets of section 3.3 (13% without response
  normalisation, 11% with it): two conv layers, two locally connected layers, FC output.

cuda-convnet computes a pool's output count by rounding up, so pools use ceil_mode
(32 -> 16 -> 8 -> 4); an average over a window that overhangs the edge divides by the pixels
it covers. Weights N(0, initW) with cuda-convnet's initW per layer, biases 0. With a max-pool,
activation then pool equals cuda-convnet's pool then activation (both are monotone).
"""

from __future__ import annotations

import torch
from torch import nn

from alexnet.models.layers import LocallyConnected2d, out_size
from alexnet.models.lrn import LocalResponseNorm
from alexnet.models.registry import check_choice, check_int, register_model

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def _pooled(size: int, pools: int) -> int:
    """Side after `pools` ceil-mode 3/2 pools (5x5 pad-2 convs keep the size)."""
    for _ in range(pools):
        size = out_size(size, 3, 2, ceil=True)
    return size


def _check_common(num_classes: int, in_chans: int, input_size: int, pools: int) -> int:
    check_int("num_classes", num_classes)
    check_int("in_chans", in_chans)
    check_int("input_size", input_size, minimum=3)
    return _pooled(input_size, pools)


def _init(layers: dict[nn.Module, float]) -> None:
    """cuda-convnet's initialisation: weights N(0, initW), biases 0."""
    for layer, std in layers.items():
        nn.init.normal_(layer.weight, 0.0, std)
        nn.init.zeros_(layer.bias)


class CifarFig1(nn.Module):
    """cuda-convnet's "19pct" CIFAR-10 net (reference section 5): 3 conv + 1 FC layers."""

    def __init__(self, *, num_classes: int, in_chans: int, input_size: int, activation: str):
        super().__init__()
        check_choice("activation", activation, list(ACTIVATIONS))
        side = _check_common(num_classes, in_chans, input_size, pools=3)
        self.num_classes, self.in_chans, self.input_size = num_classes, in_chans, input_size
        act = ACTIVATIONS[activation]
        # Shapes for a 32x32 input.
        self.conv1 = nn.Conv2d(in_chans, 32, 5, padding=2)
        self.act1 = act()  # (N, 32, 32, 32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)  # (N, 32, 16, 16)
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2)
        self.act2 = act()  # (N, 32, 16, 16)
        self.pool2 = nn.AvgPool2d(3, 2, ceil_mode=True)  # (N, 32, 8, 8)
        self.conv3 = nn.Conv2d(32, 64, 5, padding=2)
        self.act3 = act()  # (N, 64, 8, 8)
        self.pool3 = nn.AvgPool2d(3, 2, ceil_mode=True)  # (N, 64, 4, 4)
        self.fc = nn.Linear(64 * side * side, num_classes)  # 1024 -> 10
        _init({self.conv1: 1e-4, self.conv2: 0.01, self.conv3: 0.01, self.fc: 0.01})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """pool3's output, (N, 64, 4, 4) at 32."""
        x = self.pool1(self.act1(self.conv1(x)))
        x = self.pool2(self.act2(self.conv2(x)))
        return self.pool3(self.act3(self.conv3(x)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer, flattened pool3, (N, 1024) at 32."""
        return torch.flatten(self.forward_features(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes)."""
        return self.fc(self.embed(x))


class CifarConvLocal(nn.Module):
    """cuda-convnet's "conv-local" CIFAR-10 net: conv, pool, conv, pool, local, local, FC."""

    def __init__(
        self, *, num_classes: int, in_chans: int, input_size: int, lrn: bool, local_width: int
    ) -> None:
        super().__init__()
        check_choice("lrn", lrn, [True, False, None])  # None: off, as for the ImageNet nets
        check_int("local_width", local_width)
        side = _check_common(num_classes, in_chans, input_size, pools=2)
        self.num_classes, self.in_chans, self.input_size = num_classes, in_chans, input_size

        def norm() -> nn.Module:
            # The 11pct file: cross-map size 9, scale 1e-3 (alpha/n convention), power 0.75.
            return LocalResponseNorm(9, alpha=1e-3, beta=0.75, k=1.0) if lrn else nn.Identity()

        # Shapes for a 32x32 input.
        self.conv1 = nn.Conv2d(in_chans, 64, 5, padding=2)
        self.act1 = nn.ReLU()  # (N, 64, 32, 32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)  # (N, 64, 16, 16)
        self.norm1 = norm()  # after pool1
        self.conv2 = nn.Conv2d(64, 64, 5, padding=2)
        self.act2 = nn.ReLU()  # (N, 64, 16, 16)
        self.norm2 = norm()  # after conv2, before pool2
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)  # (N, 64, 8, 8)
        self.local3 = LocallyConnected2d(64, local_width, side, 3, padding=1)
        self.act3 = nn.ReLU()  # (N, local_width, 8, 8), unshared weights
        self.local4 = LocallyConnected2d(local_width, 32, side, 3, padding=1)
        self.act4 = nn.ReLU()  # (N, 32, 8, 8)
        self.fc = nn.Linear(32 * side * side, num_classes)  # 2048 -> 10
        _init(
            {
                self.conv1: 1e-4,
                self.conv2: 0.01,
                self.local3: 0.04,
                self.local4: 0.04,
                self.fc: 0.01,
            }
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """local4 after its ReLU, (N, 32, 8, 8) at 32."""
        x = self.norm1(self.pool1(self.act1(self.conv1(x))))
        x = self.pool2(self.norm2(self.act2(self.conv2(x))))
        return self.act4(self.local4(self.act3(self.local3(x))))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer, flattened local4, (N, 2048) at 32."""
        return torch.flatten(self.forward_features(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes)."""
        return self.fc(self.embed(x))


@register_model
def cifar_fig1(
    *, num_classes: int = 10, in_chans: int = 3, input_size: int = 32, activation: str = "relu"
) -> CifarFig1:
    """Figure 1's four-layer CIFAR-10 net (cuda-convnet 19pct): 3 conv 5x5 (32-32-64) + FC."""
    return CifarFig1(
        num_classes=num_classes, in_chans=in_chans, input_size=input_size, activation=activation
    )


@register_model
def cifar_conv_local(
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    input_size: int = 32,
    lrn: bool = True,
    local_width: int = 32,
) -> CifarConvLocal:
    """Section 3.3's CIFAR-10 net (cuda-convnet conv-local): 2 conv, 2 local 3x3, FC; LRN on/off."""
    return CifarConvLocal(
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        lrn=lrn,
        local_width=local_width,
    )
