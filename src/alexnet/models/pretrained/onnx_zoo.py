"""The ONNX model zoo's bvlcalexnet files, read onto the paper's net (`alexnet`).

The zoo's AlexNet is Caffe's bvlc_alexnet converted "Caffe BVLC AlexNet ==> Caffe2 AlexNet ==>
ONNX AlexNet" (onnx/models, validated/vision/classification/alexnet/README.md): the paper's
two-tower net (groups 2 in conv2/4/5), Caffe's LRN (k = 1, alpha over n, window across both
towers: one device, one LRN layer) before pooling, BGR input in 0-255. Its weights are the Caffe
ones, so the README quotes Caffe's 57.1% / 80.2% (centre crop, ILSVRC-2012 val) and, for the
opset-12 file, Intel Neural Compressor's own 54.80 / 78.23 measured with that tool's preprocessing.

The graph declares `data_0: float[1, 3, 224, 224]` although the net is Caffe's 227 one: conv1
has no padding and the converter wrote explicit pads for Caffe's ceil-mode pooling (pool5:
[0, 0, 1, 1], onnx/models issue 5; at 224 conv1/pool1/pool2 give 54/26/12 maps, as ONNC's
printout of the zoo's bvlc_alexnet/model.onnx in its backend porting guide shows). Fed 227 the
graph computes bvlc_alexnet exactly (55, 27, 13, 6 maps; the extra pad is never reached):
OpenCV's own test runs the zoo file at 227 against Caffe's output (opencv/opencv
modules/dnn/test/test_onnx_importer.cpp, Test_ONNX_nets.Alexnet). Fed its declared 224 it
computes another function (pool5's last windows reach into its padding), which no option of
`alexnet` reproduces (`input_size=224` pads conv1 by 2, as torchvision does; the zoo graph would
need conv1 unpadded at 224 and pool5 alone rounding up); so the import targets `alexnet` at 227:
`MODEL_OPTIONS`. The real files' pads come from those sources, not from a file: the check
accepts either end pad (0 or 1) on every pool, since both give Caffe's windows at 227.

`onnx_state_dict(path)` checks the graph node by node against that structure (op types in order,
conv groups/kernels/strides/pads, LRN constants, pooling, FC shapes, the input) and refuses any
other graph with one line naming the first mismatch; it flips conv1's input channels once
(BGR -> RGB), so the rest of the package only sees RGB. The file is parsed as protobuf data by
the `onnx` library; nothing in it is executed, and external-data tensors are refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.models.registry import model_defaults

MODEL_NAME = "alexnet"
# bvlc_alexnet in this package's terms: Caffe's LRN across the towers, Caffe's 227 input.
MODEL_OPTIONS: dict[str, Any] = {
    **model_defaults(MODEL_NAME),
    "num_classes": 1000,
    "input_size": 227,
    "lrn": "caffe",
    "lrn_scope": "all",
    "init": "caffe",
}


# (label, out, in per group, kernel, stride, pad, groups): bvlc_alexnet's deploy.prototxt.
_CONVS = {
    "conv1": (96, 3, 11, 4, 0, 1),
    "conv2": (256, 48, 5, 1, 2, 2),
    "conv3": (384, 256, 3, 1, 1, 1),
    "conv4": (384, 192, 3, 1, 1, 2),
    "conv5": (256, 192, 3, 1, 1, 2),
}
_FCS = {"fc6": (4096, 9216), "fc7": (4096, 4096), "fc8": (1000, 4096)}  # (out, in)
# pooling 3/2 after conv1, conv2, conv5; input side at 227 -> Caffe's output side
_POOLS = {"pool1": (55, 27), "pool2": (27, 13), "pool5": (13, 6)}
_LRN = {"size": 5, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}  # Caffe's (ONNX: alpha over size)
_SIDES = (224, 227)  # the zoo's declared input, and Caffe's

# The node sequence: (label, op types allowed, required). Dropout and the final Softmax change
# nothing at inference, so a graph without them is still this net.
_SEQUENCE: list[tuple[str, tuple[str, ...], bool]] = [
    ("conv1", ("Conv",), True), ("relu1", ("Relu",), True), ("norm1", ("LRN",), True),
    ("pool1", ("MaxPool",), True),
    ("conv2", ("Conv",), True), ("relu2", ("Relu",), True), ("norm2", ("LRN",), True),
    ("pool2", ("MaxPool",), True),
    ("conv3", ("Conv",), True), ("relu3", ("Relu",), True),
    ("conv4", ("Conv",), True), ("relu4", ("Relu",), True),
    ("conv5", ("Conv",), True), ("relu5", ("Relu",), True), ("pool5", ("MaxPool",), True),
    ("flatten", ("Reshape", "Flatten"), True),
    ("fc6", ("Gemm",), True), ("relu6", ("Relu",), True), ("drop6", ("Dropout",), False),
    ("fc7", ("Gemm",), True), ("relu7", ("Relu",), True), ("drop7", ("Dropout",), False),
    ("fc8", ("Gemm",), True), ("prob", ("Softmax",), False),
]  # fmt: skip


class _Mismatch(Exception):
    """One line saying where the graph leaves bvlcalexnet's structure (the path is added later)."""


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:  # the optional [onnx] extra
        raise ImportError("reading ONNX files needs the onnx package: pip install onnx") from e
    return onnx, numpy_helper


