"""Export and interop: ONNX / TorchScript parity, safetensors strict round trip, release files,
and torchvision's alexnet state-dict layout in both directions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from alexnet.cli import main
from alexnet.infer.export import example_input, export_onnx, export_torchscript
from alexnet.infer.release import release
from alexnet.models import create_model, list_models
from alexnet.models.pretrained.torchvision import export_torchvision_state_dict
from alexnet.train.weights import load_weights
from test_infer_helpers import make_run, tiny_model


def torchvision_alexnet(num_classes: int = 1000) -> nn.Module:
    """torchvision.models.AlexNet as its source defines it (torchvision is not installable here)."""

    class AlexNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(64, 192, kernel_size=5, padding=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(192, 384, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
            )
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(p=0.5),
                nn.Linear(256 * 6 * 6, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p=0.5),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Linear(4096, num_classes),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return AlexNet().eval()


def _rel_diff(diff: float, model: nn.Module) -> float:
    with torch.no_grad():
        scale = model(example_input(model, 3, seed=1)).abs().max().item()
    return diff / max(scale, 1e-6)


def _check_onnx_and_torchscript(model: nn.Module, tmp_path: Path) -> None:
    onnx_diff = export_onnx(model, tmp_path / "m.onnx")
    assert onnx_diff is not None and _rel_diff(onnx_diff, model) < 1e-4
    import onnx

    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [model.in_chans, model.input_size, model.input_size]
    assert _rel_diff(export_torchscript(model, tmp_path / "m.ts"), model) < 1e-5


def test_onnx_and_torchscript_parity_small_nets(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    _check_onnx_and_torchscript(tiny_model("alexnet"), tmp_path)  # LRN, groups
    _check_onnx_and_torchscript(tiny_model("cifar_conv_local"), tmp_path)  # locally connected


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_onnx_and_torchscript_parity_every_model_at_its_size(name: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    _check_onnx_and_torchscript(create_model(name).eval(), tmp_path)


def test_safetensors_holds_exactly_the_state_dict(tmp_path: Path) -> None:
    model = tiny_model("alexnet")
    run = make_run(tmp_path / "run", model, mean_image=False)
    out = tmp_path / "w.safetensors"
    assert main(["export", str(run), "--format", "safetensors", "--out", str(out)]) == 0
    state = load_file(str(out))
    fresh = create_model(model.model_name, **model.model_options)
    fresh.load_state_dict(state, strict=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in fresh.state_dict().items())
    _, pre, meta = load_weights(out)  # the header makes it usable by predict too
    assert pre.normalize == "channel" and meta["model_name"] == "alexnet"


def test_state_dict_only_export_of_a_mean_image_net_says_what_to_use(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    out = tmp_path / "w.safetensors"
    assert main(["export", str(run), "--format", "safetensors", "--out", str(out)]) == 0
    with pytest.raises(ValueError, match="alexnet release"):
        load_weights(out)


def test_release_is_named_by_hash_and_predicts_like_the_run(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    path = release(run, tmp_path / "rel")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.name == f"alexnet-{digest[:8]}.safetensors"
    assert release(run, tmp_path / "rel2").name == path.name  # same checkpoint, same bytes
    (m1, p1, _), (m2, p2, meta) = load_weights(run), load_weights(path)
    assert torch.equal(p1.mean_image, p2.mean_image) and p1.classes == p2.classes
    assert meta["metrics"]["last_epoch"]["val_top1_err"] == pytest.approx(0.52)
    assert meta["config"] == {"lr": 0.01}  # the recipe travels with the weights
    img = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    with torch.no_grad():
        assert torch.equal(m1(p1.center(img)[None]), m2(p2.center(img)[None]))


def test_torchvision_state_dict_imports_strictly_with_its_preprocessing(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tv = torchvision_alexnet()
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(tv.state_dict(), path)
    model, pre, meta = load_weights(path)
    assert meta["kind"] == "torchvision" and model.model_name == "alexnet_owt"
    assert (pre.image_size, pre.crop_size, pre.classes[0]) == (256, 224, "tench")
    np.testing.assert_allclose(np.array(pre.mean) / 255, [0.485, 0.456, 0.406], rtol=1e-6)
    x = example_input(model, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x), rtol=1e-5, atol=1e-5)
    # and back: the exported file loads strictly into torchvision's layout
    back = tmp_path / "back.pth"
    assert main(["export", str(path), "--format", "torchvision", "--out", str(back)]) == 0
    state = torch.load(back, weights_only=True)
    assert list(state) == list(tv.state_dict())
    torchvision_alexnet().load_state_dict(state, strict=True)


def test_torchvision_layout_errors_name_the_file(tmp_path: Path) -> None:
    state = torchvision_alexnet().state_dict()
    del state["features.10.bias"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"broken\.pth.*features\.10\.bias"):
        load_weights(path)
    with pytest.raises(ValueError, match="only alexnet_owt"):
        export_torchvision_state_dict(tiny_model("alexnet"), tmp_path / "x.pth")


def test_torchvision_itself_where_installed(tmp_path: Path) -> None:
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    tv = tvm.alexnet().eval()
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    model, _, _ = load_weights(tmp_path / "tv.pth")
    x = example_input(model, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x), rtol=1e-5, atol=1e-5)


def test_export_command_reports_parity(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("onnxruntime")
    run = make_run(tmp_path / "run", tiny_model("alexnet"))
    for fmt in ("onnx", "torchscript"):
        out = tmp_path / f"m.{fmt}"
        assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
        assert out.stat().st_size > 1_000_000
        assert "parity: max abs diff" in capsys.readouterr().out
