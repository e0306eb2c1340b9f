"""Named weights as data: the shipped `weights.yaml`, plus $ALEXNET_WEIGHTS_REGISTRY's entries.

`get_weights(name)` returns a `WeightsEntry`: where the file is and how to check it, the
architecture it loads into, its licence and published accuracy, and its preset. Like
torchvision's weights objects, `entry.transforms()` is the preprocessing and
`entry.meta["categories"]` the class names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from alexnet.data.classes import imagenet_classes
from alexnet.data.preset import Preprocess
from alexnet.models.registry import model_defaults

FORMATS = ("torchvision", "caffemodel", "onnx")
HASHES = ("sha256", "sha1")
REGISTRY_ENV = "ALEXNET_WEIGHTS_REGISTRY"
_REQUIRED = ("model", "format", "url", "file_name", "licence", "published", "classes", "preset")


@dataclass(frozen=True)
class WeightsEntry:
    """One published set of weights."""

    name: str
    description: str
    model: str
    model_options: dict[str, Any]
    format: str
    url: str
    file_name: str
    hash_name: str  # "sha256" or "sha1": what the publisher gives
    digest: str  # hex
    size_mb: float | None
    licence: str
    published: dict[str, Any]
    classes: str  # "imagenet": the packaged ILSVRC-2012 table
    preset: dict[str, Any] = field(repr=False)
    facts: str = ""

    def transforms(self) -> Preprocess:
        """The publisher's preprocessing, with the class names."""
        return Preprocess.from_dict({**self.preset, "classes": self.meta["categories"]})

    @property
    def meta(self) -> dict[str, Any]:
        """categories (short names) and synsets (WordNet ids), index order; published numbers."""
        table = imagenet_classes()
        return {
            "categories": [c.name for c in table],
            "synsets": [c.synset for c in table],
            "published": dict(self.published),
            "licence": self.licence,
            "url": self.url,
        }


def _entry(name: str, raw: Any, origin: str) -> WeightsEntry:
    where = f"{origin}: weights {name!r}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not a mapping")
    missing = [k for k in _REQUIRED if k not in raw]
    hashes = [h for h in HASHES if h in raw]
    if missing or len(hashes) != 1:
        raise ValueError(f"{where} lacks {missing or 'exactly one of sha256/sha1'}")
    if raw["format"] not in FORMATS:
        raise ValueError(f"{where}: format {raw['format']!r} is not one of {FORMATS}")
    if raw["classes"] != "imagenet":
        raise ValueError(f"{where}: classes {raw['classes']!r}; only 'imagenet' is known")
    options = dict(raw.get("model_options") or {})
    unknown = set(options) - set(model_defaults(raw["model"]))  # also checks the model name
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {sorted(unknown)} for {raw['model']}")
    digest = str(raw[hashes[0]]).lower()
    if not digest or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{where}: {hashes[0]} {digest!r} is not hex")
    if Path(str(raw["file_name"])).name != raw["file_name"]:
        raise ValueError(f"{where}: file_name {raw['file_name']!r} must be a bare file name")
    entry = WeightsEntry(
        name=name,
        description=str(raw.get("description", "")),
        model=str(raw["model"]),
        model_options=options,
        format=str(raw["format"]),
        url=str(raw["url"]),
        file_name=str(raw["file_name"]),
        hash_name=hashes[0],
        digest=digest,
        size_mb=float(raw["size_mb"]) if raw.get("size_mb") is not None else None,
        licence=str(raw["licence"]),
        published=dict(raw["published"]),
        classes=str(raw["classes"]),
        preset=dict(raw["preset"]),
        facts=str(raw.get("facts", "")),
    )
    entry.transforms()  # a preset that does not build is an error here, not at first use
    return entry


def _parse(text: str, origin: str) -> dict[str, WeightsEntry]:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{origin}: not YAML ({err})".replace("\n", " ")) from err
    if not isinstance(raw, dict):
        raise ValueError(f"{origin}: expected a mapping of weights names to entries")
    for name in raw:
        if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
            raise ValueError(f"{origin}: {name!r} is not a usable weights name")
    return {name: _entry(name, value, origin) for name, value in raw.items()}


@cache
def _shipped() -> dict[str, WeightsEntry]:
    text = resources.files("alexnet.models.pretrained").joinpath("weights.yaml").read_text("utf-8")
    return _parse(text, "weights.yaml")


def shipped_weights(name: str) -> WeightsEntry:
    """A shipped entry, whatever $ALEXNET_WEIGHTS_REGISTRY says (the package's own facts)."""
    return _shipped()[name]


def all_weights() -> dict[str, WeightsEntry]:
    """Every entry: the shipped ones, then those of $ALEXNET_WEIGHTS_REGISTRY (which may
    replace a shipped entry of the same name)."""
    entries = dict(_shipped())
    extra = os.environ.get(REGISTRY_ENV)
    if extra:
        path = Path(extra)
        if not path.is_file():
            raise FileNotFoundError(f"${REGISTRY_ENV}={extra}: no such file")
        entries.update(_parse(path.read_text(encoding="utf-8"), str(path)))
    return entries


def get_weights(name: str) -> WeightsEntry:
    """The entry called `name`; an unknown name lists the known ones."""
    entries = all_weights()
    if name not in entries:
        raise ValueError(f"unknown weights {name!r}; known: {', '.join(sorted(entries))}")
    return entries[name]


def is_weights_name(name: str) -> bool:
    """Whether `name` is a registry entry (a run dir or file of that name is not one)."""
    return name in all_weights()
