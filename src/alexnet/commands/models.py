"""`alexnet list-models`: the registered nets with their size, input and options."""

from __future__ import annotations

import argparse
import json

import torch

from alexnet.commands.errors import user_errors
from alexnet.models import create_model, list_models, model_description


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print a JSON list (name, params, options, ...)"
    )


def model_summaries() -> list[dict]:
    """One dict per registered model; built on the meta device, so no memory or init time."""
    rows = []
    for name in list_models():
        with torch.device("meta"):
            model = create_model(name)
        rows.append(
            {
                "name": name,
                "params": sum(p.numel() for p in model.parameters()),
                "input_size": model.input_size,
                "in_chans": model.in_chans,
                "num_classes": model.num_classes,
                "description": model_description(name),
                "options": model.model_options,
            }
        )
    return rows


@user_errors("list-models")
def run(args: argparse.Namespace) -> int:
    rows = model_summaries()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  {'params':>11}  input  description")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['params']:>11,}  {r['input_size']:>5}  {r['description']}")
    print("\nOptions: `alexnet list-models --json`; build one with alexnet.models.create_model.")
    return 0
