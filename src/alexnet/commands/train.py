"""`alexnet train`: the paper's recipe by default, any field overridable by a flag.

With no arguments it trains the embedded default (Fashion-MNIST: the package's
configs/fashion-mnist.yaml). `--config FILE|NAME` loads a recipe (e.g. `paper`: the package's
configs/paper.yaml); flags override it.
`--resume RUN_DIR` continues a run exactly where its last checkpoint left it; flags given with
it override the saved config (`--lr` changes the learning rate by hand; `--epochs` extends).
Data parallel: `torchrun --nproc_per_node=N -m alexnet train ...` (see alexnet.train.distributed).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from alexnet.train.config import add_config_arguments

    parser.add_argument(
        "--config",
        help="recipe YAML file, or a shipped recipe's name (paper, caffe, fashion-mnist)",
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run exactly")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from alexnet.train.config import command_line, flag_overrides, resolve_config
    from alexnet.train.loop import NonFiniteLossError
    from alexnet.train.run import train

    overrides = flag_overrides(args)
    try:
        if args.resume:
            if args.config:
                raise ValueError("--resume takes the run's own config; drop --config")
            train(None, resume=args.resume, overrides=overrides, command=command_line(args))
        else:
            train(resolve_config(args.config, overrides), command=command_line(args))
    except NonFiniteLossError as err:
        print(f"alexnet train: stopped: {err}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"alexnet train: error: {err}", file=sys.stderr)
        return 2
    return 0
