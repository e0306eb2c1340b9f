"""Reduced-precision inference: the model as fp32, bf16 weights, or int8 through onnxruntime.

Quantization is a property of the model and its runtime, never of preprocessing: every net
built here takes the batches `Preprocess.center` / `ten_crop` make (float32 NCHW, normalised as
the weights' preset says) and returns float32 logits or features on the CPU.

- fp32 and bf16 run the PyTorch model (`alexnet.runtime.prepare_inference_model`: bf16 stores
  the weights in bf16, which pays only where the CPU has fast bf16: AMX or AVX512-BF16).
- int8 runs onnxruntime's static quantization (QDQ, weights int8 per output channel,
  activations uint8 with ranges calibrated on images from the run's data) of the ONNX export:
  every convolution and fc6-fc8 as int8 kernels; LRN, the softmax and what else has no int8
  kernel stay float between dequantize and quantize nodes. PyTorch's own int8 path
  (torch.ao.quantization) is deprecated in favour of torchao, which is not installed here.
  Without VNNI (AVX2 only) uint8 x int8 products can saturate their 16-bit pair sums, so
  there the weights use 7 bits (`reduce_range`), as onnxruntime's documentation advises.
  The int8 graph is cached per weights and calibration images (`cached_int8`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet import runtime
from alexnet.cache import cache_dir
from alexnet.data.preset import Preprocess
from alexnet.data.store import open_store
from alexnet.fileio import atomic_path
from alexnet.infer.export import OPSET, export_onnx
from alexnet.infer.features import prepared_splits
from alexnet.train.weights import run_data_spec

PRECISIONS = ("fp32", "bf16", "int8", "auto")
CALIBRATION_IMAGES = 128  # what docs/speed.md measured with; calibration time grows with it
# The layers with int8 kernels worth having: the convolutions and fc6-fc8. LRN's squares and
# sums (exported as Mul, Pow, AveragePool) stay float: 256 levels cannot span their range.
INT8_OPS = ("Conv", "Gemm", "MatMul")
# fc6-fc8 (Gemm) give float outputs (QGemm still multiplies in int8): 256 levels for the
# logits cost top-1 (CIFAR-10, 120-step run: 0.2956 against fp32's 0.2991; float outputs 0.3008).
EXTRA_OPTIONS = {"OpTypesToExcludeOutputQuantization": ["Gemm"]}
_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def check_precision(precision: str) -> str:
    """`precision` itself, or a ValueError naming the accepted values."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> bf16 where the device has fast bf16, else fp32 (int8 costs accuracy, so it is
    never chosen for the user); any other value is checked and returned."""
    if check_precision(precision) == "auto":
        return runtime.best_precision(device)
    if precision == "int8" and torch.device(device).type != "cpu":
        raise ValueError(f"--precision int8 runs on the CPU (onnxruntime), not on {device}")
    return precision


def has_vnni() -> bool:
    """Whether the CPU multiplies uint8 by int8 without saturating 16-bit sums (VNNI/AMX)."""
    return bool(runtime.cpu_flags() & _VNNI_FLAGS)


class TorchNet(nn.Module):
    """The PyTorch model at fp32 or bf16, fed in the layout and dtype that run fastest there
    (`precision` None: the model as it is, inputs moved to its device and dtype)."""

    def __init__(self, model: nn.Module, device: torch.device, precision: str | None) -> None:
        super().__init__()
        if precision is not None:
            # A copy: prepare_inference_model casts in place and the caller keeps its net.
            model = runtime.prepare_inference_model(copy.deepcopy(model), device, precision)
        first = next(model.parameters())
        self.model = model.eval()
        self.device, self.dtype = first.device, first.dtype
        self.layout = (
            runtime.memory_format(self.device, precision) if precision else torch.preserve_format
        )
        self.num_classes = model.num_classes

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, self.dtype).contiguous(memory_format=self.layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self._input(x)).float()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(self._input(x)).float()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(self._input(x)).float()


class Embedder(nn.Module):
    """`model.embed` as the forward pass, so that the export holds the feature graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        for name in ("model_name", "model_options", "input_size", "in_chans", "num_classes"):
            setattr(self, name, getattr(model, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x)


def onnxruntime_module():  # -> the onnxruntime module
    """onnxruntime, or a one-line error naming the extra that installs it."""
    try:
        import onnxruntime.quantization  # optional: the `onnx` extra
    except ImportError:
        raise ValueError("int8 inference needs onnxruntime: pip install 'alexnet[onnx]'") from None
    return onnxruntime


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over fixed float32 batches."""

    def __init__(self, name: str, batches: Sequence[np.ndarray]) -> None:
        self.name, self.batches = name, iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.name: batch}


def quantize_onnx(src: Path, dst: Path, calibration: Sequence[np.ndarray]) -> None:
    """Static int8 quantization of the ONNX file `src` into `dst` (QDQ, per-channel int8
    weights, uint8 activations; ranges from min/max over `calibration`, float32 NCHW batches)."""
    q = onnxruntime_module().quantization
    with tempfile.TemporaryDirectory() as tmp:
        # Constant folding and shape inference first: without them the exporter's computed
        # biases are no initializers and the int8 logits drift (6% of their spread, not 0.5%).
        prepped = Path(tmp) / "prepped.onnx"
        q.quant_pre_process(str(src), str(prepped), skip_symbolic_shape=True)
        q.quantize_static(
            str(prepped),
            str(dst),
            _Reader("input", calibration),
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            reduce_range=not has_vnni(),
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=q.CalibrationMethod.MinMax,
            op_types_to_quantize=list(INT8_OPS),
            extra_options=EXTRA_OPTIONS,
        )


def session(path: Path, *, optimize: bool = True, profile_prefix: str | None = None):
    """An onnxruntime CPU session with torch's thread count (`optimize` False: QDQ nodes run as
    float ops, the reference the fused int8 kernels are checked against; `profile_prefix`:
    per-operator times, written by `end_profiling()`)."""
    ort = onnxruntime_module()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if profile_prefix:
        opts.enable_profiling, opts.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def int8_key(model: nn.Module, calibration: Sequence[np.ndarray], head: str) -> str:
    """What an int8 graph is a function of: the weights, the calibration images, the graph
    asked for, and what decides how it is quantized (onnxruntime's version, VNNI, the ops)."""
    h = hashlib.sha256()
    settings = [model.model_name, model.model_options, head, INT8_OPS, EXTRA_OPTIONS, OPSET]
    settings.append(has_vnni())
    settings.append(onnxruntime_module().__version__)
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for batch in calibration:
        h.update(np.ascontiguousarray(batch).tobytes())
    return h.hexdigest()[:32]


def cached_int8(model: nn.Module, calibration: Sequence[np.ndarray], head: str) -> Path:
    """The int8 ONNX of `model` (logits, or fc7 for `head="features"`), quantized once per
    weights and calibration into <cache>/int8/: export and calibration take seconds (tens of
    them for the 227-px net), the cached file loads in well under one."""
    path = (
        cache_dir()
        / "int8"
        / f"{model.model_name}-{head}-{int8_key(model, calibration, head)}.onnx"
    )
    if not path.is_file():
        net = Embedder(model) if head == "features" else model
        with tempfile.TemporaryDirectory() as tmp, atomic_path(path, mkdir=True) as out:
            fp32_path = Path(tmp) / "fp32.onnx"
            export_onnx(net, fp32_path, check=False)
            quantize_onnx(fp32_path, out, calibration)
    return path


def onnx_session(
    model: nn.Module,
    calibration: Sequence[np.ndarray],
    *,
    head: str = "logits",
    int8: bool = True,
    profile_prefix: str | None = None,
):
    """An onnxruntime session of `model`'s logits (`head="features"`: fc7): int8 from the
    cache (`cached_int8`), or the fp32 export."""
    if int8:
        return session(cached_int8(model, calibration, head), profile_prefix=profile_prefix)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        export_onnx(Embedder(model) if head == "features" else model, fp32_path, check=False)
        return session(fp32_path, profile_prefix=profile_prefix)


class Int8Net(nn.Module):
    """The model quantized to int8 by onnxruntime: logits (`forward`) or features (`embed`),
    each graph exported and quantized on its first use."""

    def __init__(self, model: nn.Module, calibration: Sequence[np.ndarray]) -> None:
        super().__init__()
        onnxruntime_module()  # the missing extra is one line before any work
        self.fp32 = model.eval().cpu()
        self.calibration = calibration
        self.num_classes = model.num_classes
        self._sessions: dict[str, object] = {}

    def _run(self, head: str, x: torch.Tensor) -> torch.Tensor:
        if head not in self._sessions:
            self._sessions[head] = onnx_session(self.fp32, self.calibration, head=head)
        (out,) = self._sessions[head].run(None, {"input": x.float().cpu().numpy()})
        return torch.from_numpy(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run("logits", x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self._run("features", x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("int8 inference gives logits and fc7 features, not conv features")


def export_int8_onnx(
    model: nn.Module, path: Path, pre: Preprocess, calibration: Sequence[np.ndarray]
) -> tuple[float, float]:
    """Write the int8 ONNX of `model` (logits; the preset and classes in its metadata) and
    return (top-1 agreement with the fp32 PyTorch model, max abs logit difference) on the
    calibration images: real images, where random inputs would say little about int8."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        export_onnx(model, fp32_path, pre, check=False)
        quantize_onnx(fp32_path, Path(path), calibration)
    int8 = session(Path(path))
    agree, total, diff = 0, 0, 0.0
    with torch.inference_mode():
        for batch in calibration:
            want = model.eval().cpu()(torch.from_numpy(batch)).float()
            (got,) = int8.run(None, {"input": batch})
            agree += int((torch.from_numpy(got).argmax(1) == want.argmax(1)).sum())
            total += len(batch)
            diff = max(diff, float((torch.from_numpy(got) - want).abs().max()))
    return agree / total, diff


def calibration_batches(
    pre: Preprocess, store_dir: Path, *, count: int = CALIBRATION_IMAGES, batch_size: int = 16
) -> list[np.ndarray]:
    """`count` images drawn (seed 0) from a prepared store, centre crops preprocessed by the
    weights' preset, in float32 NCHW batches."""
    store = open_store(store_dir)
    if len(store) == 0:
        raise ValueError(f"{store_dir}: no images to calibrate int8 ranges on")
    rng = np.random.default_rng(0)
    picks = np.sort(rng.choice(len(store), size=min(count, len(store)), replace=False))
    crops = [pre.center(store.image(int(i))) for i in picks]
    return [
        torch.stack(crops[s : s + batch_size]).numpy() for s in range(0, len(crops), batch_size)
    ]


def for_inference(
    model: nn.Module,
    precision: str,
    device: torch.device,
    calibration: Sequence[np.ndarray] | None = None,
) -> nn.Module:
    """The net to run at `precision` (fp32, bf16, int8 or auto); int8 needs `calibration`."""
    precision = resolve_precision(precision, device)
    if precision != "int8":
        return TorchNet(model, device, precision)
    if not calibration:
        raise ValueError("--precision int8 needs calibration images (--calibrate DATA)")
    return Int8Net(model, calibration)


def as_inference_net(model: nn.Module) -> nn.Module:
    """`model` itself when `for_inference` built it, else the plain model run as it is."""
    return model if isinstance(model, TorchNet | Int8Net) else TorchNet(model, "cpu", None)


def calibration_data(weights: str, pre: Preprocess, spec: str | None) -> list[np.ndarray]:
    """Calibration batches from `spec` (a data spec, as `alexnet train --data` takes), else
    from the data the run `weights` was trained on (its config.yaml); its train split when
    there is one."""
    if spec is None and Path(weights).is_dir():
        spec = run_data_spec(Path(weights))
    if spec is None:
        raise ValueError(
            f"--precision int8: {weights} names no training data to calibrate on; "
            "pass --calibrate DATA (a prepared dir, an image folder, fashion-mnist or cifar10)"
        )
    splits = prepared_splits(spec, pre.image_size)
    name = next((s for s in ("train", "val", "test") if s in splits), None)
    if name is None:
        raise ValueError(f"--calibrate {spec}: no prepared split found")
    return calibration_batches(pre, splits[name])
