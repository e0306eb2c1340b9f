"""The package's layers stack strictly (docs/architecture.md): a package imports only its own
level or lower ones, and no two packages import each other, read from the source's AST (so an
import hidden inside a function counts too)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "alexnet"
LEVEL = {
    "runtime": 0, "allocator": 0, "cache": 0, "paths": 0, "fileio": 0, "resources": 0,
    "models": 1, "data": 1,
    "train": 2, "eval": 2,
    "infer": 3,
    "viz": 4, "experiments": 4, "bench": 4,
    "commands": 5, "cli": 5,
    "__main__": 6,
}  # fmt: skip


def package_imports() -> dict[tuple[str, str], list[str]]:
    """(importer, imported) package pairs -> where (file:line)."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        me = rel.parts[0].removesuffix(".py")
        if me == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                if parts[0] == "alexnet" and len(parts) > 1 and parts[1] != me:
                    edges.setdefault((me, parts[1]), []).append(f"{rel}:{node.lineno}")
    return edges


def test_every_package_has_a_level() -> None:
    packages = {p.name.removesuffix(".py") for p in SRC.iterdir() if p.suffix == ".py" or (
        p.is_dir() and (p / "__init__.py").is_file())} - {"__init__"}  # fmt: skip
    assert packages <= set(LEVEL), sorted(packages - set(LEVEL))


def test_no_upward_import_and_no_cycle() -> None:
    edges = package_imports()
    upward = {e: where for e, where in edges.items() if LEVEL[e[1]] > LEVEL[e[0]]}
    assert not upward, upward
    cycles = {e: where for e, where in edges.items() if (e[1], e[0]) in edges}
    assert not cycles, cycles


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch) -> None:
    fake = tmp_path / "alexnet"
    (fake / "models").mkdir(parents=True)
    (fake / "models" / "bad.py").write_text("def f():\n    from alexnet.infer import weights\n")
    monkeypatch.setattr(f"{__name__}.SRC", fake)
    assert package_imports() == {("models", "infer"): ["models/bad.py:2"]}
