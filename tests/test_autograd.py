"""The ops' autograd formulas (csrc/ops/autograd/): registered in C++ for
every op, gradients right for every subset of inputs that asks for them, and
no gradient work for the outputs that have none (max pooling's indices)."""
import itertools

import pytest
import torch
import torch.nn.functional as TF

from pycnn import functional as F

OPS = ["conv2d", "conv2d_input_backward", "conv2d_weight_backward", "conv2d_bias_backward",
       "max_pool2d_with_indices", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
       "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "adaptive_max_pool2d",
       "adaptive_max_pool2d_backward"]


@pytest.mark.parametrize("name", OPS)
def test_every_op_has_an_autograd_kernel(name):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"pycnn::{name}", "Autograd")


@pytest.mark.parametrize("call", [
    lambda x: F.conv2d(x, torch.randn(4, 3, 3, 3, dtype=x.dtype)),
    lambda x: F.max_pool2d(x, 2),
    lambda x: F.avg_pool2d(x, 2),
    lambda x: F.adaptive_avg_pool2d(x, 3),
    lambda x: F.adaptive_max_pool2d(x, 3),
], ids=["conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"])
def test_the_graph_node_is_the_cpp_formula(call):
    # A Python formula (torch.library.register_autograd) would show up as
    # GeneratedBackwardFor_pycnn_*, costing 20-40 us of interpreter per call.
    out = call(torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True))
    assert "CppNode<pycnn::autograd::" in out.grad_fn.name()


@pytest.mark.parametrize("flags", list(itertools.product([False, True], repeat=3)),
                         ids=lambda f: "".join("xwb"[i] if on else "-" for i, on in enumerate(f)))
def test_conv2d_gradients_for_each_subset_of_inputs(flags):
    """The forward keeps only what the gradients that can be asked for read
    (input for grad_weight, weight for grad_input), and bias is a graph input
    only when present: every combination must still give torch's gradients."""
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    ours = [t.clone().requires_grad_(on) for t, on in zip((x, w, b), flags)]
    theirs = [t.clone().requires_grad_(on) for t, on in zip((x, w, b), flags)]
    out = F.conv2d(*ours, stride=(1, 2), padding=1, groups=2)
    ref = TF.conv2d(*theirs, stride=(1, 2), padding=1, groups=2)
    torch.testing.assert_close(out, ref)
    assert out.requires_grad == any(flags)
    if not any(flags):
        return
    g = torch.randn_like(ref)
    wanted = [t for t, on in zip(ours, flags) if on]
    expected = [t for t, on in zip(theirs, flags) if on]
    for got, exp in zip(torch.autograd.grad(out, wanted, g), torch.autograd.grad(ref, expected, g)):
        torch.testing.assert_close(got, exp)


def test_conv2d_without_bias_gives_input_and_weight_gradients():
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    got = torch.autograd.grad(F.conv2d(x, w), (x, w), g)
    expected = torch.autograd.grad(TF.conv2d(x, w), (x, w), g)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("pool", [
    lambda x: F.max_pool2d(x, 3, 2, 1, return_indices=True),
    lambda x: F.adaptive_max_pool2d(x, (3, 4), return_indices=True),
], ids=["max_pool2d", "adaptive_max_pool2d"])
def test_max_pool_backward_with_the_indices_also_returned(pool):
    """The indices are an output without a gradient; autograd must neither
    ask for one nor fail when the forward returned them to the caller."""
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    out, indices = pool(x)
    assert not indices.requires_grad
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, g)
    expected = torch.zeros_like(x).flatten(2).scatter_add_(2, indices.flatten(2), g.flatten(2))
    torch.testing.assert_close(grad, expected.view_as(x))


def test_no_graph_under_no_grad_and_inference_mode():
    x = torch.randn(1, 3, 6, 6, requires_grad=True)
    w = torch.randn(2, 3, 3, 3, requires_grad=True)
    with torch.no_grad():
        assert not F.conv2d(x, w).requires_grad
        assert not F.max_pool2d(x, 2).requires_grad
    with torch.inference_mode():
        assert not F.conv2d(x, w).requires_grad
        assert not F.avg_pool2d(x, 2).requires_grad
