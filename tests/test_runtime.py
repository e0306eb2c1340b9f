"""alexnet.runtime: precision choice, autocast, model preparation, threads."""

import os
import subprocess
import sys

import pytest
import torch
import yaml
from torch import nn

from alexnet import allocator, cli, runtime
from alexnet.data.prepare import prepare
from alexnet.train.config import make_config, validate

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


@pytest.mark.parametrize(
    ("flags", "kind"),
    [({"avx2", "fma"}, "avx2"), ({"avx512f", "avx2"}, "avx512"), ({"amx_bf16", "avx512f"}, "amx")],
)
def test_layout_rule_names_the_cpu_kind_and_job(monkeypatch, flags, kind):
    _flags(monkeypatch, flags)
    assert runtime.cpu_kind() == kind
    reasons = set()
    for job in runtime.JOBS:
        layout = runtime.choose_layout(CPU, "fp32", job)
        assert layout.name == "channels_last" and f"fp32 {job}" in layout.reason
        assert layout.memory_format == torch.channels_last
        reasons.add(layout.reason)
    assert len(reasons) == 2  # each job has its own figures (or says it has none)


def test_layout_override_and_devices():
    assert runtime.choose_layout(CPU, "bf16", "train", "nchw").name == "nchw"
    assert runtime.choose_layout(CPU, "bf16", "train", "nchw").reason == "--memory-format"
    cuda = torch.device("cuda")  # a device object only: no GPU is needed to decide
    assert runtime.choose_layout(cuda, "fp32").name == "nchw"
    assert runtime.choose_layout(cuda, "bf16").name == "channels_last"
    assert runtime.memory_format(CPU, "fp32", "nchw") == torch.contiguous_format
    with pytest.raises(ValueError, match="'nhwc' is not one of auto, nchw, channels_last"):
        runtime.choose_layout(CPU, "fp32", "train", "nhwc")
    with pytest.raises(ValueError, match="job"):
        runtime.choose_layout(CPU, "fp32", "serve")


def test_prepare_model_nchw_override_keeps_the_default_layout():
    net = nn.Sequential(nn.Conv2d(3, 4, 3))
    prepared = runtime.prepare_model(net, CPU, "fp32", "nchw")
    assert prepared[0].weight.is_contiguous()
    net = runtime.prepare_inference_model(nn.Sequential(nn.Conv2d(3, 4, 3)), CPU, "fp32", "nchw")
    assert net[0].weight.is_contiguous()


@pytest.mark.parametrize("requested", ["auto", "nchw"])
def test_train_prints_and_records_the_memory_format(tmp_path, capsys, requested):
    data, out = tmp_path / "data", tmp_path / "run"
    prepare("synthetic:16:8:2", data, size=16, workers=1, quiet=True)
    argv = ["train", "--data", str(data), "--out", str(out), "--model", "cifar_fig1",
            "--model-option", "input_size=12", "--batch-size", "8", "--max-steps", "1",
            "--quiet", "--precision", "fp32", "--device", "cpu",
            "--memory-format", requested]  # fmt: skip
    assert cli.main(argv) == 0
    chosen = runtime.choose_layout(CPU, "fp32", "train", requested)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["memory_format"] == chosen.name
    assert config["recipe"]["memory_format"] == chosen.reason
    assert f"memory format {chosen.name}: {chosen.reason}" in capsys.readouterr().out
    with pytest.raises(ValueError, match="memory_format 'nhwc'"):
        validate(make_config({"memory_format": "nhwc"}))


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


# The allocator re-exec (alexnet.allocator, called by alexnet.cli.main).


class _Exec(Exception):
    pass


@pytest.fixture
def fake_exec(monkeypatch, tmp_path):
    """Record os.execve instead of running it; pretend tcmalloc is installed but not loaded."""
    calls = []

    def execve(path, args, env):
        calls.append((path, args, env))
        raise _Exec

    lib = tmp_path / "libtcmalloc_minimal.so.4"
    lib.write_bytes(b"")
    monkeypatch.setattr(allocator.os, "execve", execve)
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: str(lib))
    monkeypatch.setattr(allocator, "loaded_allocator", lambda: "default")
    for name in (allocator.NO_TCMALLOC, "ALEXNET_TCMALLOC_REEXEC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LD_PRELOAD", "libother.so")
    return calls, str(lib)


def test_reexec_preloads_tcmalloc_once(fake_exec, monkeypatch):
    calls, lib = fake_exec
    with pytest.raises(_Exec):
        allocator.reexec_with_tcmalloc()
    path, args, env = calls[0]
    assert path == sys.executable and args == [sys.executable, *sys.orig_argv[1:]]
    assert env["LD_PRELOAD"] == f"{lib}:libother.so"
    monkeypatch.setattr(allocator.os, "environ", env)  # the re-executed process
    allocator.reexec_with_tcmalloc()
    assert len(calls) == 1


def test_reexec_switched_off_loaded_or_absent(fake_exec, monkeypatch):
    calls, _ = fake_exec
    monkeypatch.setenv(allocator.NO_TCMALLOC, "1")
    allocator.reexec_with_tcmalloc()
    monkeypatch.delenv(allocator.NO_TCMALLOC)
    monkeypatch.setattr(allocator, "loaded_allocator", lambda: "tcmalloc")
    allocator.reexec_with_tcmalloc()
    monkeypatch.setattr(allocator, "loaded_allocator", lambda: "default")
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)
    allocator.reexec_with_tcmalloc()
    assert calls == []


def test_cli_reexecs_only_from_the_command_line(fake_exec, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    calls, _ = fake_exec
    assert cli.main(["list-models"]) == 0  # called from Python: never replaces the caller
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["alexnet", "list-models"])
    with pytest.raises(_Exec):
        cli.main()
    assert len(calls) == 1


@pytest.mark.skipif(allocator.find_tcmalloc() is None, reason="tcmalloc not installed")
@pytest.mark.parametrize(("switch", "expected"), [(None, "tcmalloc"), ("1", "default")])
def test_reexec_really_loads_tcmalloc(switch, expected):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALEXNET_")}
    env.pop("LD_PRELOAD", None)
    if switch:
        env[allocator.NO_TCMALLOC] = switch
    code = (
        "from alexnet import allocator as a; a.reexec_with_tcmalloc(); print(a.loaded_allocator())"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == expected, out.stderr


def test_prepare_process_sets_passive_wait_unless_chosen(fake_exec, monkeypatch):
    calls, _ = fake_exec
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with pytest.raises(_Exec):
        allocator.prepare_process()
    assert calls[0][2]["OMP_WAIT_POLICY"] == "PASSIVE"  # reaches the re-executed process
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv(allocator.NO_TCMALLOC, "1")
    allocator.prepare_process()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
