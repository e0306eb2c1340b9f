"""Caffe importer: every generation of the .caffemodel format, refusals, and OpenCV as the oracle.

OpenCV's dnn module reads the same deploy.prototxt + .caffemodel with its own Caffe importer,
grouped convolutions, LRN and pooling; on real photos our converted net must give its logits.
Variants with one conversion detail wrong (no BGR flip, towers swapped, LRN within towers or
with k = 2, fc6 read in another flatten order, CaffeNet's pool/norm order) must not.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import descriptor_pb2

from alexnet.models import create_model
from alexnet.models.pretrained import caffe_proto
from alexnet.models.pretrained.caffe import CAFFE_MODELS, caffe_state_dict, read_caffe_blobs
from alexnet.models.pretrained.caffe_proto import (
    BlobProto,
    LayerParameter,
    NetParameter,
    V0LayerParameter,
    V1LayerParameter,
)
from caffe_files import data_blobs, deploy_prototxt, write_caffemodel

cv2 = pytest.importorskip("cv2")
NUM_CLASSES = 10  # fc8's rows follow the file; fewer keep the test files small
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)  # Caffe's ILSVRC-2012 mean values
RTOL = 1e-4


def _relative(ours: np.ndarray, oracle: np.ndarray) -> float:
    return float(np.abs(ours - oracle).max() / np.abs(oracle).max())


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    """Seeded random weights of bvlc_alexnet's shapes: He-scaled (activations stay in range, so
    the LRN matters) with random biases (a bias lost or misplaced shows)."""
    with torch.device("meta"):
        shapes = create_model("alexnet", num_classes=NUM_CLASSES).state_dict()
    rng = np.random.default_rng(0)
    weights = {}
    for key, meta in shapes.items():
        scale = 0.5 if key.endswith("bias") else (2 / meta[0].numel()) ** 0.5
        weights[key] = torch.from_numpy(rng.standard_normal(meta.shape, np.float32) * scale)
    return weights


@pytest.fixture(scope="module")
def blobs(state) -> dict[str, BlobProto]:
    return data_blobs(state)


@pytest.fixture(scope="module")
def files(blobs, tmp_path_factory) -> dict[str, Path]:
    """bvlc_alexnet in today's format; CaffeNet (same weights) in the V1 format with legacy sizes,
    as the released bvlc_* files were written."""
    folder = tmp_path_factory.mktemp("caffe")
    made = {
        "alexnet": write_caffemodel(folder / "alexnet.caffemodel", blobs, "alexnet", "layer"),
        "caffenet": write_caffemodel(folder / "caffenet.caffemodel", blobs, "caffenet", "layers"),
    }
    for net in CAFFE_MODELS:
        made[f"{net}.prototxt"] = folder / f"{net}.prototxt"
        made[f"{net}.prototxt"].write_text(deploy_prototxt(net, NUM_CLASSES))
    return made


@pytest.fixture(scope="module")
def converted(files) -> dict[str, dict[str, torch.Tensor]]:
    return {net: caffe_state_dict(files[net], net) for net in CAFFE_MODELS}


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """Three real photos, 227x227, as Caffe's input: BGR, 0-255, minus the mean values."""
    skimage_data = pytest.importorskip("skimage.data")
    images = [skimage_data.astronaut(), skimage_data.chelsea(), skimage_data.coffee()]
    rgb = np.stack([cv2.resize(img, (227, 227), interpolation=cv2.INTER_AREA) for img in images])
    bgr = rgb[..., ::-1].astype(np.float32) - MEAN_BGR
    return np.ascontiguousarray(bgr.transpose(0, 3, 1, 2))


def _opencv_logits(prototxt: Path, caffemodel: Path, bgr: np.ndarray) -> np.ndarray:
    cv2.setNumThreads(1)
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setInput(bgr)
    return net.forward("fc8").reshape(len(bgr), -1)


