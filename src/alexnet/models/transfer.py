"""Transfer: copy every learned layer that fits from one state dict into another model.

A layer (a module owning parameters, e.g. `conv1` or `classifier.6`) is loaded when the source
has every one of its tensors with the same shape and the caller does not ask for it fresh;
otherwise it keeps its fresh initialisation (a new classifier for another number of classes, or
for other classes of the same number; conv1 for another number of input channels, fc6 for
another input size). Freezing stops gradients in every layer up to a named one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Transfer:
    """What `load_fitting` did, layer by layer, in the model's order."""

    loaded: tuple[str, ...]
    fresh: tuple[str, ...]

    def describe(self) -> str:
        fresh = ", ".join(self.fresh) or "none"
        return f"loaded {', '.join(self.loaded) or 'no layer'}; initialised afresh: {fresh}"


def learned_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters directly, in registration (forward) order."""
    return [
        name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))
    ]


def classifier_layer(model: nn.Module) -> str:
    """The classifier: the last learned layer (`fc8`, `classifier.6`, `fc`)."""
    return learned_layers(model)[-1]


def load_fitting(
    model: nn.Module, state: dict[str, torch.Tensor], keep_fresh: tuple[str, ...] = ()
) -> Transfer:
    """Load each layer of `model` whose tensors `state` has with the same shapes, except the
    layers named in `keep_fresh`."""
    own = model.state_dict()
    loaded, fresh, update = [], [], {}
    for layer in learned_layers(model):
        keys = [k for k in own if k.rsplit(".", 1)[0] == layer]
        fits = all(k in state and tuple(state[k].shape) == tuple(own[k].shape) for k in keys)
        if fits and layer not in keep_fresh:
            loaded.append(layer)
            update.update({k: state[k] for k in keys})
        else:
            fresh.append(layer)
    model.load_state_dict(update, strict=False)
    return Transfer(tuple(loaded), tuple(fresh))


def freeze_through(model: nn.Module, last: str) -> list[str]:
    """Stop gradients in every learned layer up to and including `last`; the frozen names."""
    layers = learned_layers(model)
    if last not in layers:
        raise ValueError(f"--freeze {last!r} is not a learned layer; layers: {', '.join(layers)}")
    frozen = layers[: layers.index(last) + 1]
    for name in frozen:
        for p in model.get_submodule(name).parameters(recurse=False):
            p.requires_grad_(False)
    return frozen
