"""`alexnet train`: a recipe that fits the data, any field overridable by a flag.

With no arguments it trains the embedded default (Fashion-MNIST: the package's
configs/fashion-mnist.yaml). With `--data` the recipe follows the data (alexnet.train.recipes:
small images get the small-image recipe, large ones the paper's); `--config FILE|NAME` loads a
recipe (e.g. `paper`: the package's configs/paper.yaml) and always wins; flags override it.
The first line printed says which recipe was picked and why; `--print-config` (or `--dry-run`)
prints the resolved config and stops before any data is prepared.
`--resume RUN_DIR` continues a run exactly where its last checkpoint left it; flags given with
it override the saved config (`--lr` changes the learning rate by hand; `--epochs` extends).
A fresh run into an `--out` that holds a run is refused unless `--overwrite`; Ctrl-C saves
checkpoints/last.pt after the step in progress and exits 130 (`--resume` continues it).
Data parallel: `torchrun --nproc_per_node=N -m alexnet train ...` (see alexnet.train.distributed).
"""

from __future__ import annotations

import argparse
import sys

import yaml

from alexnet.commands.errors import INTERRUPTED, user_errors
from alexnet.train.config import (
    TrainConfig,
    add_config_arguments,
    command_line,
    config_to_dict,
    flag_overrides,
)
from alexnet.train.loop import NonFiniteLossError, TrainingInterrupted
from alexnet.train.recipes import describe, resolve_recipe
from alexnet.train.run import resume, resume_config, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train a model. No --data: the embedded Fashion-MNIST recipe (the defaults shown first "
        "below). With --data the recipe follows the data: images of at most 64 px get the "
        "small-image recipe (the same values, stored at their own size), larger ones the "
        "paper's (the 'paper recipe' values below). --config always wins."
    )
    parser.add_argument(
        "--config",
        help="recipe YAML file, or a shipped recipe's name (paper, caffe, fashion-mnist)",
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run exactly")
    parser.add_argument(
        "--print-config",
        "--dry-run",
        dest="print_config",
        action="store_true",
        help="print the resolved recipe (config.yaml's contents) and stop: nothing is prepared "
        "or trained",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="a fresh run into an --out that holds a run: delete that run's files first",
    )
    add_config_arguments(parser)


@user_errors("train")
def run(args: argparse.Namespace) -> int:
    try:
        overrides = flag_overrides(args)
        if args.resume:
            if args.config:
                raise ValueError("--resume takes the run's own config; drop --config")
            if args.overwrite:
                raise ValueError("--overwrite starts a fresh run; it does not go with --resume")
            if args.print_config:
                return _print_config(resume_config(args.resume, overrides)[0])
            resume(args.resume, overrides=overrides, command=command_line(args))
        else:
            config = resolve_recipe(args.config, overrides)
            if args.print_config:
                return _print_config(config)
            print(describe(config), flush=True)
            command = command_line(args) + (["--overwrite"] if args.overwrite else [])
            train(config, command=command, overwrite=args.overwrite)
    except NonFiniteLossError as err:
        print(f"alexnet train: stopped: {err}", file=sys.stderr)
        return 3
    except TrainingInterrupted as err:
        print(f"alexnet train: {err}", file=sys.stderr)
        return INTERRUPTED
    return 0


def _print_config(config: TrainConfig) -> int:
    print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
    return 0
