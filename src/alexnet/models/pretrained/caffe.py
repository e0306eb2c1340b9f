"""Caffe `.caffemodel` weights (bvlc_alexnet, bvlc_reference_caffenet) as this package's nets.

A `.caffemodel` is a serialised `caffe.NetParameter`; `caffe_proto` holds the message subset that
reading weights needs and protobuf parses it. Every generation of the format is read, as Caffe's
own upgrade step (upgrade_proto.cpp) and OpenCV's importer do:
- layers in `layer` (LayerParameter, string types: "Convolution", "InnerProduct") or in the
  deprecated `layers` (V1LayerParameter, enum types: CONVOLUTION, INNER_PRODUCT), or in the
  V0 form nested inside those (`layers { layer { name type blobs } }`, types "conv",
  "innerproduct"); if a file has both `layer` and `layers`, `layer` wins;
- blob sizes in `shape` or in the deprecated 4-D num/channels/height/width, which pad every
  blob to four axes with leading 1s: an InnerProduct weight (out, in) is stored (1, 1, out, in),
  a bias (out,) is (1, 1, 1, out); they are squeezed back to the real shape (Caffe compares
  such a blob with its layer's by this padded "legacy shape");
- values in `data` (float) or `double_data`.

Conversion to this package's `alexnet` / `caffenet` (whose learned layers carry Caffe's names):
Caffe's blobs are (out, in/groups, kh, kw) convolution weights, (out, in) InnerProduct weights
and (out,) biases, exactly PyTorch's layout with groups=2 in conv2/4/5; fc6 reads pool5
flattened channel-major, as torch.flatten does. Caffe's nets see BGR input; conv1's
input-channel axis is flipped once here, so the converted net takes RGB like the rest of the
package (the 0-255 scale and the mean subtraction are the preprocessing's business).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from google.protobuf.message import DecodeError

from alexnet.models.alexnet import LEARNED
from alexnet.models.pretrained.caffe_proto import NetParameter, V1LayerParameter
from alexnet.models.registry import create_model

# `create_model(name, **CAFFE_MODELS[name])` is the net the Caffe weights of that name were
# trained as. bvlc_alexnet: the paper's order (LRN before pooling) with Caffe's LRN (k = 1,
# alpha / n) whose single layer's window crosses the towers; Caffe's initialisation (bias 0.1)
# only matters for fine-tuning. bvlc_reference_caffenet: the `caffenet` builder is Caffe's net.
CAFFE_MODELS: dict[str, dict[str, object]] = {
    "alexnet": {"lrn": "caffe", "lrn_scope": "all", "init": "caffe"},
    "caffenet": {},
}

# Layer types whose blobs have a known rank: (weight, bias). Names of the three generations.
_BLOB_RANKS: dict[str, tuple[int, int]] = {
    "Convolution": (4, 1),
    "InnerProduct": (2, 1),
    "CONVOLUTION": (4, 1),
    "INNER_PRODUCT": (2, 1),
    "conv": (4, 1),
    "innerproduct": (2, 1),
}


def _layers(net) -> list[tuple[str, str, list]]:
    """(name, type, blobs) of every layer, from whichever generation of the format `net` uses."""
    if len(net.layer):
        return [(layer.name, layer.type, list(layer.blobs)) for layer in net.layer]
    found = []
    for layer in net.layers:
        if layer.HasField("layer"):  # V0: everything lives in the nested V0LayerParameter
            found.append((layer.layer.name, layer.layer.type, list(layer.layer.blobs)))
        else:
            kind = V1LayerParameter.LayerType.Name(layer.type)
            found.append((layer.name, kind, list(layer.blobs)))
    return found


def _blob_shape(blob, kind: str, index: int) -> tuple[int, ...]:
    """The blob's real shape: `shape`, else the legacy 4-D size with its padding 1s dropped."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    shape = [blob.num, blob.channels, blob.height, blob.width]
    ranks = _BLOB_RANKS.get(kind)
    rank = ranks[min(index, len(ranks) - 1)] if ranks else 1  # unknown type: squeeze all 1s
    while len(shape) > rank and shape[0] == 1:
        shape.pop(0)
    return tuple(shape)