def onnx_state_dict(path: str | Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """Read a bvlcalexnet ONNX file: (model_name, model_options, state_dict) for `create_model`.

    The state dict has this package's `alexnet` keys (conv1.weight ... fc8.bias), float32, with
    conv1 taking RGB. Anything that is not bvlcalexnet's graph (another architecture, a damaged or
    truncated file, not ONNX at all) raises ValueError with one line naming the file.
    """
    onnx, numpy_helper = _onnx()
    path = Path(path)
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except FileNotFoundError:
        raise
    except Exception as e:  # protobuf's DecodeError, or anything else the parser says
        raise ValueError(f"{path}: not an ONNX model ({_one_line(e)})") from None
    if not model.graph.node:
        raise ValueError(f"{path}: not an ONNX model (no graph nodes)")
    try:
        weights = _check_graph(model.graph, onnx)
        state = {key: _tensor(proto, numpy_helper, t) for key, (proto, t) in weights.items()}
        state = {k: v.reshape(-1) if k.endswith("bias") else v for k, v in state.items()}
    except _Mismatch as e:
        raise ValueError(f"{path}: {e}") from None
    state["conv1.weight"] = state["conv1.weight"].flip(1).contiguous()  # BGR -> RGB, once
    return MODEL_NAME, dict(MODEL_OPTIONS), state


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _tensor(proto: Any, numpy_helper: Any, transpose: bool) -> torch.Tensor:
    """An initializer as a float32 tensor; `transpose`: a Gemm weight stored (in, out)."""
    try:
        array = numpy_helper.to_array(proto)
    except Exception as e:
        raise _Mismatch(f"initializer {proto.name} is damaged ({_one_line(e)})") from None
    if not np.isfinite(array).all():
        raise _Mismatch(f"initializer {proto.name} holds non-finite values")
    return torch.from_numpy(np.array(array.T if transpose else array, np.float32, order="C"))


def _check_graph(graph: Any, onnx: Any) -> dict[str, Any]:
    """Walk the nodes against `_SEQUENCE`; return {our key: (initializer, transpose it)}."""
    inits = {t.name: t for t in graph.initializer}
    previous = _check_input(graph, inits, onnx)
    nodes, weights = list(graph.node), {}
    index, matched = 0, ""
    for label, ops, required in _SEQUENCE:
        node = nodes[index] if index < len(nodes) else None
        if node is None or node.op_type not in ops:
            if not required:
                continue
            found = f"is {node.op_type}" if node is not None else "is missing (graph ends)"
            raise _Mismatch(f"node {index} ({label}) {found}, expected {' or '.join(ops)}")
        where = f"node {index} ({label})"
        if not node.input or node.input[0] != previous:
            source = f"node {index - 1}'s output" if index else f"the graph input {previous}"
            raise _Mismatch(f"{where} does not take {source}")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        _CHECKS.get(node.op_type, _no_check)(where, label, node, attrs, inits, weights)
        previous, index, matched = node.output[0], index + 1, label
    if index < len(nodes):
        raise _Mismatch(f"node {index} ({nodes[index].op_type}) is unexpected after {matched}")
    return weights


def _check_input(graph: Any, inits: dict[str, Any], onnx: Any) -> str:
    """The one image input, [N, 3, S, S] with S 224 (the zoo's) or 227 (Caffe's); its name."""
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise _Mismatch(f"graph has {len(inputs)} data inputs, expected 1 (an NCHW image batch)")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type != onnx.TensorProto.FLOAT:
        raise _Mismatch(f"input {inputs[0].name} is not float32")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if len(dims) != 4 or dims[1] not in (3, None):
        raise _Mismatch(f"input {inputs[0].name} has shape {dims}, expected [N, 3, H, W]")
    if any(d is not None and d not in _SIDES for d in dims[2:]) or dims[2] != dims[3]:
        raise _Mismatch(f"input {inputs[0].name} is {dims[2]}x{dims[3]}, expected 224 or 227")
    return inputs[0].name


def _initializer(where: str, node: Any, position: int, inits: dict[str, Any], what: str) -> Any:
    if len(node.input) <= position or node.input[position] not in inits:
        raise _Mismatch(f"{where} has no {what} initializer")
    tensor = inits[node.input[position]]
    if tensor.data_location == 1:  # TensorProto.EXTERNAL
        raise _Mismatch(f"initializer {tensor.name} is stored outside the file (not supported)")
    if tensor.data_type != 1:  # TensorProto.FLOAT; the zoo's int8 / qdq files have no such Conv
        kind = _onnx()[0].TensorProto.DataType.Name(tensor.data_type)
        raise _Mismatch(f"initializer {tensor.name} is {kind}, expected FLOAT")
    return tensor


def _expect(where: str, what: str, got: Any, expected: Any) -> None:
    if got != expected:
        raise _Mismatch(f"{where} has {what} {got}, expected {expected}")


def _no_check(*_: Any) -> None:
    """Relu, Dropout: nothing to check (inference mode)."""


def _check_conv(where, label, node, attrs, inits, weights) -> None:
    out, per_group, kernel, stride, pad, groups = _CONVS[label]
    _expect(where, "group", attrs.get("group", 1), groups)
    w = _initializer(where, node, 1, inits, "weight")
    _expect(where, "weight shape", list(w.dims), [out, per_group, kernel, kernel])
    _expect(where, "kernel_shape", list(attrs.get("kernel_shape", w.dims[2:])), [kernel] * 2)
    _expect(where, "strides", list(attrs.get("strides", [1, 1])), [stride] * 2)
    _expect(where, "pads", list(attrs.get("pads", [0] * 4)), [pad] * 4)
    _expect(where, "dilations", list(attrs.get("dilations", [1, 1])), [1, 1])
    _expect(where, "auto_pad", _text(attrs.get("auto_pad", "NOTSET")), "NOTSET")
    b = _initializer(where, node, 2, inits, "bias")
    _expect(where, "bias shape", list(b.dims), [out])
    weights[f"{label}.weight"], weights[f"{label}.bias"] = (w, False), (b, False)


def _check_lrn(where, label, node, attrs, inits, weights) -> None:
    _expect(where, "size", attrs.get("size"), _LRN["size"])
    for name in ("alpha", "beta", "bias"):  # float32 in the file: compare to float precision
        value = float(attrs.get(name, {"alpha": 1e-4, "beta": 0.75, "bias": 1.0}[name]))
        if not math.isclose(value, _LRN[name], rel_tol=1e-6):
            raise _Mismatch(f"{where} has {name} {value:g}, expected {_LRN[name]:g} (Caffe's LRN)")


def _check_pool(where, label, node, attrs, inits, weights) -> None:
    _expect(where, "kernel_shape", list(attrs.get("kernel_shape", [])), [3, 3])
    _expect(where, "strides", list(attrs.get("strides", [1, 1])), [2, 2])
    _expect(where, "dilations", list(attrs.get("dilations", [1, 1])), [1, 1])
    _expect(where, "auto_pad", _text(attrs.get("auto_pad", "NOTSET")), "NOTSET")
    pads, ceil = list(attrs.get("pads", [0] * 4)), bool(attrs.get("ceil_mode", 0))
    # Caffe's windows at 227: begin pads 0 and the same number of windows, so the end pads
    # (the converter's stand-in for Caffe's ceil rounding) are never reached.
    side, caffe = _POOLS[label]
    rounding = math.ceil if ceil else math.floor
    ends = pads[2:] if len(pads) == 4 else []
    sides = [rounding((side + end - 3) / 2) + 1 for end in ends]
    if pads[:2] != [0, 0] or sides != [caffe, caffe]:
        raise _Mismatch(
            f"{where} has pads {pads}{' with ceil_mode' if ceil else ''}, expected [0, 0, 0, 0] "
            f"or [0, 0, 1, 1] (Caffe's {caffe}x{caffe} windows at 227)"
        )


def _check_flatten(where, label, node, attrs, inits, weights) -> None:
    """pool5 (N, 256, 6, 6) to (N, 9216), channel-major: what torch.flatten(x, 1) does."""
    if node.op_type == "Flatten":
        _expect(where, "axis", attrs.get("axis", 1), 1)
        return
    if "shape" in attrs:  # opset < 5: the shape is an attribute
        shape = list(attrs["shape"])
    else:
        if len(node.input) < 2 or node.input[1] not in inits:
            raise _Mismatch(f"{where} has no constant shape")
        _, numpy_helper = _onnx()
        try:
            shape = [int(v) for v in numpy_helper.to_array(inits[node.input[1]]).reshape(-1)]
        except Exception as e:
            raise _Mismatch(f"{where} has a damaged shape ({_one_line(e)})") from None
    flat = len(shape) == 2 and shape[0] in (1, -1, 0) and shape[1] in (9216, -1)
    if not flat or shape == [-1, -1]:
        raise _Mismatch(f"{where} reshapes to {shape}, expected [N, 9216] (pool5 flattened)")


def _check_gemm(where, label, node, attrs, inits, weights) -> None:
    out, inp = _FCS[label]
    for name, default, expected in (("alpha", 1.0, 1.0), ("beta", 1.0, 1.0), ("transA", 0, 0)):
        _expect(where, name, attrs.get(name, default), expected)
    trans_b = attrs.get("transB", 0)
    w = _initializer(where, node, 1, inits, "weight")
    _expect(where, "weight shape", list(w.dims), [out, inp] if trans_b else [inp, out])
    b = _initializer(where, node, 2, inits, "bias")
    if math.prod(b.dims) != out or max(b.dims, default=0) != out:
        raise _Mismatch(f"{where} has bias shape {list(b.dims)}, expected [{out}]")
    weights[f"{label}.weight"], weights[f"{label}.bias"] = (w, not trans_b), (b, False)


def _check_softmax(where, label, node, attrs, inits, weights) -> None:
    if attrs.get("axis", 1) not in (1, -1):
        raise _Mismatch(f"{where} has axis {attrs['axis']}, expected 1 (the classes)")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_CHECKS: dict[str, Callable[..., None]] = {
    "Conv": _check_conv,
    "LRN": _check_lrn,
    "MaxPool": _check_pool,
    "Reshape": _check_flatten,
    "Flatten": _check_flatten,
    "Gemm": _check_gemm,
    "Softmax": _check_softmax,
}
