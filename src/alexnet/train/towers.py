"""The paper's model parallelism (section 3.2): each tower of `alexnet` on its own device.

"The GPUs communicate only in certain layers": the towers exchange activations only into conv3
and into the fully connected layers; conv1, conv2, conv4 and conv5 (and the LRN, which each
GPU applied to its own maps) stay on their tower's device. On one device the same net is the
grouped `alexnet` (groups=2, first half of every layer's maps = tower 1); `TwoTowerAlexNet`
splits such a model, computes the same function, and gives its weights back in the grouped
layout (`grouped_state_dict`) so checkpoints stay loadable anywhere.

fc8 is split too (its first ceil(C/2) classes on tower 1), and the logits are gathered on the
first device, where the loss is computed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from alexnet.models.layers import PerTower

LEARNED = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


@runtime_checkable
class GroupedLayout(Protocol):
    """A model holding a grouped net's weights in another layout (the tower split): it gives
    and takes them in the single-device grouped layout, which is what checkpoints store."""

    def grouped_state_dict(self) -> dict[str, torch.Tensor]: ...
    def load_grouped_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...


def portable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s weights as a checkpoint stores them (loadable by the single-device net)."""
    return model.grouped_state_dict() if isinstance(model, GroupedLayout) else model.state_dict()


def load_portable_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load weights saved by `portable_state_dict` into `model`, whatever its layout."""
    if isinstance(model, GroupedLayout):
        model.load_grouped_state_dict(state)
    else:
        model.load_state_dict(state)


def _rows(module: nn.Module, start: int, stop: int) -> nn.Module:
    """A copy of `module` keeping output rows [start, stop), as one ungrouped layer."""
    weight = module.weight.detach()[start:stop].clone()
    bias = module.bias.detach()[start:stop].clone()
    if isinstance(module, nn.Conv2d):
        part = nn.Conv2d(
            weight.shape[1], stop - start, module.kernel_size, module.stride, module.padding
        )
    else:
        part = nn.Linear(weight.shape[1], stop - start)
    part.weight = nn.Parameter(weight)
    part.bias = nn.Parameter(bias)
    return part


def _own_maps(norm: nn.Module) -> nn.Module:
    """The normalisation one tower applies to its own maps."""
    if isinstance(norm, PerTower):
        return norm.module
    if isinstance(norm, nn.Identity):
        return norm
    raise ValueError(
        "the model normalises across both towers (e.g. caffenet); a tower split is exact only "
        "for nets whose LRN stays within each tower, like the paper's `alexnet`"
    )


class Tower(nn.Module):
    """One tower's share of every learned layer, on one device."""

    def __init__(self, model: nn.Module, index: int, device: torch.device) -> None:
        super().__init__()
        for name in LEARNED:
            rows = getattr(model, name).weight.shape[0]
            half = (rows + 1) // 2
            start, stop = (0, half) if index == 0 else (half, rows)
            self.add_module(name, _rows(getattr(model, name), start, stop))
        self.norm1, self.norm2 = _own_maps(model.norm1), _own_maps(model.norm2)
        self.pool1, self.pool2, self.pool5 = model.pool1, model.pool2, model.pool5
        self.act = model.act1
        self.drop6, self.drop7 = model.drop6, model.drop7
        self.pool_before_norm = model.pool_before_norm
        self.device = device
        self.to(device)

    def _norm_pool(self, x: torch.Tensor, norm: nn.Module, pool: nn.Module) -> torch.Tensor:
        return norm(pool(x)) if self.pool_before_norm else pool(norm(x))

    def lower(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 and conv2 on this tower's maps only: pool2, (N, 128, 13, 13) at 227."""
        x = self._norm_pool(self.act(self.conv1(x)), self.norm1, self.pool1)
        return self._norm_pool(self.act(self.conv2(x)), self.norm2, self.pool2)

    def upper(self, both: torch.Tensor) -> torch.Tensor:
        """conv3 (sees both towers), conv4, conv5 (own maps): flat pool5, (N, 128*6*6)."""
        x = self.act(self.conv3(both))
        x = self.act(self.conv5(self.act(self.conv4(x))))
        return torch.flatten(self.pool5(x), 1)


class TwoTowerAlexNet(nn.Module):
    """A grouped two-tower `alexnet` run with tower t on `devices[t]`."""

    def __init__(self, model: nn.Module, devices: Sequence[str | torch.device]) -> None:
        super().__init__()
        if len(devices) != 2:
            raise ValueError(f"--towers needs exactly two devices, got {list(devices)}")
        if any(getattr(model, n, None) is None for n in LEARNED) or model.conv2.groups != 2:
            raise ValueError("a tower split needs the paper's two-tower `alexnet` (towers=2)")
        self.devices = [torch.device(d) for d in devices]
        self.towers = nn.ModuleList(Tower(model, t, d) for t, d in enumerate(self.devices))
        for attr in ("model_name", "model_options", "num_classes", "in_chans", "input_size"):
            setattr(self, attr, getattr(model, attr))

    def _exchange(self, parts: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each device gets the concatenation of both towers' activations (the paper's links)."""
        return [torch.cat([p.to(d) for p in parts], dim=1) for d in self.devices]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """fc7 after its ReLU, gathered on the first device, (N, 4096)."""
        return torch.cat([h.to(self.devices[0]) for h in self._fc7(x)], dim=1)

    def _fc7(self, x: torch.Tensor) -> list[torch.Tensor]:
        a, b = self.towers
        low = [a.lower(x.to(a.device)), b.lower(x.to(b.device))]
        both = self._exchange(low)  # into conv3
        flat = self._exchange([a.upper(both[0]), b.upper(both[1])])  # into fc6
        h = [t.drop6(t.act(t.fc6(f))) for t, f in zip(self.towers, flat, strict=True)]
        h = self._exchange(h)  # into fc7
        return [t.act(t.fc7(f)) for t, f in zip(self.towers, h, strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) on the first device."""
        h = self._exchange([t.drop7(f) for t, f in zip(self.towers, self._fc7(x), strict=True)])
        logits = [t.fc8(f) for t, f in zip(self.towers, h, strict=True)]  # into fc8
        return torch.cat([z.to(self.devices[0]) for z in logits], dim=1)

    def gather(self, get: Callable[[nn.Parameter], torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """`get(parameter)` of both towers, joined into the grouped model's keys and shapes."""
        out = {}
        for name in LEARNED:
            for kind in ("weight", "bias"):
                parts = [get(getattr(getattr(t, name), kind)) for t in self.towers]
                if any(p is None for p in parts):
                    continue
                out[f"{name}.{kind}"] = torch.cat([p.detach().cpu() for p in parts], dim=0)
        return out

    def grouped_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights in the single-device grouped layout (what checkpoints store)."""
        return self.gather(lambda p: p)

    def load_grouped_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load grouped-layout weights into the two towers."""
        missing = [f"{n}.{k}" for n in LEARNED for k in ("weight", "bias")]
        missing = [key for key in missing if key not in state]
        if missing:
            raise KeyError(f"state dict lacks {missing}")
        with torch.no_grad():
            for name in LEARNED:
                for kind in ("weight", "bias"):
                    a, b = (getattr(getattr(t, name), kind) for t in self.towers)
                    full = state[f"{name}.{kind}"]
                    a.copy_(full[: a.shape[0]])
                    b.copy_(full[a.shape[0] :])