def _our_logits(model_name, state, rgb, **options) -> np.ndarray:
    options = {**CAFFE_MODELS[model_name], **options}
    with torch.device("meta"):  # the weights come from `state`: skip initialising 61M of them
        model = create_model(model_name, num_classes=NUM_CLASSES, **options)
    model.load_state_dict(state, strict=True, assign=True)
    with torch.no_grad():
        return model.eval()(torch.from_numpy(np.ascontiguousarray(rgb))).numpy()


def _swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    half = tensor.shape[0] // 2
    return torch.cat([tensor[half:], tensor[:half]])


def test_bvlc_alexnet_matches_opencv_and_each_detail_matters(files, converted, photos):
    ours = converted["alexnet"]
    rgb = photos[:, ::-1]
    oracle = _opencv_logits(files["alexnet.prototxt"], files["alexnet"], photos)
    assert _relative(_our_logits("alexnet", ours, rgb), oracle) < RTOL

    hwc = ours["fc6.weight"].reshape(-1, 256, 6, 6).permute(0, 2, 3, 1).reshape(-1, 9216)
    swapped = {key: _swap_halves(ours[key]) for key in ("conv2.weight", "conv2.bias")}
    wrong = {
        "no BGR flip": _our_logits("alexnet", ours, photos),
        "LRN within towers": _our_logits("alexnet", ours, rgb, lrn_scope="tower"),
        "LRN k=2": _our_logits("alexnet", ours, rgb, lrn="code"),
        "conv2 towers swapped": _our_logits("alexnet", {**ours, **swapped}, rgb),
        "fc6 flattened HWC": _our_logits("alexnet", {**ours, "fc6.weight": hwc}, rgb),
        "CaffeNet's pool/norm order": _our_logits("caffenet", ours, rgb),
    }
    errors = {name: _relative(logits, oracle) for name, logits in wrong.items()}
    assert all(error > 100 * RTOL for error in errors.values()), errors


def test_caffenet_v1_file_matches_opencv(files, converted, photos):
    oracle = _opencv_logits(files["caffenet.prototxt"], files["caffenet"], photos)
    rgb = photos[:, ::-1]
    assert _relative(_our_logits("caffenet", converted["caffenet"], rgb), oracle) < RTOL
    # the alexnet order (norm before pool) on CaffeNet's weights is another net
    assert _relative(_our_logits("alexnet", converted["caffenet"], rgb), oracle) > 100 * RTOL


def test_legacy_and_new_formats_give_identical_state_dicts(converted, state):
    new, legacy = converted["alexnet"], converted["caffenet"]  # same weights, two formats
    assert list(new) == list(legacy) == list(state)
    assert all(torch.equal(new[key], legacy[key]) for key in new)
    assert all(torch.equal(new[key], state[key]) for key in new)  # conv1 back in RGB


def _blob(shape=None, legacy=None, double=False) -> BlobProto:
    """A small blob of values 0, 1/8, 2/8, ... sized by `shape` or by the legacy 4-D fields."""
    blob = BlobProto()
    if shape is not None:
        blob.shape.dim.extend(shape)
    if legacy is not None:
        blob.num, blob.channels, blob.height, blob.width = legacy
    size = int(np.prod(shape if shape is not None else legacy))
    (blob.double_data if double else blob.data).extend((np.arange(size) / 8).tolist())
    return blob


def _write(tmp_path: Path, net) -> Path:
    path = tmp_path / "net.caffemodel"
    path.write_bytes(net.SerializeToString())
    return path


