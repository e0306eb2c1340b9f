"""Export trained weights: ONNX, safetensors, TorchScript, torchvision state dict.

Each exporter writes the file and, where a runtime is at hand, checks it against the PyTorch
model on random inputs and returns the largest absolute difference of the logits.

ONNX: the TorchScript-based exporter (`dynamo=False`, opset 17) handles every registered model,
LRN and the locally connected layer included; the batch dimension is dynamic ("batch"); the
spatial size is fixed at the model's `input_size` (adaptive pooling is then a fixed pooling, the
case that breaks torchvision's alexnet export at other sizes). Parity is checked with
onnxruntime on a batch size other than the one traced, to exercise the dynamic dimension.

Both tracers see only standard ops, so the models' fast CPU LRN kernel (opaque to them: it
writes through ctypes) is swapped for the same formula from `nn.LocalResponseNorm` first.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from alexnet.data.preset import Preprocess, center_crop
from alexnet.models.lrn import with_reference_lrn
from alexnet.models.weights_file import save_weights

FORMATS = ("onnx", "safetensors", "torchscript", "torchvision")
OPSET = 17


def example_input(model: nn.Module, batch: int, seed: int = 0) -> torch.Tensor:
    """Random input at the model's own shape, in the 0-255-minus-mean range (std ~ 60)."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, model.in_chans, model.input_size, model.input_size)
    return torch.randn(shape, generator=g) * 60.0


def traceable(model: nn.Module) -> nn.Module:
    """A CPU eval-mode copy of `model` with every kernel-backed LRN swapped for ReferenceLRN."""
    return with_reference_lrn(copy.deepcopy(model).eval().cpu())


@torch.inference_mode()
def _reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).float()


class WithPreprocess(nn.Module):
    """The preset's normalisation and the softmax inside the graph: uint8 RGB crops (N, crop,
    crop, C), already resized and cropped as the preset says, in; class probabilities out."""

    def __init__(self, model: nn.Module, pre: Preprocess) -> None:
        super().__init__()
        self.model = model
        c, crop = pre.in_chans, pre.crop_size
        if pre.normalize == "mean_image":
            assert pre.mean_image is not None
            mean = center_crop(pre.mean_image.permute(2, 0, 1), crop)[None]
            std = torch.ones(1, c, 1, 1)
        else:
            mean = torch.tensor(pre.mean).view(1, c, 1, 1)
            std = torch.tensor(pre.std).view(1, c, 1, 1)
        self.register_buffer("mean", mean.float().contiguous())
        self.register_buffer("std", std.float())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.permute(0, 3, 1, 2).float() - self.mean) / self.std
        return self.model(x).softmax(dim=1)


def onnx_metadata(model: nn.Module, pre: Preprocess, with_preprocess: bool) -> dict[str, str]:
    """What an ONNX file says about itself (its `metadata_props`): model, preset, classes, and
    what its input is."""
    if with_preprocess:
        expects = (
            f"uint8 RGB (N, {pre.crop_size}, {pre.crop_size}, {pre.in_chans}): resize as "
            f"'alexnet.preset' says (resize, image_size) and take the centre crop (when "
            "crop_size exceeds image_size, resize the whole image to crop_size instead); "
            "output: class probabilities"
        )
    else:
        expects = (
            f"float32 (N, {pre.in_chans}, {pre.crop_size}, {pre.crop_size}) in the 0-255 scale, "
            "normalised as 'alexnet.preset' says (mean image or per-channel mean/std, 0-255 "
            "scale); output: logits"
        )
    return {
        "alexnet.model_name": model.model_name,
        "alexnet.model_options": json.dumps(model.model_options, sort_keys=True),
        "alexnet.preset": json.dumps(pre.to_dict(tensors=False), sort_keys=True),
        "alexnet.classes": json.dumps(list(pre.classes)),
        "alexnet.input": expects,
    }


def export_onnx(
    model: nn.Module,
    path: str | Path,
    pre: Preprocess | None = None,
    *,
    with_preprocess: bool = False,
    check: bool = True,
) -> float | None:
    """Write ONNX with a dynamic batch and, given `pre`, the preset and class names in its
    metadata (`with_preprocess`: normalisation and softmax inside the graph, uint8 in);
    return the onnxruntime max abs diff (None: no runtime)."""
    model = model.eval().cpu()
    path = Path(path)
    net: nn.Module = traceable(model)
    example = example_input(model, 1)
    if with_preprocess:
        if pre is None:
            raise ValueError("an export with preprocessing needs the weights' preset")
        net = WithPreprocess(net, pre).eval()
        example = example_image(pre, 1)
    output = "probabilities" if with_preprocess else "logits"
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            net,
            (example,),
            str(tmp),
            input_names=["input"],
            output_names=[output],
            dynamic_axes={"input": {0: "batch"}, output: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    if pre is not None:
        import onnx  # optional: the `onnx` extra

        proto = onnx.load(str(tmp))
        for key, value in onnx_metadata(model, pre, with_preprocess).items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(tmp))
    tmp.replace(path)
    if not check:
        return None
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    x = example_image(pre, 3, seed=1) if with_preprocess else example_input(model, 3, seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run([output], {"input": x.numpy()})
    with torch.inference_mode():
        want = net(x).float()
    return float((torch.from_numpy(out) - want).abs().max())


def example_image(pre: Preprocess, batch: int, seed: int = 0) -> torch.Tensor:
    """Random uint8 crops (batch, crop, crop, C): the input of an export with preprocessing."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, pre.crop_size, pre.crop_size, pre.in_chans)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


def export_torchscript(model: nn.Module, path: str | Path) -> float:
    """Trace to TorchScript, save, reload and return the max abs diff on a fresh batch."""
    model = model.eval().cpu()
    path = Path(path)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit announces its deprecation
        traced = torch.jit.trace(traceable(model), (example_input(model, 1),))
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")
        x = example_input(model, 3, seed=1)
        return float((loaded(x).float() - _reference(model, x)).abs().max())


def export_safetensors(model: nn.Module, pre: object, path: str | Path) -> Path:
    """Exactly the model's state dict (strict-loadable), with the metadata header for predict."""
    return save_weights(path, model, pre, with_mean_image=False)  # type: ignore[arg-type]
