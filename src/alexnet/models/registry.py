"""The model registry: `create_model(name, **options)` builds any registered net by name.

A builder is a function whose keyword-only parameters, all with defaults, are the model's
options. `create_model` checks names and options against that signature, so a typo is an error
rather than a silently ignored keyword, and records the complete option set on the model
(`model_options`) so that a checkpoint rebuilds exactly the same net.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register `builder` under its function name; its keyword-only defaults are the options."""
    name = builder.__name__
    if name in _BUILDERS:
        raise ValueError(f"model {name!r} is registered twice")
    params = inspect.signature(builder).parameters.values()
    bad = [p.name for p in params if p.kind is not p.KEYWORD_ONLY or p.default is p.empty]
    if bad or "num_classes" not in {p.name for p in params}:
        raise ValueError(
            f"builder {name!r} must take only keyword options with defaults, num_classes among "
            f"them; offending parameters: {bad}"
        )
    _BUILDERS[name] = builder
    return builder


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_BUILDERS)


def _builder(name: str) -> Callable[..., nn.Module]:
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _BUILDERS[name]


def model_defaults(name: str) -> dict[str, Any]:
    """Every option of model `name` with its default value."""
    params = inspect.signature(_builder(name)).parameters.values()
    return {p.name: p.default for p in params}


def model_description(name: str) -> str:
    """The first line of the builder's docstring: a one-line description for listings."""
    doc = inspect.getdoc(_builder(name)) or ""
    return doc.splitlines()[0] if doc else ""


def create_model(name: str, *, num_classes: int | None = None, **options: Any) -> nn.Module:
    """Build registered model `name`; unknown names or options raise ValueError listing valid ones.

    `num_classes=None` keeps the model's own default (1000 for the ImageNet nets, 10 for the
    CIFAR-10 nets). The result carries `model_name` and `model_options` (every option, defaults
    filled in), so `create_model(m.model_name, **m.model_options)` rebuilds the same net.
    """
    defaults = model_defaults(name)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}; "
            f"valid options: {', '.join(defaults)}"
        )
    resolved = {**defaults, **options}
    if num_classes is not None:
        resolved["num_classes"] = num_classes
    model = _BUILDERS[name](**resolved)
    model.model_name = name
    model.model_options = resolved
    return model


def check_choice(option: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ValueError unless `value` is one of `choices` (None allowed only if listed)."""
    choices = list(choices)
    if not any(value is c or (value == c and type(value) is type(c)) for c in choices):
        raise ValueError(f"{option}={value!r} is not one of {choices}")


def check_int(option: str, value: Any, minimum: int = 1) -> None:
    """Raise ValueError unless `value` is an int (not a bool) >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{option}={value!r} must be an integer >= {minimum}")


def check_probability(option: str, value: Any) -> None:
    """Raise ValueError unless 0 <= value < 1 (a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{option}={value!r} must be a number in [0, 1)")
