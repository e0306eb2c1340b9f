"""alexnet bench: timing, FLOP counts, the nn-LRN swap, the targets and the command itself."""

import json
import os
import subprocess
import sys

import pytest
import torch

from alexnet.bench import kernels, run, timing, workloads
from alexnet.bench.text import format_results
from alexnet.models import create_model
from alexnet.models.lrn import LocalResponseNorm

CPU = torch.device("cpu")


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
    assert timing.forward_flops(model, torch.zeros(1, 3, 227, 227)) == expected
    assert 1.4e9 < expected < 1.5e9  # the usual "0.72 G multiply-adds" of AlexNet


def test_nn_lrn_swap_keeps_outputs_and_removes_the_fused_layers():
    torch.manual_seed(0)
    model = create_model("alexnet", input_size=99).eval()
    x = torch.randn(2, 3, 99, 99) * 50
    with torch.no_grad():
        fused = model(x)
        swapped = workloads.with_nn_lrn(model)
        assert not any(isinstance(m, LocalResponseNorm) for m in swapped.modules())
        assert any(isinstance(m, torch.nn.LocalResponseNorm) for m in swapped.modules())
        torch.testing.assert_close(swapped(x), fused, rtol=1e-4, atol=1e-5)


def test_nn_lrn_runs_bf16_input_in_float32():
    x = torch.rand(2, 8, 3, 3, dtype=torch.bfloat16) * 10
    out = workloads.NNLocalResponseNorm(5, 1e-2, 0.75, 2.0)(x)
    assert out.dtype == torch.bfloat16
    expected = torch.nn.functional.local_response_norm(x.double(), 5, 1e-2, 0.75, 2.0)
    torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=1e-2)


def test_train_step_updates_weights_and_counts_images():
    model = workloads.build("alexnet_owt", CPU, "fp32", input_size=99)
    before = model.features[0].weight.detach().clone()
    batches = workloads.synthetic_batches(model, 2, CPU, torch.channels_last)
    rate = workloads.train_rate(model, batches, 2, CPU, "fp32", repeats=1)
    assert not torch.equal(model.features[0].weight, before)
    assert rate["img_s"] == pytest.approx(2 / rate["step_s"])
    assert rate["gflops"] > 0


def test_kernel_benchmarks_report_every_field():
    assert kernels.matmul_gflops(CPU, "fp32", 64, repeats=2) > 0
    row = kernels.lrn_seconds((2, 8, 5, 5), "bf16", repeats=1, groups=2)
    assert set(row) == {"fused", "nn", "floor"} and all(v > 0 for v in row.values())


def _results(store_img_s: float, base_img_s: float, nn_img_s: float, share: float) -> dict:
    train = [
        {"label": "baseline", "precision": "fp32", "img_s": base_img_s, "gflops": 10.0},
        {"label": "alexnet bf16", "precision": "bf16", "img_s": 4 * nn_img_s, "gflops": 40.0},
        {"label": "alexnet bf16, store", "precision": "bf16", "img_s": store_img_s, "gflops": 30},
        {
            "label": "alexnet bf16, nn.LocalResponseNorm",
            "precision": "bf16",
            "img_s": nn_img_s,
            "gflops": 10.0,
        },
    ]
    infer = [
        {
            "precision": p,
            "batch": b,
            "img_s": 1000.0 if p == "bf16" else 200.0,
            "latency_ms": 8.0 if p == "bf16" else 20.0,
        }
        for p in ("fp32", "bf16")
        for b in (1, 64)
    ]
    return {
        "train": train,
        "infer": infer,
        "lrn_share": share,
        "matmul_gflops": {"fp32": 100.0, "bf16": 400.0},
    }


def test_ratios_and_targets():
    results = _results(store_img_s=210.0, base_img_s=60.0, nn_img_s=50.0, share=0.05)
    run.ratios(results, "bf16")
    assert results["train"][2]["x_baseline"] == pytest.approx(3.5)
    assert results["train"][1]["of_ceiling"] == pytest.approx(0.1)
    assert results["lrn_gain"] == pytest.approx(4.0)
    met = {t["target"]: t["met"] for t in run.targets(results, "bf16")}
    assert all(met.values()), met
    results = _results(store_img_s=150.0, base_img_s=60.0, nn_img_s=50.0, share=0.2)
    run.ratios(results, "bf16")
    met = [t["met"] for t in run.targets(results, "bf16")]
    assert met == [False, True, False, False, True, True]


@pytest.mark.slow
def test_bench_command_quick_json(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "alexnet", "bench", "--quick", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout)
    best = results["machine"]["best_precision"]
    labels = [r[0].format(p=best) for r in run.TRAIN_ROWS]
    assert [row["label"] for row in results["train"]] == labels
    fast = "bf16" in results["matmul_gflops"]  # bf16 is timed only with fast bf16
    assert all(
        row["img_s"] > 0 and row["gflops"] > 0
        for row in results["train"]
        if fast or row["precision"] == "fp32"
    )
    assert results["machine"]["lrn_backend"] == "cpp"
    assert 0 < results["lrn_share"] < 1
    assert len(results["targets"]) == 6 and len(results["lrn"]) == (4 if fast else 2)
    text = format_results(results)
    for row in results["train"]:
        assert row["label"] in text or "skipped" in row
    assert "batch 2, 1 repeat per row (median), input 99 px" in text and "issue" not in text
