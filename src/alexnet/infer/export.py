"""Export trained weights: ONNX, safetensors, TorchScript, torchvision state dict.

Each exporter writes the file and, where a runtime is at hand, checks it against the PyTorch
model on random inputs and returns the largest absolute difference of the logits.

ONNX: the TorchScript-based exporter (`dynamo=False`, opset 17) handles every registered model,
LRN and the locally connected layer included; the batch dimension is dynamic ("batch"); the
spatial size is fixed at the model's `input_size` (adaptive pooling is then a fixed pooling, the
case that breaks torchvision's alexnet export at other sizes). Parity is checked with
onnxruntime on a batch size other than the one traced, to exercise the dynamic dimension.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

FORMATS = ("onnx", "safetensors", "torchscript", "torchvision")
OPSET = 17


def example_input(model: nn.Module, batch: int, seed: int = 0) -> torch.Tensor:
    """Random input at the model's own shape, in the 0-255-minus-mean range (std ~ 60)."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, model.in_chans, model.input_size, model.input_size)
    return torch.randn(shape, generator=g) * 60.0


@torch.inference_mode()
def _reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).float()


def export_onnx(model: nn.Module, path: str | Path, *, check: bool = True) -> float | None:
    """Write ONNX with a dynamic batch; return the onnxruntime max abs diff (None: no runtime)."""
    model = model.eval().cpu()
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            model,
            (example_input(model, 1),),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    if not check:
        return None
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    x = example_input(model, 3, seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(["logits"], {"input": x.numpy()})
    return float((torch.from_numpy(out) - _reference(model, x)).abs().max())


def export_torchscript(model: nn.Module, path: str | Path) -> float:
    """Trace to TorchScript, save, reload and return the max abs diff on a fresh batch."""
    model = model.eval().cpu()
    path = Path(path)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit announces its deprecation
        traced = torch.jit.trace(model, (example_input(model, 1),))
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")
        x = example_input(model, 3, seed=1)
        return float((loaded(x).float() - _reference(model, x)).abs().max())


def export_safetensors(model: nn.Module, pre: object, path: str | Path) -> Path:
    """Exactly the model's state dict (strict-loadable), with the metadata header for predict."""
    from alexnet.infer.weights import save_weights

    return save_weights(path, model, pre, with_mean_image=False)  # type: ignore[arg-type]
