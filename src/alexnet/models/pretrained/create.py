"""`create_model(name, weights=...)`: a registered net, optionally holding published weights.

Without `weights` it is the registry's `create_model`. With a registry name the entry's file is
pulled and converted once (models/pretrained/store.py), and the net returned holds it: then
`model.preset` is the publisher's preprocessing and `model.weights` the registry entry (its
`meta["categories"]` the class names), as torchvision's weights objects give `transforms()`
and `meta`. Another `num_classes` keeps every layer but the classifier, which starts afresh
(fine-tuning); options that would change a loaded layer are refused.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from alexnet.models import registry
from alexnet.models.pretrained.registry import get_weights
from alexnet.models.pretrained.store import load_entry
from alexnet.models.transfer import load_fitting


def create_model(
    name: str, *, num_classes: int | None = None, weights: str | None = None, **options: Any
) -> nn.Module:
    """Build model `name` (see `alexnet.models.registry.create_model`), with `weights` loaded."""
    if weights is None:
        return registry.create_model(name, num_classes=num_classes, **options)
    entry = get_weights(weights)
    if name != entry.model:
        raise ValueError(f"weights {weights!r} are for model {entry.model!r}, not {name!r}")
    clash = {k: v for k, v in options.items() if entry.model_options.get(k, v) != v}
    if clash:
        raise ValueError(f"weights {weights!r} were trained with {entry.model_options}; {clash}")
    published, preset, _ = load_entry(entry)
    if num_classes is None or num_classes == published.num_classes:
        model = published
        if options:  # e.g. dropout: the same layers, another setting
            model = registry.create_model(name, **{**published.model_options, **options})
            model.load_state_dict(published.state_dict())
    else:
        model = registry.create_model(
            name, **{**published.model_options, **options, "num_classes": num_classes}
        )
        model.transfer = load_fitting(model, published.state_dict())
        preset.classes = []  # the new head's classes are the caller's
    model.preset, model.weights = preset, entry
    return model
