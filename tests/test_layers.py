"""Layers of alexnet.models.layers against naive definitions and PyTorch's own ops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alexnet.models.layers import LocallyConnected2d, PerTower, out_size
from alexnet.models.lrn import LocalResponseNorm


def naive_local(x: torch.Tensor, layer: LocallyConnected2d) -> torch.Tensor:
    """The definition: every output position has its own filter bank, one dot product each."""
    k, s, p = layer.kernel_size, layer.stride, layer.padding
    xp = F.pad(x, (p, p, p, p))
    oh, ow = layer.output_size
    out = torch.zeros(x.shape[0], layer.out_channels, oh, ow, dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * s : i * s + k, j * s : j * s + k]  # (N, C, k, k)
            w = layer.weight[i * ow + j].reshape(layer.out_channels, layer.in_channels, k, k)
            out[:, :, i, j] = torch.einsum("nchw,ochw->no", patch, w)
            if layer.bias is not None:
                out[:, :, i, j] += layer.bias[:, i, j]
    return out


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "bias"),
    [((8, 8), 3, 1, 1, True), ((7, 9), 3, 2, 0, False), ((5, 6), 2, 1, 1, True)],
)
def test_locally_connected_matches_naive_loop(size, kernel, stride, padding, bias) -> None:
    torch.manual_seed(0)
    layer = LocallyConnected2d(4, 5, size, kernel, stride, padding, bias).double()
    x = torch.randn(3, 4, *size, dtype=torch.float64)
    expected = naive_local(x, layer)
    assert layer(x).shape == expected.shape
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)


def test_locally_connected_weights_are_unshared() -> None:
    """Changing one position's filters changes only that output position."""
    torch.manual_seed(0)
    layer = LocallyConnected2d(2, 3, 6, 3, padding=1)
    x = torch.randn(1, 2, 6, 6)
    before = layer(x).detach()
    with torch.no_grad():
        layer.weight[2 * 6 + 4] += 1.0  # position (2, 4)
    diff = (layer(x).detach() - before).abs().sum(dim=(0, 1))
    assert diff[2, 4] > 0
    diff[2, 4] = 0
    assert torch.all(diff == 0)


def test_locally_connected_rejects_wrong_input_shape() -> None:
    layer = LocallyConnected2d(2, 3, 6, 3, padding=1)
    with pytest.raises(ValueError, match=r"expects \(N, 2, 6, 6\).*\(1, 2, 7, 7\)"):
        layer(torch.zeros(1, 2, 7, 7))
    with pytest.raises(ValueError, match="smaller than kernel_size"):
        LocallyConnected2d(2, 3, 2, 5)


@pytest.mark.parametrize("ceil", [False, True])
@pytest.mark.parametrize(("kernel", "stride", "padding"), [(3, 2, 0), (2, 2, 0), (11, 4, 2)])
def test_out_size_matches_pytorch_pooling(kernel, stride, padding, ceil) -> None:
    """out_size reproduces max_pool2d's output size, ceil_mode included, for many inputs."""
    for size in range(max(kernel - 2 * padding, 1), 40):
        got = out_size(size, kernel, stride, padding, ceil)
        y = F.max_pool2d(torch.zeros(1, 1, size, size), kernel, stride, padding, ceil_mode=ceil)
        assert got == y.shape[-1], (size, kernel, stride, padding, ceil)
    assert out_size(kernel - 2 * padding - 1, kernel, stride, padding) == 0


@pytest.mark.parametrize("lrn_class", [LocalResponseNorm, torch.nn.LocalResponseNorm])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_per_tower_keeps_towers_apart(lrn_class, memory_format) -> None:
    """Each tower is normalised on its own: equal to LRN applied to each half separately
    (our kernel-backed LRN and PyTorch's, the path exporters trace), in either memory layout."""
    torch.manual_seed(0)
    lrn = lrn_class(5, alpha=1e-2, beta=0.75, k=2.0)
    x = (torch.rand(2, 8, 3, 3) * 10).contiguous(memory_format=memory_format).requires_grad_()
    got = PerTower(lrn, 2)(x)
    halves = x.detach().requires_grad_()
    expected = torch.cat([lrn(halves[:, :4]), lrn(halves[:, 4:])], dim=1)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, lrn(x))  # the whole-tensor LRN mixes the towers
    weights = torch.rand_like(got)
    (got * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(x.grad, halves.grad)
