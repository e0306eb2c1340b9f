"""alexnet bench: timing, FLOP counts, interleaving, the baselines, the Trainer's step, the LRN
swap, the targets and the command itself from a runtime-only install."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alexnet import runtime
from alexnet.bench import kernels, run, timing, workloads
from alexnet.bench.text import format_results
from alexnet.models import create_model
from alexnet.models.lrn import LocalResponseNorm, ReferenceLRN, with_reference_lrn
from alexnet.train.loop import Trainer

CPU = torch.device("cpu")
IMAGE_227 = torch.zeros(1, 3, 227, 227)


def test_median_seconds_calls_warmup_plus_repeats():
    calls = []
    seconds = timing.median_seconds(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and 0 <= seconds < 0.1
    with pytest.raises(ValueError, match="repeats"):
        timing.median_seconds(lambda: None, repeats=0)


def test_forward_flops_of_the_paper_net_from_its_layer_table():
    # Section 3.5 / figure 2: (output positions, maps, inputs per map) of every learned layer;
    # conv2, conv4, conv5 see one tower (half the maps) only.
    layers = [
        (55 * 55, 96, 11 * 11 * 3),
        (27 * 27, 256, 5 * 5 * 48),
        (13 * 13, 384, 3 * 3 * 256),
        (13 * 13, 384, 3 * 3 * 192),
        (13 * 13, 256, 3 * 3 * 192),
        (1, 4096, 9216),
        (1, 4096, 4096),
        (1, 1000, 4096),
    ]
    expected = 2 * sum(p * m * k for p, m, k in layers)
    model = create_model("alexnet").eval()
    assert timing.forward_flops(model, IMAGE_227) == expected
    assert 1.4e9 < expected < 1.5e9  # the usual "0.72 G multiply-adds" of AlexNet


def test_train_flops_of_the_paper_net_is_the_issues_4_14_gflop():
    # float64 formula: forward, weight gradients (= forward) and input gradients (= forward)
    # except conv1's (the images need none): 3 F - F_conv1 per 227-pixel training image.
    conv1 = 2.0 * 55 * 55 * 96 * 11 * 11 * 3
    forward = np.float64(timing.forward_flops(create_model("alexnet").eval(), IMAGE_227))
    expected = 3 * forward - conv1
    got = timing.train_flops(create_model("alexnet").eval(), IMAGE_227)
    assert got == expected and round(expected / 1e9, 2) == 4.14


def test_interleaved_calls_one_of_each_side_per_round():
    calls = []
    sides = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    times = timing.interleaved(sides, rounds=3, warmup=1)
    assert calls == list("abc") + list("abc") * 3  # warm-up, then round by round
    assert {k: len(v) for k, v in times.items()} == dict.fromkeys("abc", 3)
    with pytest.raises(ValueError, match="rounds"):
        timing.interleaved(sides, rounds=0)


def test_summarise_pairs_ratios_by_round():
    # Round 2 is twice as slow for everyone (drift): paired ratios cancel it, medians of
    # unpaired times would not.
    times = {"naive": [2.0, 4.0, 2.2], "fast": [1.0, 2.0, 1.0], "matmul": [0.5, 1.0, 0.5]}
    flops = {"naive": 100, "fast": 100, "matmul": 200}
    rows, ceiling = run.summarise(times, flops, {"naive": 4, "fast": 4, "matmul": 4})
    fast = next(r for r in rows if r["label"] == "fast")
    assert fast["x_naive"] == pytest.approx(2.0)  # median of 2.0, 2.0, 2.2
    assert fast["img_s"] == pytest.approx(4 / 1.0)
    assert fast["of_ceiling"] == pytest.approx(0.25)  # (100/1) / (200/0.5) in every round
    assert ceiling == pytest.approx(200 / 0.5 / 1e9)
    assert all(r["label"] != "matmul" for r in rows)


def test_naive_net_is_the_paper_net_as_plain_sequential():
    naive = workloads.naive_alexnet(99)
    assert isinstance(naive, torch.nn.Sequential)
    assert not any(isinstance(m, LocalResponseNorm) for m in naive.modules())
    assert any(isinstance(m, torch.nn.LocalResponseNorm) for m in naive.modules())
    x = torch.zeros(1, 3, 99, 99)
    paper = create_model("alexnet", input_size=99).eval()
    assert timing.layer_flops(naive.eval(), x) == timing.layer_flops(paper, x)
    assert naive(x).shape == (1, 1000)


def test_reference_lrn_swap_keeps_outputs_and_removes_the_fused_layers():
    torch.manual_seed(0)
    model = create_model("alexnet", input_size=99).eval()
    x = torch.randn(2, 3, 99, 99) * 50
    with torch.no_grad():
        fused = model(x)
        swapped = with_reference_lrn(model)
        assert not any(isinstance(m, LocalResponseNorm) for m in swapped.modules())
        assert any(isinstance(m, torch.nn.LocalResponseNorm) for m in swapped.modules())
        torch.testing.assert_close(swapped(x), fused, rtol=1e-4, atol=1e-5)


def test_reference_lrn_runs_bf16_input_in_float32_per_tower():
    x = torch.rand(2, 8, 3, 3, dtype=torch.bfloat16) * 10
    out = ReferenceLRN(5, 1e-2, 0.75, 2.0, groups=2)(x)
    assert out.dtype == torch.bfloat16
    halves = x.double().chunk(2, dim=1)
    expected = torch.cat([F.local_response_norm(h, 5, 1e-2, 0.75, 2.0) for h in halves], dim=1)
    torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_bench_times_the_trainers_own_fused_step(layout):
    model = workloads.build("alexnet", CPU, "fp32", layout, input_size=99)
    batch = workloads.synthetic_batch(model, 2)
    trainer = workloads.trainer(model, CPU, "fp32", layout, batch)
    assert isinstance(trainer, Trainer) and trainer.optimizer.defaults["fused"]
    assert trainer.memory_format == runtime.Layout(layout, "").memory_format
    before = model.conv1.weight.detach().clone()
    workloads.trainer_step(trainer, workloads.repeat(batch))()
    # momentum starts at the gradient: w1 = w0 - lr (g + wd w0), lr and wd the config's
    grad = model.conv1.weight.grad
    cfg = trainer.config
    expected = before.double() - cfg.lr * (grad.double() + cfg.weight_decay * before.double())
    torch.testing.assert_close(model.conv1.weight.detach().double(), expected)


def test_kernel_benchmark_reports_every_field():
    row = kernels.lrn_seconds((2, 8, 5, 5), "bf16", repeats=1, groups=2)
    assert set(row) == {"fused", "nn", "floor"} and all(v > 0 for v in row.values())


def _table(precision: str, batch: int, rows: dict[str, dict]) -> dict:
    layout = {"chosen": "channels_last", "reason": "r", "channels_last_x_nchw": 1.1}
    out = [{"label": label, **row} for label, row in rows.items()]
    return {"precision": precision, "batch": batch, "rows": out, "layout": layout}


def _results(of_ceiling: float, x_naive: float, lrn_gain: float, share: float) -> dict:
    train = [
        _table("fp32", 128, {"alexnet fp32 channels_last": {"of_ceiling": of_ceiling,
                                                            "x_naive": x_naive}}),
        _table("bf16", 128, {"alexnet bf16 channels_last": {}}) | {"lrn_gain": lrn_gain},
    ]  # fmt: skip
    infer = [
        _table("bf16", b, {"alexnet bf16 channels_last": {"img_s": 1000.0, "latency_ms": 8.0}})
        for b in (1, 64)
    ]
    data = {"rows": [{"label": "prepared store + paper augmentation", "img_s": 210.0}]}
    return {"train": train, "infer": infer, "data": data, "lrn_share": share}


def test_targets_read_the_tables():
    met = {t["target"]: t["met"] for t in run.targets(_results(0.8, 1.6, 4.0, 0.05), "bf16")}
    assert all(met.values()), met
    met = [t["met"] for t in run.targets(_results(0.5, 1.4, 3.0, 0.2), "bf16")]
    assert met == [False, False, True, False, False, True, True]


# Run in the bench's subprocess: the dev extras (and pytest) cannot be imported, as in a
# runtime-only install.
BLOCK_DEV_EXTRAS = """
import runpy, sys
# None in sys.modules is how Python spells "not installed" to both `import` (ImportError) and
# importlib.util.find_spec (None), which torch uses to probe for optional packages.
for name in ("skimage", "cv2", "onnx", "onnxruntime", "tensorboard", "pytest"):
    sys.modules[name] = None
