"""The ONNX model zoo's bvlcalexnet onto `alexnet`: checked against onnxruntime and OpenCV.

No zoo file can be fetched here, so the tests build a graph like the zoo's with `onnx.helper`
(input data_0 1x3x224x224, the zoo's initializer and node names and order, conv1 unpadded, pool5
pads [0, 0, 1, 1], Reshape by a constant [1, 9216], Gemm transB=1, Dropout, Softmax; opset 12)
holding seeded random weights in the zoo's BGR convention. onnxruntime and OpenCV's dnn module
(each with its own convolution, grouping, LRN and pooling) run it on three real photos; the
imported model, fed the same photos in RGB, must give the same logits (fc8_1, read before the
softmax; probabilities are compared too) to relative 1e-4 (max |difference| / max |reference|).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from alexnet.models import create_model  # noqa: E402
from alexnet.models.pretrained import onnx_zoo  # noqa: E402
from alexnet.models.pretrained.onnx_zoo import MODEL_OPTIONS, onnx_state_dict  # noqa: E402

SIDE = 227  # Caffe's input: what the zoo graph computes bvlc_alexnet at
MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)  # Caffe's mean values
TOL = 1e-4

# (zoo node name, op, our label): bvlcalexnet's node sequence (its LRN/pool/conv/fc names)
NODES = [
    ("conv1_1", "Conv", "conv1"), ("conv1_2", "Relu", None), ("norm1_1", "LRN", None),
    ("pool1_1", "MaxPool", None),
    ("conv2_1", "Conv", "conv2"), ("conv2_2", "Relu", None), ("norm2_1", "LRN", None),
    ("pool2_1", "MaxPool", None),
    ("conv3_1", "Conv", "conv3"), ("conv3_2", "Relu", None),
    ("conv4_1", "Conv", "conv4"), ("conv4_2", "Relu", None),
    ("conv5_1", "Conv", "conv5"), ("conv5_2", "Relu", None), ("pool5_1", "MaxPool", None),
    ("OC2_DUMMY_0", "Reshape", None),
    ("fc6_1", "Gemm", "fc6"), ("fc6_2", "Relu", None), ("fc6_3", "Dropout", None),
    ("fc7_1", "Gemm", "fc7"), ("fc7_2", "Relu", None), ("fc7_3", "Dropout", None),
    ("fc8_1", "Gemm", "fc8"), ("prob_1", "Softmax", None),
]  # fmt: skip
CONV = {
    "conv1": (11, 4, 0, 1),
    "conv2": (5, 1, 2, 2),
    "conv3": (3, 1, 1, 1),
    "conv4": (3, 1, 1, 2),
    "conv5": (3, 1, 1, 2),
}  # fmt: skip  kernel, stride, pad, group
SHAPES = {"conv1": (96, 3, 11, 11), "conv2": (256, 48, 5, 5), "conv3": (384, 256, 3, 3),
          "conv4": (384, 192, 3, 3), "conv5": (256, 192, 3, 3), "fc6": (4096, 9216),
          "fc7": (4096, 4096), "fc8": (1000, 4096)}  # fmt: skip


def tensor(name: str, shape: tuple[int, ...], array: np.ndarray | None) -> TensorProto:
    """An initializer; with `array` None only its name, type and dims (a structure-only graph)."""
    if array is not None:
        return numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name)
    return TensorProto(name=name, dims=shape, data_type=TensorProto.FLOAT)


def zoo_model(weights: dict[str, np.ndarray] | None) -> onnx.ModelProto:
    """A graph like bvlcalexnet-12.onnx; `weights` (our keys, conv1 BGR) or None (dims only)."""
    inits, nodes, previous = [], [], "data_0"
    for name, op, layer in NODES:
        inputs, attrs = [previous], {}
        if layer is not None:
            w, b = f"{layer}_w_0", f"{layer}_b_0"
            shape = SHAPES[layer]
            get = (lambda k: weights[k].numpy()) if weights is not None else (lambda k: None)
            inits += [
                tensor(w, shape, get(f"{layer}.weight")),
                tensor(b, shape[:1], get(f"{layer}.bias")),
            ]
            inputs += [w, b]
            if op == "Conv":
                k, s, p, g = CONV[layer]
                attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": [p] * 4, "group": g}
            else:
                attrs = {"transB": 1}
        elif op == "LRN":
            attrs = {"size": 5, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}
        elif op == "MaxPool":
            pads = [0, 0, 1, 1] if name == "pool5_1" else [0, 0, 0, 0]
            attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": pads}
        elif op == "Reshape":
            inits.append(numpy_helper.from_array(np.array([1, 9216], np.int64), "OC2_DUMMY_1"))
            inputs.append("OC2_DUMMY_1")
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        previous = name
    graph = helper.make_graph(
        nodes,
        "bvlc_alexnet",
        [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("prob_1", TensorProto.FLOAT, [1, 1000])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=7)


def oracle_copy(model: onnx.ModelProto, side: int) -> onnx.ModelProto:
    """The same graph with its input declared side x side and fc8_1 (the logits) as an output."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    dims = copy.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = dims[3].dim_value = side
    copy.graph.output.append(helper.make_tensor_value_info("fc8_1", TensorProto.FLOAT, [1, 1000]))
    return copy