def _blob_array(path: Path, layer: str, index: int, blob, kind: str) -> np.ndarray:
    shape = _blob_shape(blob, kind, index)
    values = blob.data if len(blob.data) else blob.double_data
    array = np.array(values, dtype=np.float32)
    if array.size != math.prod(shape):
        raise ValueError(
            f"{path}: layer {layer} blob {index} has {array.size} values for shape {shape}"
        )
    return array.reshape(shape)


def read_caffe_blobs(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Layer name -> its blobs (float32, real shape) for every layer of a .caffemodel with any.

    Raises ValueError (one line, naming the file) for a file that is not a NetParameter with
    weights: garbage, a truncated download, an HTML error page, a text .prototxt.
    """
    path = Path(path)
    net = NetParameter()
    try:
        net.ParseFromString(path.read_bytes())
    except DecodeError as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"{path}: not a Caffe .caffemodel (protobuf: {reason})") from None
    blobs: dict[str, list[np.ndarray]] = {}
    for name, kind, layer_blobs in _layers(net):
        if layer_blobs:  # as in Caffe, a later layer of the same name wins
            blobs[name] = [_blob_array(path, name, i, b, kind) for i, b in enumerate(layer_blobs)]
    if not blobs:
        raise ValueError(f"{path}: not a Caffe .caffemodel (no layer has weights)")
    return blobs


def caffe_state_dict(path: str | Path, model_name: str) -> dict[str, torch.Tensor]:
    """The state dict of `create_model(model_name, **CAFFE_MODELS[model_name])` from a file.

    `model_name`: "alexnet" (bvlc_alexnet.caffemodel) or "caffenet"
    (bvlc_reference_caffenet.caffemodel); num_classes is fc8's number of rows. conv1 is
    flipped from BGR to RGB. A file of another net is refused with a ValueError naming the
    first layer that does not fit. The two nets' weights have the same shapes (they differ in
    the order of pooling and LRN only), so the file cannot tell which of them it is.
    """
    if model_name not in CAFFE_MODELS:
        raise ValueError(f"unknown Caffe model {model_name!r}; choose from {sorted(CAFFE_MODELS)}")
    blobs = read_caffe_blobs(path)
    fc8 = blobs.get("fc8", [np.empty(0)])[0]
    num_classes = fc8.shape[0] if fc8.ndim == 2 and fc8.shape[0] > 0 else 1000
    with torch.device("meta"):  # shapes only: no 61M parameters allocated and initialised
        expected = create_model(model_name, num_classes=num_classes, **CAFFE_MODELS[model_name])
    expected = expected.state_dict()
    state: dict[str, torch.Tensor] = {}
    for name in LEARNED:  # in the net's order, so the first layer that does not fit is named
        if name not in blobs:
            raise ValueError(f"{path}: no layer {name} (layers found: {', '.join(blobs)})")
        if len(blobs[name]) != 2:
            raise ValueError(
                f"{path}: layer {name} has {len(blobs[name])} blobs, expected 2 (weight, bias)"
            )
        for suffix, array in zip(("weight", "bias"), blobs[name], strict=True):
            want = tuple(expected[f"{name}.{suffix}"].shape)
            if array.shape != want:
                raise ValueError(
                    f"{path}: layer {name} {suffix} has shape {array.shape}, expected {want}"
                )
            if (name, suffix) == ("conv1", "weight"):
                array = np.ascontiguousarray(array[:, ::-1])  # BGR -> RGB input channels
            state[f"{name}.{suffix}"] = torch.from_numpy(array)
    extra = [name for name in blobs if name not in LEARNED]
    if extra:
        raise ValueError(
            f"{path}: layer {extra[0]} has weights, but {model_name} has no such layer"
        )
    if set(state) != set(expected):  # a model with buffers or other keys needs this reviewed
        raise AssertionError(f"{model_name} state dict keys {sorted(expected)} not covered")
    return state