sys.argv = ["alexnet", "bench", "--quick", "--json"]
runpy.run_module("alexnet", run_name="__main__")
"""


@pytest.mark.slow
def test_bench_quick_completes_from_a_runtime_only_install(tmp_path):
    # no re-exec under tcmalloc: it would start a fresh interpreter without the blocks
    env = {**os.environ, "ALEXNET_CACHE": str(tmp_path), "ALEXNET_NO_TCMALLOC": "1"}
    cmd = [sys.executable, "-c", BLOCK_DEV_EXTRAS]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout)
    assert results["machine"]["photos"] == "procedural"  # scikit-image was unimportable
    assert results["machine"]["lrn_backend"] == "cpp"
    fast = runtime.has_fast_bf16(CPU)
    assert [t["precision"] for t in results["train"]] == (["fp32", "bf16"] if fast else ["fp32"])
    for table in results["train"] + results["infer"]:
        labels = [row["label"] for row in table["rows"]]
        p = table["precision"]
        assert labels[:2] == [f"alexnet {p} channels_last", f"alexnet {p} nchw"]
        assert run.BASELINES["naive"] in labels and run.BASELINES["owt"] in labels
        assert all(row["img_s"] > 0 and row["of_ceiling"] > 0 for row in table["rows"])
    assert 0 < results["lrn_share"] < 1
    shares = results["step_shares"][results["machine"]["best_precision"]]
    assert shares["convolution"] > 0 and sum(shares.values()) == pytest.approx(1, abs=0.02)
    assert len(results["targets"]) == 7 and len(results["lrn"]) == (4 if fast else 2)
    text = format_results(results)
    assert "batch 2, 1 round per table" in text and "input 99 px" in text
    assert "issue" not in text