def photos(side: int) -> np.ndarray:
    """Three real photos (scikit-image's astronaut, chelsea, coffee), RGB uint8, side x side."""
    images = [skdata.astronaut(), skdata.chelsea(), skdata.coffee()]
    return np.stack([cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA) for im in images])


def bgr_blob(rgb: np.ndarray) -> np.ndarray:
    """What the zoo graph takes: BGR, 0-255, minus Caffe's mean values, NCHW float32."""
    return np.ascontiguousarray((rgb[..., ::-1] - MEAN_BGR).transpose(0, 3, 1, 2), np.float32)


def rgb_tensor(rgb: np.ndarray) -> torch.Tensor:
    """The same pixels for our model: RGB, minus the same means (in RGB order)."""
    return torch.from_numpy(np.ascontiguousarray((rgb - MEAN_BGR[::-1]).transpose(0, 3, 1, 2)))


def rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def run_ort(path: Path, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    outs = [session.run(["fc8_1", "prob_1"], {"data_0": blob[i : i + 1]}) for i in range(len(blob))]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def run_cv2(path: Path, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV reads the file unchanged (declared 224) and runs it at 227, as its own test of the
    real zoo file does (opencv modules/dnn/test/test_onnx_importer.cpp, Test_ONNX_nets.Alexnet)."""
    net = cv2.dnn.readNetFromONNX(str(path))
    logits, probs = [], []
    for i in range(len(blob)):  # the graph's Reshape constant is [1, 9216]: one image a run
        net.setInput(blob[i : i + 1])
        fc8, prob = net.forward(["onnx_node!fc8_1", "onnx_node!prob_1"])  # OpenCV's layer names
        logits.append(fc8.reshape(1, -1))
        probs.append(prob.reshape(1, -1))
    return np.concatenate(logits), np.concatenate(probs)


def our_logits(state: dict[str, torch.Tensor], rgb: np.ndarray, **options) -> np.ndarray:
    model = create_model("alexnet", **{**MODEL_OPTIONS, **options})
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        return model.eval()(rgb_tensor(rgb)).numpy()


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The zoo-like file, its 227 oracle copy, the weights it was made from (RGB) and photos."""
    torch.manual_seed(0)  # Kaiming weights keep activations, so LRN's effect, photo-sized
    ref = create_model("alexnet", **{**MODEL_OPTIONS, "init": "kaiming"})
    state = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    for key in state:  # non-zero biases, so a bias in the wrong place would show
        if key.endswith("bias"):
            state[key].uniform_(-0.1, 0.1)
    state["fc8.weight"] /= 25  # logits of a few units: probabilities that are not one-hot
    bgr = dict(state, **{"conv1.weight": state["conv1.weight"].flip(1)})
    folder = tmp_path_factory.mktemp("zoo")
    model = zoo_model(bgr)
    paths = {"file": folder / "bvlcalexnet-12.onnx", "oracle": folder / "oracle-227.onnx"}
    onnx.save(model, paths["file"])
    onnx.save(oracle_copy(model, SIDE), paths["oracle"])
    rgb = photos(SIDE).astype(np.float32)
    return {**paths, "state": state, "rgb": rgb, "blob": bgr_blob(rgb), "model": model}


@pytest.fixture(scope="module")
def imported(zoo):
    return onnx_state_dict(zoo["file"])


@pytest.fixture(scope="module")
def oracles(zoo):
    return {"onnxruntime": run_ort(zoo["oracle"], zoo["blob"]),
            "opencv": run_cv2(zoo["file"], zoo["blob"])}  # fmt: skip


def test_import_maps_the_zoo_graph_onto_alexnet_at_227(zoo, imported):
    name, options, state = imported
    assert name == "alexnet"
    assert options == MODEL_OPTIONS
    assert options["input_size"] == 227 and options["lrn"] == "caffe"
    assert options["lrn_scope"] == "all"
    assert set(state) == set(zoo["state"])
    for key, value in zoo["state"].items():  # conv1 back to RGB; every other tensor as stored
        assert state[key].dtype == torch.float32
        torch.testing.assert_close(state[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("oracle", ["onnxruntime", "opencv"])
def test_logits_agree_with_onnxruntime_and_opencv(zoo, imported, oracles, oracle):
    logits, probs = oracles[oracle]  # measured here: 9e-7 (onnxruntime), 2e-6 (OpenCV)
    ours = our_logits(imported[2], zoo["rgb"])
    assert rel(ours, logits) < TOL, oracle
    ours_probs = torch.softmax(torch.from_numpy(ours), 1).numpy()
    assert rel(ours_probs, probs) < TOL, oracle
    assert (ours.argmax(1) == logits.argmax(1)).all()


def test_the_comparison_sees_a_missing_flip_and_a_wrong_lrn_scope(zoo, imported, oracles):
    """Negative controls: the same check fails for BGR weights on RGB input, or per-tower LRN."""
    logits = oracles["onnxruntime"][0]
    state = imported[2]
    no_flip = dict(state, **{"conv1.weight": state["conv1.weight"].flip(1)})
    assert rel(our_logits(no_flip, zoo["rgb"]), logits) > 10 * TOL  # measured: 0.40
    assert rel(our_logits(state, zoo["rgb"], lrn_scope="tower"), logits) > 10 * TOL  # 0.016


def test_the_zoo_graph_at_its_declared_224_is_not_our_224_model(zoo, imported):
    """At 224 the zoo graph has 54/26/12 maps (conv1 unpadded); `input_size=224` pads conv1 by 2
    (torchvision's rule), so the two differ: the import targets 227, where they are the same."""
    rgb = photos(224).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(zoo["file"]), options, providers=["CPUExecutionProvider"])
    probs = session.run(["prob_1"], {"data_0": bgr_blob(rgb)[:1]})[0]
    ours = torch.softmax(torch.from_numpy(our_logits(imported[2], rgb[:1], input_size=224)), 1)
    assert rel(ours.numpy(), probs) > 100 * TOL


def test_gemm_weights_stored_in_by_out_are_transposed(tmp_path):
    """transB = 0 with (in, out) weights is the same layer: accepted, and read transposed."""
    model = zoo_model(None)
    fc6 = next(n for n in model.graph.node if n.name == "fc6_1")
    del fc6.attribute[:]
    fc6.attribute.append(helper.make_attribute("transB", 0))
    _dims(fc6_w_0=[9216, 4096])(model)
    weights = onnx_zoo._check_graph(model.graph, onnx)  # the structure passes
    assert weights["fc6.weight"][1] is True and weights["fc7.weight"][1] is False
    stored = np.arange(12, dtype=np.float32).reshape(3, 4)  # (in, out)
    read = onnx_zoo._tensor(numpy_helper.from_array(stored, "w"), numpy_helper, True)
    assert read.shape == (4, 3) and read.is_contiguous()
    torch.testing.assert_close(read, torch.from_numpy(stored.T.copy()))


# Other graphs, each changed from the zoo's structure (dims only, no weights: refused before any
# tensor is read) and the one line naming the first mismatch.
def _set(node_name: str, **attrs):
    def change(model):
        node = next(n for n in model.graph.node if n.name == node_name)
        for key, value in attrs.items():
            for a in node.attribute:
                if a.name == key:
                    node.attribute.remove(a)
                    break
            node.attribute.append(helper.make_attribute(key, value))

    return change


def _drop(node_name: str):
    def change(model):
        nodes = model.graph.node
        i = next(i for i, n in enumerate(nodes) if n.name == node_name)
        nodes[i + 1].input[0] = nodes[i].input[0]
        del nodes[i]

    return change


def _dims(**dims):
    def change(model):
        for t in model.graph.initializer:
            if t.name in dims:
                del t.dims[:]
                t.dims.extend(dims[t.name])

    return change


def _swap(first: str, second: str):  # CaffeNet: pool before LRN
    def change(model):
        nodes = model.graph.node
        i = next(i for i, n in enumerate(nodes) if n.name == first)
        a, b = helper.make_node("X", [], []), helper.make_node("X", [], [])
        a.CopyFrom(nodes[i])
        b.CopyFrom(nodes[i + 1])
        b.input[0], a.input[0] = a.input[0], b.output[0]
        nodes[i].CopyFrom(b)
        nodes[i + 1].CopyFrom(a)
        nodes[i + 2].input[0] = a.output[0]

    return change


def _append(op: str):
    def change(model):
        last = model.graph.node[-1].output[0]
        model.graph.node.append(helper.make_node(op, [last, last], ["extra"], name="extra"))

    return change


def _dtype(name: str, data_type: int):
    def change(model):
        next(t for t in model.graph.initializer if t.name == name).data_type = data_type

    return change


def _reshape(*shape):
    def change(model):
        t = next(t for t in model.graph.initializer if t.name == "OC2_DUMMY_1")
        t.CopyFrom(numpy_helper.from_array(np.array(shape, np.int64), "OC2_DUMMY_1"))

    return change


def _input(*dims):
    def change(model):
        shape = model.graph.input[0].type.tensor_type.shape.dim
        for d, v in zip(shape, dims, strict=True):
            d.dim_value = v

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("conv2_1", group=1), "node 4 (conv2) has group 1, expected 2"),
        (_drop("norm1_1"), "node 2 (norm1) is MaxPool, expected LRN"),
        (_swap("norm1_1", "pool1_1"), "node 2 (norm1) is MaxPool, expected LRN"),
        (
            _dims(fc7_w_0=[2048, 4096], fc7_b_0=[2048], fc8_w_0=[1000, 2048]),
            "node 19 (fc7) has weight shape [2048, 4096], expected [4096, 4096]",
        ),
        (_set("norm2_1", bias=2.0), "node 6 (norm2) has bias 2, expected 1 (Caffe's LRN)"),
        (_set("conv1_1", pads=[2, 2, 2, 2]), "node 0 (conv1) has pads [2, 2, 2, 2], expected"),
        (_set("pool5_1", pads=[1, 1, 1, 1]), "node 14 (pool5) has pads [1, 1, 1, 1]"),
        (_drop("fc8_1"), "node 22 (fc8) is Softmax, expected Gemm"),
        (_append("Add"), "node 24 (Add) is unexpected after prob"),
        (_dtype("conv3_w_0", TensorProto.FLOAT16), "initializer conv3_w_0 is FLOAT16, expected"),
        (_reshape(1, 6400), "node 15 (flatten) reshapes to [1, 6400], expected [N, 9216]"),
        (_input(1, 1, 224, 224), "input data_0 has shape [1, 1, 224, 224], expected [N, 3, H, W]"),
        (_input(1, 3, 256, 256), "input data_0 is 256x256, expected 224 or 227"),
    ],
)
def test_another_architecture_is_refused_naming_the_first_mismatch(tmp_path, change, message):
    model = zoo_model(None)
    change(model)
    path = tmp_path / "other.onnx"
    onnx.save(model, path)
    with pytest.raises(ValueError) as info:
        onnx_state_dict(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text, text
    assert "\n" not in text


def test_variants_of_the_same_net_are_accepted():
    """No Dropout, no Softmax, Flatten for Reshape, a 227 input of any batch, ceil-mode pooling
    without pads: every one computes bvlc_alexnet at 227, so the structure check lets it pass."""
    model = zoo_model(None)
    _drop("fc6_3")(model)
    _drop("fc7_3")(model)
    model.graph.node.pop()  # the Softmax: the graph now ends with the logits
    flatten = next(n for n in model.graph.node if n.name == "OC2_DUMMY_0")
    flatten.CopyFrom(helper.make_node("Flatten", ["pool5_1"], ["OC2_DUMMY_0"], axis=1))
    _set("pool1_1", ceil_mode=1)(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param, dims[2].dim_value, dims[3].dim_value = "N", 227, 227
    weights = onnx_zoo._check_graph(model.graph, onnx)
    assert sorted(weights) == sorted(f"{k}.{p}" for k in SHAPES for p in ("weight", "bias"))


def test_damaged_garbage_and_truncated_files_are_one_line_errors(zoo, tmp_path):
    cases = {
        "garbage.onnx": np.random.default_rng(0).bytes(4096),
        "empty.onnx": b"",
        "truncated.onnx": zoo["file"].open("rb").read(1 << 20),  # the first MiB of the file
        "text.onnx": b"version https://git-lfs.github.com/spec/v1\noid sha256:6b0d\nsize 2\n",
    }
    structure_only = tmp_path / "no-weights.onnx"  # every node right, no tensor data
    onnx.save(zoo_model(None), structure_only)
    paths = [structure_only]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    for path in paths:
        with pytest.raises(ValueError) as info:
            onnx_state_dict(path)
        text = str(info.value)
        assert text.startswith(f"{path}: ") and "\n" not in text, text
    with pytest.raises(ValueError, match="initializer conv1_w_0 is damaged"):
        onnx_state_dict(structure_only)
