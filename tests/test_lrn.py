"""The fused LRN (section 3.3) against the float64 formula, nn.LocalResponseNorm, gradcheck."""

import os
import signal

import pytest
import torch
from torch import nn

from alexnet.models import lrn
from alexnet.models.lrn import LocalResponseNorm, local_response_norm

CL = torch.channels_last


def reference(x: torch.Tensor, size: int, alpha: float, beta: float, k: float, groups: int = 1):
    """b_c = a_c / (k + alpha/n * sum_{c'=c-n//2}^{c+(n-1)//2} a_c'^2)^beta, per group, float64."""
    a = x.double()
    cg = a.shape[1] // groups
    out = torch.empty_like(a)
    for c in range(a.shape[1]):
        first = (c // cg) * cg
        lo, hi = max(first, c - size // 2), min(first + cg - 1, c + (size - 1) // 2)
        total = sum(a[:, j] ** 2 for j in range(lo, hi + 1))
        out[:, c] = a[:, c] / (k + alpha / size * total) ** beta
    return out


def assert_matches_formula(x, size, alpha, beta, k, groups=1):
    out = local_response_norm(x, size, alpha, beta, k, groups)
    torch.testing.assert_close(
        out.double(), reference(x, size, alpha, beta, k, groups), rtol=2e-6, atol=1e-5
    )


def sample(shape, dtype=torch.float32, fmt=torch.contiguous_format, seed=0, scale=20.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    return x.relu().to(dtype).contiguous(memory_format=fmt)


PARAMS = [
    (5, 1e-4, 0.75, 2.0),  # section 3.3, PyTorch's convention
    (5, 5e-4, 0.75, 2.0),  # the printed formula's alpha
    (5, 1e-2, 0.75, 1.0),  # Caffe's k, a large alpha so the window matters
    (4, 1e-2, 0.6, 1.5),  # even window (asymmetric) and beta != 3/4 (the general power)
    (1, 1e-1, 0.5, 0.5),
]


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
@pytest.mark.parametrize("groups", [1, 2])
def test_values_match_float64_formula(params, fmt, groups):
    x = sample((2, 12, 5, 7), torch.float32, fmt)
    out = local_response_norm(x, *params, groups=groups)
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=fmt)
    assert_matches_formula(x, *params, groups)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
def test_float64_is_exact(fmt):
    x = sample((2, 10, 4, 3), torch.float64, fmt)
    out = local_response_norm(x, 5, 1e-2, 0.75, 2.0, groups=2)
    torch.testing.assert_close(out, reference(x, 5, 1e-2, 0.75, 2.0, 2), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
def test_bfloat16_in_bfloat16_out_within_rounding(fmt):
    x = sample((2, 16, 6, 5), torch.bfloat16, fmt)
    out = local_response_norm(x, 5, 1e-2, 0.75, 2.0)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=fmt)
    # The formula on the same bf16 inputs; the only extra error is the output's rounding (2^-8).
    torch.testing.assert_close(out.double(), reference(x, 5, 1e-2, 0.75, 2.0), rtol=4e-3, atol=1e-2)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
def test_matches_nn_local_response_norm_values_and_grads(fmt):
    x = sample((3, 20, 6, 6), torch.float32, fmt).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    out = LocalResponseNorm(5, 1e-3, 0.75, 2.0)(x)
    expected = nn.LocalResponseNorm(5, 1e-3, 0.75, 2.0)(x_ref)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
@pytest.mark.parametrize(("size", "beta", "groups"), [(5, 0.75, 2), (4, 0.6, 1), (2, 0.75, 3)])
def test_gradcheck_float64(fmt, size, beta, groups):
    x = sample((2, 6, 3, 4), torch.float64, fmt, scale=3.0).add_(0.1).requires_grad_()
    fn = lambda t: local_response_norm(t, size, 0.5, beta, 1.5, groups)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-8)


def test_float32_and_bfloat16_gradients_match_float64_autograd():
    x64 = sample((2, 12, 5, 5), torch.float64, CL).requires_grad_()
    grad = torch.randn(x64.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    reference(x64, 5, 1e-2, 0.75, 2.0, 2).backward(grad)
    for dtype, tol in [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)]:
        x = x64.detach().to(dtype).contiguous(memory_format=CL).requires_grad_()
        local_response_norm(x, 5, 1e-2, 0.75, 2.0, groups=2).backward(grad.to(dtype))
        assert x.grad.dtype == dtype
        torch.testing.assert_close(x.grad.double(), x64.grad, rtol=tol, atol=tol)


def test_groups_never_mix_towers():
    x = sample((2, 8, 3, 3))
    out = local_response_norm(x, 5, 1e-1, 0.75, 1.0, groups=2)
    for half in (slice(0, 4), slice(4, 8)):
        alone = local_response_norm(x[:, half].contiguous(), 5, 1e-1, 0.75, 1.0)
        torch.testing.assert_close(out[:, half], alone, rtol=0, atol=0)


def test_other_ranks_and_strided_input():
    x3 = sample((2, 9, 11))  # (N, C, L), as nn.LocalResponseNorm allows
    assert_matches_formula(x3, 3, 1e-2, 0.75, 1.0)
    x = sample((2, 16, 5, 5))[:, ::2]  # neither NCHW- nor NHWC-dense
    assert_matches_formula(x, 5, 1e-2, 0.75, 1.0)


def test_threads_split_the_work_without_changing_bits():
    x = sample((4, 16, 40, 40), torch.float32, CL)  # 400 tiles: enough for two threads
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = local_response_norm(x, 5, 1e-2, 0.75, 2.0)
        torch.set_num_threads(2)
        two = local_response_norm(x, 5, 1e-2, 0.75, 2.0)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_autocast_bfloat16_training_step_flows():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), LocalResponseNorm(5, 1e-4, 0.75, 2.0))
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    assert out.dtype == torch.bfloat16
    out.float().square().mean().backward()
    assert torch.isfinite(net[0].weight.grad).all() and net[0].weight.grad.abs().sum() > 0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"\(4, 5\)"):
        local_response_norm(torch.zeros(4, 5), 5)
    with pytest.raises(ValueError, match="groups=3"):
        local_response_norm(torch.zeros(1, 8, 2, 2), 5, groups=3)
    with pytest.raises(ValueError, match="size=0"):
        local_response_norm(torch.zeros(1, 8, 2, 2), 0)


