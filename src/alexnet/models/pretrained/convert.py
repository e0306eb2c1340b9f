"""A publisher's file -> this package's model, by the entry's format.

- `torchvision`: a plain state dict (`torch.load(weights_only=True)`: nothing is unpickled
  beyond tensors), strictly into `alexnet_owt`.
- `caffemodel`: the protobuf NetParameter of Caffe's model zoo (models/pretrained/caffe.py),
  conv1 flipped BGR -> RGB.
- `onnx`: the ONNX zoo's graph, checked node by node, initialisers mapped onto `alexnet`
  (models/pretrained/onnx_zoo.py; needs the optional `onnx` package).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from alexnet.models.pretrained.caffe import caffe_state_dict
from alexnet.models.pretrained.onnx_zoo import onnx_state_dict
from alexnet.models.pretrained.registry import WeightsEntry
from alexnet.models.pretrained.torchvision import check_torchvision_state_dict
from alexnet.models.weights_file import build_model


def convert_file(entry: WeightsEntry, path: Path) -> nn.Module:
    """The model `entry` names, holding the weights of `path`; ValueError if they do not fit."""
    options = dict(entry.model_options)
    if entry.format == "torchvision":
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for foreign files
            raise ValueError(f"{path}: not a torchvision state dict ({err})") from err
        options["num_classes"] = check_torchvision_state_dict(state, path)
    elif entry.format == "caffemodel":
        state = caffe_state_dict(path, entry.model)
        options["num_classes"] = int(state["fc8.weight"].shape[0])
    else:
        name, zoo_options, state = onnx_state_dict(path)
        if name != entry.model:
            raise ValueError(f"{path}: an ONNX graph of {name}, the entry says {entry.model}")
        options = {**zoo_options, **options}
    return build_model(entry.model, options, state)
