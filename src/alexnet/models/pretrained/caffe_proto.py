"""The message classes of `caffe_subset.proto`, built at import time with the protobuf library.

No generated `_pb2` module and no protoc: the .proto beside this file (Caffe's own names, types
and field numbers) is the one statement of the schema; `file_descriptor` reads it into the
FileDescriptorProto protoc would make of it, which is added to a private descriptor pool, so a
real `caffe_pb2` a user imports elsewhere cannot clash with it. Parsing and serialising are
protobuf's own; fields a real file has beyond this subset are skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PROTO = Path(__file__).with_name("caffe_subset.proto")
PACKAGE = "caffe"
_Field = descriptor_pb2.FieldDescriptorProto
_LABELS = {"optional": _Field.LABEL_OPTIONAL, "repeated": _Field.LABEL_REPEATED}
_SCALARS = {
    "int32": _Field.TYPE_INT32,
    "int64": _Field.TYPE_INT64,
    "float": _Field.TYPE_FLOAT,
    "double": _Field.TYPE_DOUBLE,
    "string": _Field.TYPE_STRING,
}
# The shapes of line the subset uses (proto2: messages of scalar, message and enum fields; enums
# nested in a message); anything else is refused rather than skipped.
_HEADER = ('syntax = "proto2";', f"package {PACKAGE};")
_OPEN = re.compile(r"(message|enum) (\w+) \{")
_FIELD = re.compile(r"(optional|repeated) (\w+) (\w+) = (\d+)( \[packed = true\])?;")
_VALUE = re.compile(r"(\w+) = (\d+);")


def file_descriptor(text: str | None = None) -> descriptor_pb2.FileDescriptorProto:
    """`caffe_subset.proto` (or `text` in its form) as a FileDescriptorProto, what protoc would
    make of it; a line of another shape raises ValueError naming it."""
    lines = (PROTO.read_text(encoding="utf-8") if text is None else text).splitlines()
    file = descriptor_pb2.FileDescriptorProto(
        name="alexnet/caffe_subset.proto", package=PACKAGE, syntax="proto2"
    )
    message = enum = None
    for number, raw in enumerate(lines, 1):
        line = raw.split("//")[0].strip()
        if not line or (line in _HEADER and message is None):
            continue
        opened, field, value = _OPEN.fullmatch(line), _FIELD.fullmatch(line), _VALUE.fullmatch(line)
        if opened and opened[1] == "message" and message is None:
            message = file.message_type.add(name=opened[2])
        elif opened and opened[1] == "enum" and message is not None and enum is None:
            enum = message.enum_type.add(name=opened[2])
        elif line == "}" and enum is not None:
            enum = None
        elif line == "}" and message is not None:
            message = None
        elif value and enum is not None:
            enum.value.add(name=value[1], number=int(value[2]))
        elif field and message is not None and enum is None:
            _add_field(message, *field.groups())
        else:
            raise ValueError(f"{PROTO.name}:{number}: not understood here: {raw.strip()!r}")
    if message is not None:
        raise ValueError(f"{PROTO.name}: message {message.name} is not closed")
    return file


def _add_field(
    message: descriptor_pb2.DescriptorProto,
    label: str,
    kind: str,
    name: str,
    number: str,
    packed: str | None,
) -> None:
    field = message.field.add(name=name, number=int(number), label=_LABELS[label])
    if packed:
        field.options.packed = True
    if kind in _SCALARS:
        field.type = _SCALARS[kind]
    elif kind in {e.name for e in message.enum_type}:  # an enum of this message (V1's LayerType)
        field.type = _Field.TYPE_ENUM
        field.type_name = f".{PACKAGE}.{message.name}.{kind}"
    else:
        field.type = _Field.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{kind}"


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
