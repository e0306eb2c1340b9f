"""`alexnet bench`: the speed of this machine for AlexNet, every figure from one run."""

from __future__ import annotations

import argparse
import dataclasses
import json

from alexnet import runtime
from alexnet.bench.run import QUICK, Settings, run_bench
from alexnet.bench.text import format_results
from alexnet.commands.errors import user_errors
from alexnet.commands.predict import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes (batch 2, 1 round, a 99-px input): a smoke run, not a measurement",
    )
    parser.add_argument("--batch", type=positive_int, help="training batch size (default 128)")
    parser.add_argument(
        "--repeats", type=positive_int, help="interleaved rounds per table (default 5)"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: one per CPU)")
    parser.add_argument(
        "--all-precisions",
        action="store_true",
        help="also time bf16 where the CPU has no fast bf16 (slow: emulated there)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="add the profile table of one alexnet step"
    )


@user_errors("bench")
def run(args: argparse.Namespace) -> int:
    settings = QUICK if args.quick else Settings()
    for name in ("batch", "repeats"):
        value = getattr(args, name)
        if value is not None:
            settings = dataclasses.replace(settings, **{name: value})
    if args.all_precisions:
        settings = dataclasses.replace(settings, all_precisions=True)
    runtime.configure_threads(args.threads)
    results = run_bench(settings, profile=args.profile)
    print(json.dumps(results, indent=2) if args.json else format_results(results))
    return 0
