"""The model zoo: `create_model(name, weights=None, **options)` and `list_models()`.

See docs/architecture.md; `weights` names published weights (`alexnet weights list`).

Importing this package registers every model: the ImageNet nets of `alexnet.models.alexnet`
and the CIFAR-10 nets of `alexnet.models.cifar`.
"""

from alexnet.models import alexnet as _alexnet  # noqa: F401 - registers the ImageNet nets
from alexnet.models import cifar as _cifar  # noqa: F401 - registers the CIFAR-10 nets
from alexnet.models.layers import LocallyConnected2d, PerTower
from alexnet.models.pretrained.create import create_model
from alexnet.models.registry import (
    list_models,
    model_defaults,
    model_description,
    register_model,
)

__all__ = [
    "LocallyConnected2d",
    "PerTower",
    "create_model",
    "list_models",
    "model_defaults",
    "model_description",
    "register_model",
]
