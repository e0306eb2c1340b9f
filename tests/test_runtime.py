"""alexnet.runtime: precision choice, autocast, model preparation, threads."""

import pytest
import torch
from torch import nn

from alexnet import runtime

CPU = torch.device("cpu")


def _flags(monkeypatch: pytest.MonkeyPatch, flags: set[str]) -> None:
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(flags))


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "fma"}, "fp32"),
        ({"avx512f", "avx512bw"}, "fp32"),  # AVX-512 without bf16 dot products
        ({"avx512f", "avx512_bf16"}, "bf16"),
        ({"avx512f", "amx_tile", "amx_bf16"}, "bf16"),
    ],
)
def test_best_precision_follows_cpu_flags(monkeypatch, flags, expected):
    _flags(monkeypatch, flags)
    assert runtime.best_precision(CPU) == expected


def test_cpu_flags_read_this_machine():
    flags = runtime.cpu_flags()
    # Every x86-64 CPU that can run torch's wheels has SSE2; other machines read no flags.
    assert not flags or "sse2" in flags or "fp" in flags


def test_autocast_fp32_keeps_float32_and_bf16_casts_matmuls():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with runtime.autocast(CPU, "fp32"):
        assert (a @ b).dtype == torch.float32
    with runtime.autocast(CPU, "bf16"):
        out = a @ b
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), a @ b, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("bad", ["fp16", "BF16", ""])
def test_unknown_precision_is_named(bad):
    with pytest.raises(ValueError, match=repr(bad)):
        runtime.autocast(CPU, bad)
    with pytest.raises(ValueError, match=repr(bad)):
        runtime.prepare_model(nn.Linear(2, 2), CPU, bad)


def test_prepare_model_channels_last_fp32_and_same_outputs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3)).double()
    x = torch.randn(2, 3, 9, 9)
    expected = net.float()(x)
    prepared = runtime.prepare_model(net, CPU, "fp32")
    for p in prepared.parameters():
        assert p.dtype == torch.float32
    assert prepared[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not prepared[0].weight.is_contiguous()
    xl = x.to(memory_format=runtime.memory_format(CPU, "fp32"))
    torch.testing.assert_close(prepared(xl), expected, rtol=1e-5, atol=1e-5)


def test_prepare_inference_model_bf16_weights():
    net = runtime.prepare_inference_model(nn.Sequential(nn.Conv2d(3, 2, 3)), CPU, "bf16")
    assert not net.training
    assert net[0].weight.dtype == torch.bfloat16
    net32 = runtime.prepare_inference_model(nn.Sequential(nn.Conv2d(3, 2, 3)), CPU, "fp32")
    assert net32[0].weight.dtype == torch.float32


def test_configure_threads_sets_and_rejects(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert runtime.configure_threads(1) == 1
        assert torch.get_num_threads() == 1
        assert runtime.configure_threads() == runtime.available_cpus()
        with pytest.raises(ValueError, match="0"):
            runtime.configure_threads(0)
    finally:
        torch.set_num_threads(before)


def test_configure_threads_reads_omp_env(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        assert runtime.configure_threads() == 1
    finally:
        torch.set_num_threads(before)
