"""The message classes of `caffe_subset.proto`, built at import time with the protobuf library.

No generated `_pb2` module and no protoc: the descriptor below (the same names, types and field
numbers as the .proto beside this file, which a test checks) is added to a private descriptor
pool, so a real `caffe_pb2` a user imports elsewhere cannot clash with it. Parsing and
serialising are protobuf's own; fields a real file has beyond this subset are skipped.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "caffe"
_LABELS = {
    "optional": descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    "repeated": descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
}
_SCALARS = {
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "float": descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
}

# message -> [(label, type, name, number)], in caffe.proto's order; a type that is not a scalar
# names a message of this file, or the enum below. Repeated scalars are packed, as in Caffe.
FIELDS: dict[str, list[tuple[str, str, str, int]]] = {
    "BlobShape": [("repeated", "int64", "dim", 1)],
    "BlobProto": [
        ("optional", "BlobShape", "shape", 7),
        ("repeated", "float", "data", 5),
        ("repeated", "double", "double_data", 8),
        ("optional", "int32", "num", 1),
        ("optional", "int32", "channels", 2),
        ("optional", "int32", "height", 3),
        ("optional", "int32", "width", 4),
    ],
    "NetParameter": [
        ("optional", "string", "name", 1),
        ("repeated", "LayerParameter", "layer", 100),
        ("repeated", "V1LayerParameter", "layers", 2),
    ],
    "LayerParameter": [
        ("optional", "string", "name", 1),
        ("optional", "string", "type", 2),
        ("repeated", "BlobProto", "blobs", 7),
    ],
    "V1LayerParameter": [
        ("optional", "string", "name", 4),
        ("optional", "LayerType", "type", 5),
        ("repeated", "BlobProto", "blobs", 6),
        ("optional", "V0LayerParameter", "layer", 1),
    ],
    "V0LayerParameter": [
        ("optional", "string", "name", 1),
        ("optional", "string", "type", 2),
        ("repeated", "BlobProto", "blobs", 50),
    ],
}
# V1LayerParameter.LayerType, every value of caffe.proto's enum.
V1_LAYER_TYPES: dict[str, int] = {
    "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3,
    "CONTRASTIVE_LOSS": 37, "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6,
    "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7, "ELTWISE": 25, "EXP": 38, "FLATTEN": 8,
    "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11, "IMAGE_DATA": 12,
    "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
    "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18,
    "SIGMOID": 19, "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20,
    "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33, "TANH": 23, "WINDOW_DATA": 24,
    "THRESHOLD": 31,
}  # fmt: skip


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """`caffe_subset.proto` as a FileDescriptorProto (what protoc would make of it)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="alexnet/caffe_subset.proto", package=PACKAGE, syntax="proto2"
    )
    for message, fields in FIELDS.items():
        proto = file.message_type.add(name=message)
        if message == "V1LayerParameter":
            enum = proto.enum_type.add(name="LayerType")
            for name, number in V1_LAYER_TYPES.items():
                enum.value.add(name=name, number=number)
        for label, kind, name, number in fields:
            field = proto.field.add(name=name, number=number, label=_LABELS[label])
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
                if label == "repeated" and kind != "string":
                    field.options.packed = True
            elif kind == "LayerType":
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_ENUM
                field.type_name = f".{PACKAGE}.V1LayerParameter.LayerType"
            else:
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{kind}"
    return file


_pool = descriptor_pool.DescriptorPool()
_pool.AddSerializedFile(file_descriptor().SerializeToString())


def _message(name: str) -> type:
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))


NetParameter = _message("NetParameter")
LayerParameter = _message("LayerParameter")
V1LayerParameter = _message("V1LayerParameter")
V0LayerParameter = _message("V0LayerParameter")
BlobProto = _message("BlobProto")
BlobShape = _message("BlobShape")