def test_read_blobs_in_every_generation(tmp_path):
    """`layer`, V1 `layers` (enum types, legacy sizes), V0, double_data, layers without blobs."""
    weight, bias = np.arange(12.0).reshape(3, 4) / 8, np.arange(3.0) / 8
    new = NetParameter(layer=[
        LayerParameter(name="data", type="Input"),
        LayerParameter(name="ip", type="InnerProduct", blobs=[_blob((3, 4)), _blob((3,))]),
        LayerParameter(name="conv", type="Convolution", blobs=[_blob((1, 2, 3, 3))]),
    ])  # fmt: skip
    fc, conv = V1LayerParameter.INNER_PRODUCT, V1LayerParameter.CONVOLUTION
    v1 = NetParameter(layers=[
        V1LayerParameter(name="relu", type=V1LayerParameter.RELU),
        V1LayerParameter(name="ip", type=fc, blobs=[_blob(legacy=(1, 1, 3, 4)),
                                                    _blob(legacy=(1, 1, 1, 3), double=True)]),
        V1LayerParameter(name="conv", type=conv, blobs=[_blob(legacy=(1, 2, 3, 3))]),
    ])  # fmt: skip
    v0 = NetParameter(layers=[
        V1LayerParameter(layer=V0LayerParameter(name="ip", type="innerproduct", blobs=[
            _blob(legacy=(1, 1, 3, 4)), _blob(legacy=(1, 1, 1, 3))])),
        V1LayerParameter(layer=V0LayerParameter(name="conv", type="conv", blobs=[
            _blob(legacy=(1, 2, 3, 3))])),
    ])  # fmt: skip
    for net in (new, v1, v0):
        blobs = read_caffe_blobs(_write(tmp_path, net))
        assert list(blobs) == ["ip", "conv"]  # layers without blobs are left out
        assert all(b.dtype == np.float32 for b in blobs["ip"] + blobs["conv"])
        np.testing.assert_array_equal(blobs["ip"][0], weight)
        np.testing.assert_array_equal(blobs["ip"][1], bias)
        assert blobs["conv"][0].shape == (1, 2, 3, 3)  # a conv weight keeps its four axes
    both = NetParameter()
    both.MergeFrom(v1)
    both.layer.append(LayerParameter(name="new", type="InnerProduct", blobs=[_blob((2,))]))
    assert list(read_caffe_blobs(_write(tmp_path, both))) == ["new"]  # `layer` wins


