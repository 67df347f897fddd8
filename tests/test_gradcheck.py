"""torch.autograd.gradcheck and gradgradcheck (double backward is registered)
in float64 on small shapes, for every op and a spread of its options, through
pycnn.functional and through the backward ops themselves."""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from pycnn import functional as F
from checks import channels_last

ops = torch.ops.pycnn


def t(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def distinct(*shape):
    """Values at least 0.1 apart, so that finite differences (eps 1e-6) never
    move a max-pooling window's maximum."""
    n = torch.Size(shape).numel()
    return (torch.randperm(n, dtype=torch.float64) * 0.1 - n * 0.05).view(shape).requires_grad_()


def check_both(fn, inputs):
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


CONV_CASES = [
    (dict(), (2, 3, 5, 6), (2, 3, 3, 3), True),
    (dict(stride=2, padding=1), (1, 2, 6, 5), (3, 2, 3, 2), True),
    (dict(stride=(1, 2), padding=(2, 0), dilation=(2, 1)), (1, 2, 5, 6), (2, 2, 2, 3), False),
    (dict(groups=2, padding=1), (1, 4, 4, 5), (4, 2, 3, 3), True),
    (dict(groups=3, padding="same"), (1, 3, 4, 4), (3, 1, 2, 3), True),   # depthwise, even kernel
    (dict(padding="valid", stride=3), (2, 2, 7, 7), (2, 2, 1, 1), False),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: str(c[0]) or "default")
def test_conv2d(case):
    options, x_shape, w_shape, bias = case
    inputs = (t(*x_shape), t(*w_shape), t(w_shape[0]) if bias else None)
    check_both(lambda x, w, b: F.conv2d(x, w, b, **options), inputs)


def test_conv2d_channels_last():
    inputs = (channels_last(t(1, 3, 5, 5)).detach().requires_grad_(), t(2, 3, 3, 3), t(2))
    check_both(lambda x, w, b: F.conv2d(x, w, b, padding=1), inputs)


def test_conv2d_backward_ops():
    """The backward ops differentiated on their own (their autograd formulas)."""
    x, w = t(1, 4, 5, 6), t(4, 2, 3, 3)
    args = ([2, 1], [1, 1], [1, 2], 2)
    out = ops.conv2d(x, w, None, *args)
    g = torch.randn_like(out, requires_grad=True)
    check_both(lambda g, w: ops.conv2d_input_backward(g, w, list(x.shape), *args), (g, w))
    check_both(lambda g, x: ops.conv2d_weight_backward(g, x, list(w.shape), *args), (g, x))
    check_both(lambda g: ops.conv2d_bias_backward(g), (g,))


MAX_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), dilation=(2, 1)),
]


@pytest.mark.parametrize("options", MAX_CASES, ids=str)
def test_max_pool2d(options):
    check_both(lambda x: F.max_pool2d(x, **options), (distinct(2, 2, 6, 7),))


@pytest.mark.parametrize("output_size", [(1, 1), (3, 2), (4, 9)], ids=str)
def test_adaptive_max_pool2d(output_size):
    check_both(lambda x: F.adaptive_max_pool2d(x, output_size), (distinct(2, 2, 5, 6),))


AVG_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), divisor_override=5),
]


@pytest.mark.parametrize("options", AVG_CASES, ids=str)
def test_avg_pool2d(options):
    check_both(lambda x: F.avg_pool2d(x, **options), (t(2, 2, 6, 7),))


@pytest.mark.parametrize("output_size", [(1, 1), (3, 2), (4, 9), (None, 3)], ids=str)
def test_adaptive_avg_pool2d(output_size):
    check_both(lambda x: F.adaptive_avg_pool2d(x, output_size), (t(2, 2, 5, 6),))


def test_pool_backward_ops():
    """The pooling backward ops differentiated on their own."""
    x = distinct(1, 2, 6, 5)
    args = ([3], [2], [1], [1], True)
    out, idx = ops.max_pool2d_with_indices(x, *args)
    g = torch.randn_like(out, requires_grad=True)
    check_both(lambda g: ops.max_pool2d_backward(g, idx, list(x.shape), *args), (g,))

    avg_args = ([3], [2], [1], True, False, None)
    g = torch.randn_like(ops.avg_pool2d(x, *avg_args), requires_grad=True)
    check_both(lambda g: ops.avg_pool2d_backward(g, list(x.shape), *avg_args), (g,))

    g = t(1, 2, 4, 3)
    check_both(lambda g: ops.adaptive_avg_pool2d_backward(g, list(x.shape)), (g,))
    _, idx = ops.adaptive_max_pool2d(x, [4, 3])
    check_both(lambda g: ops.adaptive_max_pool2d_backward(g, idx, list(x.shape)), (g,))