def test_torch_fallback_matches_kernel(monkeypatch):
    x = sample((2, 12, 4, 5), torch.float32, CL).requires_grad_()
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    fast = local_response_norm(x, 5, 1e-2, 0.75, 2.0, 2)
    fast.backward(grad)
    fast_grad, x.grad = x.grad, None
    monkeypatch.setattr(lrn, "_kernel", lambda: None)
    assert lrn.lrn_backend() == "torch"
    slow = local_response_norm(x, 5, 1e-2, 0.75, 2.0, 2)
    slow.backward(grad)
    torch.testing.assert_close(slow, fast, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x.grad, fast_grad, rtol=1e-5, atol=1e-7)


def test_kernel_builds_into_cache_and_missing_compiler_falls_back(monkeypatch, tmp_path):
    monkeypatch.delenv("ALEXNET_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(lrn, "_state", {})
    assert lrn.lrn_backend() == "cpp"
    assert len(list((tmp_path / "alexnet").glob("kernels/lrn-*.so"))) == 1
    monkeypatch.setattr(lrn, "_state", {})
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
    with pytest.warns(UserWarning, match="no-such-compiler"):
        assert lrn.lrn_backend() == "torch"
    x = sample((1, 6, 2, 2))
    assert_matches_formula(x, 5, 1e-2, 0.75, 2.0)


def test_empty_batch_and_forked_child():
    empty = torch.zeros(0, 8, 3, 3, requires_grad=True)
    out = local_response_norm(empty, 5)
    out.sum().backward()
    assert out.shape == empty.shape and empty.grad.shape == empty.shape
    x = sample((4, 16, 40, 40))  # 400 tiles: two threads
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        local_response_norm(x, 5, 1e-2, 0.75, 2.0)  # starts the thread pool
        pid = os.fork()
        if pid == 0:  # the child gets working threads, not the parent's (absent) ones
            signal.alarm(30)  # libgomp is not fork-safe: the child runs no torch op
            ok = lrn._pool().submit(lambda: 1).result(timeout=20) == 1
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        torch.set_num_threads(before)
    assert os.waitstatus_to_exitcode(status) == 0
