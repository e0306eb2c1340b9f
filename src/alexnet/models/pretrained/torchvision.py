"""Moving weights between torchvision's `alexnet` and this package's `alexnet_owt`.

torchvision's alexnet (Krizhevsky's "one weird trick" single-tower net, 64-192-384-256-256, no
LRN, adaptive 6x6 pool) saves a plain state dict with the keys below; `alexnet_owt` uses the
same keys, so the import is a strict `load_state_dict` plus the preprocessing torchvision's
weights entry documents: resize the shorter side to 256, centre crop 224, scale to [0, 1] and
normalise with the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225): the
registry's `torchvision` preset, which in this package's 0-255 pixel scale holds mean and std
times 255 (the same numbers: (x / 255 - m) / s == (x - 255 m) / (255 s)).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexnet.data.classes import imagenet_class_names
from alexnet.data.preset import Preprocess
from alexnet.models.pretrained.registry import shipped_weights
from alexnet.models.weights_file import build_model

# torchvision.models.alexnet: features.{0,3,6,8,10} convs, classifier.{1,4,6} linears.
TORCHVISION_SHAPES: dict[str, tuple[int, ...]] = {
    "features.0.weight": (64, 3, 11, 11),
    "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5),
    "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3),
    "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3),
    "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3),
    "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216),
    "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096),
    "classifier.4.bias": (4096,),
    "classifier.6.weight": (-1, 4096),  # num_classes rows
    "classifier.6.bias": (-1,),
}


def torchvision_preprocess(classes: list[str]) -> Preprocess:
    """torchvision's AlexNet_Weights.IMAGENET1K_V1 transforms, in this package's 0-255 scale:
    the shipped registry entry's preset (models/pretrained/weights.yaml), the one copy."""
    return Preprocess.from_dict({**shipped_weights("torchvision").preset, "classes": classes})


def check_torchvision_state_dict(state: Any, source: str | Path = "state dict") -> int:
    """Validate torchvision's key names and shapes; returns num_classes."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source}: neither an alexnet checkpoint nor a torchvision state dict")
    missing = sorted(set(TORCHVISION_SHAPES) - set(state))
    unexpected = sorted(set(state) - set(TORCHVISION_SHAPES))
    if missing or unexpected:
        raise ValueError(
            f"{source}: not a torchvision alexnet state dict (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]})"
        )
    if state["classifier.6.weight"].dim() != 2:
        raise ValueError(f"{source}: classifier.6.weight is not a matrix")
    num_classes = state["classifier.6.weight"].shape[0]
    for key, want in TORCHVISION_SHAPES.items():
        shape = tuple(num_classes if d == -1 else d for d in want)
        if tuple(state[key].shape) != shape:
            raise ValueError(
                f"{source}: {key} has shape {tuple(state[key].shape)}, expected {shape}"
            )
    return num_classes


def import_torchvision_state_dict(
    state: Any, *, source: str | Path = "state dict"
) -> tuple[nn.Module, Preprocess, dict[str, Any]]:
    """torchvision alexnet state dict -> (alexnet_owt with it loaded strictly, preprocess, meta)."""
    num_classes = check_torchvision_state_dict(state, source)
    model = build_model("alexnet_owt", {"num_classes": num_classes}, state, source)
    classes: list[str] = []
    if num_classes == 1000:
        classes = imagenet_class_names()
    meta = {"kind": "torchvision", "source": str(source), "model_name": "alexnet_owt"}
    return model, torchvision_preprocess(classes), meta


def export_torchvision_state_dict(model: nn.Module, path: str | Path) -> Path:
    """Save an `alexnet_owt` state dict that torchvision's `alexnet().load_state_dict` takes."""
    if getattr(model, "model_name", None) != "alexnet_owt":
        raise ValueError(
            f"only alexnet_owt has torchvision's layout; this model is {model.model_name!r}"
        )
    if getattr(model, "input_size", 224) != 224 or getattr(model, "in_chans", 3) != 3:
        raise ValueError("torchvision's alexnet takes 3x224x224 input; this model differs")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    check_torchvision_state_dict(state, "alexnet_owt")
    path = Path(path)
    torch.save(state, path)
    return path
