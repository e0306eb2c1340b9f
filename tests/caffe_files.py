"""Test helpers: Caffe files (.caffemodel in each generation of the format, deploy.prototxt) for
bvlc_alexnet and bvlc_reference_caffenet, made from one of this package's state dicts.

The deploy nets follow BVLC/caffe's models/bvlc_alexnet/deploy.prototxt (an "Input" layer) and
models/bvlc_reference_caffenet/deploy.prototxt (the older `input` + `input_shape` header):
LRN local_size 5, alpha 1e-4, beta 0.75 (Caffe's k defaults to 1), group 2 in conv2/4/5, max
pooling 3/2; CaffeNet pools before normalising. fc8's width follows the state dict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from alexnet.models.pretrained.caffe_proto import BlobProto, NetParameter, V1LayerParameter

# Layer type in each generation: LayerParameter string, V1 enum name, V0 string.
TYPES = {
    "conv": ("Convolution", "CONVOLUTION", "conv"),
    "relu": ("ReLU", "RELU", "relu"),
    "lrn": ("LRN", "LRN", "lrn"),
    "pool": ("Pooling", "POOLING", "pool"),
    "fc": ("InnerProduct", "INNER_PRODUCT", "innerproduct"),
    "drop": ("Dropout", "DROPOUT", "dropout"),
    "softmax": ("Softmax", "SOFTMAX", "softmax"),
}
# Learned layers: (num_output or None for fc8's rows, kernel, stride, pad, group).
CONVS = {
    "conv1": (96, 11, 4, 0, 1),
    "conv2": (256, 5, 1, 2, 2),
    "conv3": (384, 3, 1, 1, 1),
    "conv4": (384, 3, 1, 1, 2),
    "conv5": (256, 3, 1, 1, 2),
}
FCS = {"fc6": 4096, "fc7": 4096, "fc8": None}


def net_layers(net: str) -> list[tuple[str, str, str]]:
    """(name, kind, bottom) of every deploy layer of bvlc_alexnet or CaffeNet, in order."""
    first, second = ("norm", "pool") if net == "alexnet" else ("pool", "norm")
    names = ["conv1", "relu1", f"{first}1", f"{second}1", "conv2", "relu2", f"{first}2",
             f"{second}2", "conv3", "relu3", "conv4", "relu4", "conv5", "relu5", "pool5",
             "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8", "prob"]  # fmt: skip
    kinds = {"norm": "lrn", "prob": "softmax"}
    layers, bottom = [], "data"
    for name in names:
        kind = kinds.get(name.rstrip("0123456789"), name.rstrip("0123456789"))
        layers.append((name, kind, bottom))
        if kind not in ("relu", "drop"):  # in-place layers keep their bottom's blob name
            bottom = name
    return layers


def deploy_prototxt(net: str, num_classes: int = 1000, batch: int = 10) -> str:
    """The deploy.prototxt of bvlc_alexnet (`net="alexnet"`) or CaffeNet (`"caffenet"`)."""
    dims = f"dim: {batch} dim: 3 dim: 227 dim: 227"
    if net == "alexnet":
        lines = ['name: "AlexNet"', 'layer { name: "data" type: "Input" top: "data"',
                 f"  input_param {{ shape: {{ {dims} }} }} }}"]  # fmt: skip
    else:
        lines = ['name: "CaffeNet"', 'input: "data"', f"input_shape {{ {dims} }}"]
    for name, kind, bottom in net_layers(net):
        top = bottom if kind in ("relu", "drop") else name
        lines.append(f'layer {{ name: "{name}" type: "{TYPES[kind][0]}"')
        lines.append(f'  bottom: "{bottom}" top: "{top}"')
        if kind == "conv":
            out, kernel, stride, pad, group = CONVS[name]
            lines.append(f"  convolution_param {{ num_output: {out} kernel_size: {kernel}")
            lines.append(f"    stride: {stride} pad: {pad} group: {group} }}")
        elif kind == "fc":
            lines.append(f"  inner_product_param {{ num_output: {FCS[name] or num_classes} }}")
        elif kind == "lrn":
            lines.append("  lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }")
        elif kind == "pool":
            lines.append("  pooling_param { pool: MAX kernel_size: 3 stride: 2 }")
        elif kind == "drop":
            lines.append("  dropout_param { dropout_ratio: 0.5 }")
        lines.append("}")
    return "\n".join(lines) + "\n"


def data_blobs(state: dict[str, torch.Tensor]) -> dict[str, BlobProto]:
    """A BlobProto (values and `shape`) per state-dict key, conv1 turned back to BGR.

    Filling 61M floats takes seconds, so tests build these once and copy them into files.
    """
    blobs = {}
    for key, tensor in state.items():
        array = tensor.detach().cpu().numpy().astype(np.float32)
        if key == "conv1.weight":
            array = array[:, ::-1]
        blob = BlobProto()
        blob.shape.dim.extend(array.shape)
        blob.data.extend(memoryview(np.ascontiguousarray(array).reshape(-1)))
        blobs[key] = blob
    return blobs


def _add_blob(blobs, source: BlobProto, legacy: bool) -> None:
    """Append a copy of `source` to `blobs`; `legacy`: its size in num/channels/height/width,
    padded to four axes with leading 1s as Caffe's old files do."""
    blob = blobs.add()
    blob.CopyFrom(source)
    if legacy:
        shape = [1] * (4 - len(blob.shape.dim)) + list(blob.shape.dim)
        blob.ClearField("shape")
        blob.num, blob.channels, blob.height, blob.width = shape


def write_caffemodel(path: Path, blobs: dict[str, BlobProto], net: str = "alexnet",
                     fmt: str = "layer") -> Path:  # fmt: skip
    """Write the deploy net `net` with `blobs` (from `data_blobs`) as a .caffemodel.

    `fmt`: "layer" (LayerParameter, string types, `shape`), "layers" (V1LayerParameter, enum
    types, legacy 4-D sizes) or "v0" (V0LayerParameter inside `layers`, legacy sizes). Layers
    whose keys `blobs` lacks are written without weights.
    """
    proto = NetParameter(name="AlexNet" if net == "alexnet" else "CaffeNet")
    for name, kind, _bottom in net_layers(net):
        new_type, v1_type, v0_type = TYPES[kind]
        if fmt == "layer":
            layer = proto.layer.add(name=name, type=new_type)
        elif fmt == "layers":
            layer = proto.layers.add(name=name, type=V1LayerParameter.LayerType.Value(v1_type))
        else:
            layer = proto.layers.add().layer
            layer.name, layer.type = name, v0_type
        for key in (f"{name}.weight", f"{name}.bias"):
            if key in blobs:
                _add_blob(layer.blobs, blobs[key], legacy=fmt != "layer")
    path = Path(path)
    path.write_bytes(proto.SerializeToString())
    return path
