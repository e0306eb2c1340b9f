"""The `alexnet` command: one verb per job, each implemented in `alexnet.commands.<module>`.

Verb modules are imported only when their verb runs (or for `--help` of that verb), so the
top-level help answers without importing torch. A verb module exposes
`add_arguments(parser: argparse.ArgumentParser) -> None` and `run(args: argparse.Namespace) -> int`.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from alexnet import __version__
from alexnet.allocator import prepare_process

# verb -> (module under alexnet.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list-models": ("models", "list the registered model names"),
    "prepare": ("prepare", "decode, rescale and centre-crop a data set once into a fast store"),
    "train": ("train", "train a model (no arguments: the Fashion-MNIST default run)"),
    "evaluate": ("evaluate", "top-1/top-5 error of a run or checkpoint, centre or ten crops"),
    "predict": ("predict", "top-k classes of image files with trained weights"),
    "embed": ("embed", "fc7 features of image files, saved as .npy"),
    "export": ("export", "export weights to onnx, safetensors, torchscript or torchvision"),
    "release": ("release", "strip a checkpoint to a weights file named by content hash"),
    "experiment": ("experiment", "reproduce one of the paper's claims; `page` writes results.md"),
    "figures": ("figures", "PNG figures of a run: curves, conv1 kernels, predictions, neighbours"),
    "report": ("report", "one self-contained HTML page for a run (config, metrics, figures)"),
    "anomaly": ("anomaly", "fit/score/eval a k-NN anomaly detector on pooled conv features"),
    "weights": ("weights", "published ImageNet weights: list, pull (download) or import a file"),
    "bench": ("bench", "training/inference speed side by side: matmul ceiling, LRN, baseline"),
}


def _load(verb: str) -> ModuleType:
    module_name, _ = COMMANDS[verb]
    return importlib.import_module(f"alexnet.commands.{module_name}")


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only `verb`'s module is imported to fill its arguments."""
    parser = argparse.ArgumentParser(
        prog="alexnet",
        description="AlexNet (Krizhevsky et al., 2012): prepare, train, evaluate, predict, export.",
    )
    parser.add_argument("--version", action="version", version=f"alexnet {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (_, help_text) in COMMANDS.items():
        verb_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == verb:
            _load(name).add_arguments(verb_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    if from_command_line and verb in COMMANDS:
        prepare_process()  # OpenMP wait policy; re-exec under tcmalloc (see alexnet.allocator)
    if verb is not None and verb not in COMMANDS:
        close = difflib.get_close_matches(verb, list(COMMANDS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(f"alexnet: error: unknown verb '{verb}'{hint}; verbs: {', '.join(COMMANDS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    parser = build_parser(verb if verb in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    try:
        code = int(_load(args.verb).run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:  # `alexnet list-models --json | head`: the reader had enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit's own flush does not fail again
        return 0
    return code


if __name__ == "__main__":
    raise SystemExit(main())
