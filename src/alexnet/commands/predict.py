"""`alexnet predict`: top-k classes for any image files, with the weights' own preprocessing.

predict exit status: 0 when at least one file got a prediction, 1 when every file failed (or no
image was found), 2 for unusable weights or options. Each failed file gets an `error:` line on
stderr (a JSON error entry with --json) and the others are still predicted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

from alexnet.commands.errors import user_errors
from alexnet.data.images import is_image_file
from alexnet.data.preset import Preprocess
from alexnet.infer.predict import expand_inputs, predict_files
from alexnet.infer.quantize import (
    PRECISIONS,
    calibration_data,
    for_inference,
    onnxruntime_module,
    resolve_precision,
)
from alexnet.train.distributed import pick_device
from alexnet.train.weights import load_weights


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (a bad value is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def device_argument(name: str) -> torch.device:
    """`--device`, checked as train and evaluate check it (CUDA asked for but absent: one line)."""
    try:
        return pick_device(name)
    except RuntimeError as err:  # torch's own words for a device string it does not know
        raise ValueError(f"--device {name}: {err}") from None


def check_weights_argument(weights: str) -> None:
    """The weights come first: an image file there means the arguments are swapped."""
    if Path(weights).is_file() and is_image_file(Path(weights)):
        raise ValueError(
            f"{weights} is an image, not weights: the weights come first "
            "(WEIGHTS IMAGE_OR_DIR..., WEIGHTS a run dir, .pt, .safetensors or a registry name)"
        )


def add_common(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by predict and embed."""
    parser.add_argument(
        "weights",
        help="RUN_DIR, checkpoint .pt, weights .safetensors or a "
        "torchvision alexnet state dict .pth",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGE_OR_DIR",
        help="image files and/or directories (searched recursively)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="images per forward pass"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument(
        "--precision",
        default="fp32",
        metavar="|".join(PRECISIONS),
        help="fp32 (default); bf16 weights (fast where the CPU has AMX or AVX512-BF16); int8 "
        "(onnxruntime, calibrated on --calibrate's images; the onnx extra); auto: bf16 "
        "where the device has fast bf16, else fp32",
    )
    parser.add_argument(
        "--calibrate",
        metavar="DATA",
        help="int8: images to calibrate activation ranges on (a prepared dir, an image folder, "
        "fashion-mnist, cifar10; default: the run's own training data)",
    )


def inference_net(args: argparse.Namespace) -> tuple[nn.Module, Preprocess, dict]:
    """The weights loaded and prepared at `--precision` on `--device` (predict and embed)."""
    check_weights_argument(args.weights)
    device = device_argument(args.device)
    precision = resolve_precision(args.precision, device)  # a bad value before the weights load
    if precision == "int8":
        onnxruntime_module()  # the missing extra before the weights and calibration load
    model, pre, meta = load_weights(args.weights, device=device)
    calibration = None
    if precision == "int8":
        calibration = calibration_data(args.weights, pre, args.calibrate)
    return for_inference(model, precision, device, calibration), pre, meta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Exit status: 0 if at least one file was predicted, 1 if every file failed, 2 if the "
        "weights cannot be loaded. Unreadable files get an 'error:' line on stderr (with --json "
        "also an entry {file, error})."
    )
    add_common(parser)
    parser.add_argument(
        "--top", type=positive_int, default=5, help="how many classes to list per image"
    )
    parser.add_argument(
        "--ten-crop",
        action="store_true",
        help="average the softmax over the paper's ten patches (section 4.1)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")


@user_errors("predict")
def run(args: argparse.Namespace) -> int:
    model, pre, meta = inference_net(args)
    paths = expand_inputs(args.inputs)
    items = []
    for item in predict_files(
        model, pre, paths, top=args.top, ten_crop=args.ten_crop, batch_size=args.batch_size
    ):
        items.append(item)
        if item.error is not None:
            print(f"error: {item.error}", file=sys.stderr)
        elif not args.json:
            tops = "  ".join(f"{e['label']} {e['probability']:.3f}" for e in item.top)
            print(f"{item.file}: {tops}")
    if args.json:
        doc = {
            "weights": str(args.weights),
            "model_name": meta["model_name"],
            "ten_crop": args.ten_crop,
            "results": [i.to_json() for i in items],
        }
        print(json.dumps(doc, indent=2))
    if not paths:
        print(f"error: no image files found in {args.inputs}", file=sys.stderr)
    return 0 if any(i.error is None for i in items) else 1
