"""`alexnet export`: ONNX, safetensors, TorchScript or a torchvision state dict, with parity checks.

ONNX and TorchScript files are checked against the PyTorch model on random inputs (ONNX through
onnxruntime when it is installed) and the largest absolute logit difference is printed; the
command fails if it exceeds --tolerance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torch import nn

from alexnet.commands.predict import user_errors
from alexnet.data.preset import Preprocess
from alexnet.fileio import atomic_path, check_output_dir
from alexnet.infer import export
from alexnet.infer.quantize import calibration_data, export_int8_onnx
from alexnet.models.pretrained.torchvision import export_torchvision_state_dict
from alexnet.train.weights import load_weights

QUANTIZE = ("int8",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", help="RUN_DIR, checkpoint .pt or weights .safetensors")
    parser.add_argument("--format", required=True, choices=export.FORMATS)
    parser.add_argument(
        "--out",
        help="output file (default: beside the weights, RUN_DIR/model.onnx for a run dir, "
        "else the weights file's name with the format's extension)",
    )
    parser.add_argument(
        "--with-preprocess",
        action="store_true",
        help="onnx: normalisation and softmax inside the graph (uint8 RGB crops in, "
        "probabilities out); every ONNX file carries the preset and class names as metadata",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="largest acceptable max abs logit difference in the parity check (fp32 only)",
    )
    parser.add_argument(
        "--quantize",
        metavar="int8",
        help="onnx: int8 weights and activations (onnxruntime static quantization, calibrated "
        "on --calibrate's images); the check reports top-1 agreement with fp32 on them",
    )
    parser.add_argument(
        "--calibrate",
        metavar="DATA",
        help="--quantize: images to calibrate on (a prepared dir, an image folder, "
        "fashion-mnist, cifar10; default: the run's own training data)",
    )


@user_errors("export")
def run(args: argparse.Namespace) -> int:
    check_quantize(args.quantize, args.format, args.with_preprocess)
    args.out = args.out or default_out(args.weights, args.format)
    check_output_dir(args.out)
    model, pre, _ = load_weights(args.weights)
    if args.quantize:
        return run_int8(args, model, pre)
    diff = None
    with atomic_path(args.out) as tmp:  # nothing partial on a failure (alexnet.fileio)
        if args.format == "onnx":
            diff = export.export_onnx(model, tmp, pre, with_preprocess=args.with_preprocess)
            if diff is None:
                print("onnxruntime is not installed: parity not checked", file=sys.stderr)
        elif args.format == "torchscript":
            diff = export.export_torchscript(model, tmp)
        elif args.format == "safetensors":
            export.export_safetensors(model, pre, tmp)
        else:
            export_torchvision_state_dict(model, tmp)
    print(f"wrote {args.out} ({model.model_name}, {args.format})")
    if diff is not None:
        print(f"parity: max abs diff {diff:.3g} on random inputs (tolerance {args.tolerance:g})")
        if diff > args.tolerance:
            print("error: exported model disagrees with PyTorch", file=sys.stderr)
            return 1
    return 0


def check_quantize(quantize: str | None, fmt: str, with_preprocess: bool) -> None:
    """A one-line error for a --quantize this export cannot honour."""
    if quantize is None:
        return
    if quantize not in QUANTIZE:
        raise ValueError(f"--quantize {quantize!r}: expected one of {', '.join(QUANTIZE)}")
    if fmt != "onnx":
        raise ValueError(f"--quantize {quantize} exports ONNX only, not --format {fmt}")
    if with_preprocess:
        raise ValueError("--quantize int8 takes normalised float input: drop --with-preprocess")


def run_int8(args: argparse.Namespace, model: nn.Module, pre: Preprocess) -> int:
    """The int8 ONNX export, checked against fp32 on the calibration images."""
    calibration = calibration_data(args.weights, pre, args.calibrate)
    with atomic_path(args.out) as tmp:
        agree, diff = export_int8_onnx(model, tmp, pre, calibration)
    n = sum(len(b) for b in calibration)
    print(f"wrote {args.out} ({model.model_name}, onnx int8)")
    print(
        f"int8 check: top-1 agrees with fp32 on {agree:.1%} of {n} calibration images, "
        f"max abs logit diff {diff:.3g}"
    )
    return 0


EXTENSIONS = {
    "onnx": ".onnx",
    "safetensors": ".safetensors",
    "torchscript": ".torchscript.pt",
    "torchvision": ".torchvision.pth",
}


def default_out(weights: str, fmt: str) -> str:
    """Beside the weights: RUN_DIR/model<ext>, or WEIGHTS' stem with the format's extension;
    never a file the weights come from (then `-export` is added to the name)."""
    path, ext = Path(weights), EXTENSIONS[fmt]
    if not path.exists():  # a registry name: into the current directory
        return path.name + ext
    stem = "model" if path.is_dir() else path.name.split(".")[0]
    out = (path if path.is_dir() else path.parent) / f"{stem}{ext}"
    if out == path or (path.is_dir() and out.name == "model.safetensors"):
        out = out.with_name(f"{stem}-export{ext}")
    return str(out)