def test_other_nets_are_refused_naming_the_layer(tmp_path, blobs, files):
    convs = {key: blob for key, blob in blobs.items() if not key.startswith(("fc6", "fc7"))}
    missing = write_caffemodel(tmp_path / "missing.caffemodel", convs)
    with pytest.raises(ValueError, match=r"missing.caffemodel: no layer fc6 \(layers found: "
                       r"conv1, conv2, conv3, conv4, conv5, fc8\)$"):  # fmt: skip
        caffe_state_dict(missing, "alexnet")

    ungrouped = data_blobs({"conv2.weight": torch.zeros(256, 96, 5, 5)})  # a net without towers
    path = write_caffemodel(tmp_path / "ungrouped.caffemodel", {**convs, **ungrouped}, fmt="layers")
    message = (r"ungrouped.caffemodel: layer conv2 weight has shape \(256, 96, 5, 5\), "
               r"expected \(256, 48, 5, 5\)$")  # fmt: skip
    with pytest.raises(ValueError, match=message):
        caffe_state_dict(path, "caffenet")

    renamed = NetParameter.FromString(missing.read_bytes())
    renamed.layer[0].name = "conv1_1"
    with pytest.raises(ValueError, match=r"no layer conv1 \(layers found: conv1_1, conv2"):
        caffe_state_dict(_write(tmp_path, renamed), "alexnet")

    # one more weighted layer after a complete net (serialised messages concatenate as a merge)
    fc9 = NetParameter(
        layers=[
            V1LayerParameter(name="fc9", type=V1LayerParameter.INNER_PRODUCT, blobs=[_blob((2, 3))])
        ]
    )
    extra = tmp_path / "extra.caffemodel"
    extra.write_bytes(files["caffenet"].read_bytes() + fc9.SerializeToString())
    with pytest.raises(ValueError, match="layer fc9 has weights, but caffenet has no such layer"):
        caffe_state_dict(extra, "caffenet")
    with pytest.raises(ValueError, match="unknown Caffe model 'vgg16'"):
        caffe_state_dict(path, "vgg16")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n",
        b'name: "AlexNet"\nlayer { name: "conv1" type: "Convolution" }\n',
        bytes(range(256)) * 64,
        "truncated",
        "no values",
    ],
    ids=["empty", "html", "prototxt", "garbage", "truncated", "no-values"],
)
def test_bad_files_are_one_line_errors(tmp_path, content):
    if content in ("truncated", "no values"):
        net = NetParameter(layer=[
            LayerParameter(name="fc", type="InnerProduct", blobs=[_blob((30, 40))])])  # fmt: skip
        if content == "no values":
            net.layer[0].blobs[0].ClearField("data")
        data = net.SerializeToString()
        content = data[: len(data) // 2] if content == "truncated" else data
    path = tmp_path / "model.caffemodel"
    path.write_bytes(content)
    with pytest.raises(ValueError) as caught:
        read_caffe_blobs(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message


def _proto_fields(text: str) -> dict[str, set[tuple]]:
    """message -> {(label, type, name, number)} and V1's enum values, read from the .proto."""
    fields: dict[str, set[tuple]] = {}
    for name, body in re.findall(r"^message (\w+) \{(.*?)^\}", text, re.M | re.S):
        fields[name] = set(re.findall(r"(optional|repeated) (\w+) (\w+) = (\d+)", body))
    enum = re.search(r"enum LayerType \{(.*?)\}", text, re.S).group(1)
    fields["LayerType"] = set(re.findall(r"(\w+) = (\d+);", enum))
    return fields


def _built_fields(file: descriptor_pb2.FileDescriptorProto) -> dict[str, set[tuple]]:
    """The same sets, read back from the descriptor the package builds."""
    label = {v: k for k, v in caffe_proto._LABELS.items()}
    scalar = {v: k for k, v in caffe_proto._SCALARS.items()}
    fields: dict[str, set[tuple]] = {}
    for message in file.message_type:
        fields[message.name] = {
            (label[f.label], scalar.get(f.type) or f.type_name.rsplit(".", 1)[1], f.name,
             str(f.number))
            for f in message.field
        }  # fmt: skip
        for enum in message.enum_type:
            fields[enum.name] = {(v.name, str(v.number)) for v in enum.value}
    return fields


def test_proto_subset_file_matches_the_built_messages():
    text = caffe_proto.PROTO.read_text()
    assert 'syntax = "proto2";' in text and "package caffe;" in text
    assert _built_fields(caffe_proto.file_descriptor()) == _proto_fields(text)
    packed = {f.name for m in caffe_proto.file_descriptor().message_type for f in m.field
              if f.options.packed}  # fmt: skip
    assert packed == {"dim", "data", "double_data"}, packed  # Caffe's [packed = true] fields
    # Field numbers as in BVLC/caffe's caffe.proto (read there, not derived from this file).
    assert caffe_proto.NetParameter.DESCRIPTOR.fields_by_name["layer"].number == 100
    assert caffe_proto.NetParameter.DESCRIPTOR.fields_by_name["layers"].number == 2
    assert caffe_proto.V1LayerParameter.INNER_PRODUCT == 14
    assert caffe_proto.V1LayerParameter.CONVOLUTION == 4


@pytest.mark.parametrize(
    "line",
    ["optinal int32 num = 1;", "map<string, int32> m = 3;", "oneof x {", "required int32 a = 1"],
)
def test_proto_subset_refuses_a_line_it_does_not_understand(line):
    text = caffe_proto.PROTO.read_text().replace("  optional int32 num = 1;", f"  {line}")
    with pytest.raises(ValueError, match=r"caffe_subset\.proto:\d+: not understood here"):
        caffe_proto.file_descriptor(text)


def test_proto_subset_compiles_to_the_same_descriptor(tmp_path):
    protoc = pytest.importorskip("grpc_tools.protoc", reason="protoc (grpcio-tools) not installed")
    folder = Path(caffe_proto.__file__).parent
    out = tmp_path / "subset.pb"
    args = ["protoc", f"-I{folder}", f"--descriptor_set_out={out}", "caffe_subset.proto"]
    assert protoc.main(args) == 0
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    built = caffe_proto.file_descriptor()
    compiled.name, compiled.syntax = built.name, built.syntax
    for message in compiled.message_type:
        for field in message.field:
            field.ClearField("json_name")
    assert compiled == built
