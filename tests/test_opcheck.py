"""torch.library.opcheck for every pycnn op, forward and backward, with
several argument sets each (schema, autograd registration, fake kernel
against the real one, AOT dispatch with dynamic shapes), and the fake
kernels on meta tensors."""
import pytest
import torch

import pycnn  # noqa: F401  (registers the ops)
from checks import channels_last

ops = torch.ops.pycnn


def t(*shape, grad=True, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype).requires_grad_(grad)


def conv_cases():
    cases = []
    for x, w, b, stride, padding, dilation, groups in [
        (t(2, 4, 8, 9), t(6, 4, 3, 3), t(6), [1], [0], [1], 1),
        (t(2, 4, 8, 9), t(6, 2, 3, 2), t(6), [1, 2], [1, 0], [2, 1], 2),
        (channels_last(t(1, 6, 7, 7)), t(6, 1, 3, 3), None, [2], [1], [1], 6),
        (t(0, 3, 5, 5), t(4, 3, 1, 1), t(4), [1], [0], [1], 1),
    ]:
        cases.append(("conv2d", (x, w, b, stride, padding, dilation, groups)))
        cases.append(("conv2d_relu", (x, w, b, stride, padding, dilation, groups)))
        out = torch.nn.functional.conv2d(x, w, b, stride, padding, dilation, groups).detach()
        g = torch.randn_like(out).requires_grad_()
        conv_args = (stride, padding, dilation, groups)
        cases.append(("conv2d_input_backward", (g, w, list(x.shape), *conv_args)))
        cases.append(("conv2d_weight_backward", (g, x, list(w.shape), *conv_args)))
        cases.append(("conv2d_bias_backward", (g,)))
    # Trailing arguments left at their schema defaults.
    cases.append(("conv2d", (t(1, 3, 6, 6), t(2, 3, 3, 3), None)))
    cases.append(("conv2d", (t(1, 3, 6, 6), t(2, 3, 3, 3), t(2), [2])))
    cases.append(("conv2d_relu", (t(1, 3, 6, 6), t(2, 3, 3, 3), None)))
    return cases


def max_pool_cases():
    cases = []
    for x, kernel, stride, padding, dilation, ceil_mode in [
        (t(2, 3, 9, 10), [2], [], [0], [1], False),
        (t(2, 3, 9, 10), [3, 2], [2, 1], [1, 1], [1, 2], True),
        (channels_last(t(1, 8, 7, 7)), [3], [2], [1], [1], True),
    ]:
        args = (kernel, stride, padding, dilation, ceil_mode)
        cases.append(("max_pool2d_with_indices", (x, *args)))
        cases.append(("max_pool2d", (x, *args)))
        out, idx = torch.nn.functional.max_pool2d(x, kernel, stride or None, padding, dilation,
                                                  ceil_mode, return_indices=True)
        g = torch.randn_like(out).requires_grad_()
        cases.append(("max_pool2d_backward", (g, idx, list(x.shape), *args)))
    cases.append(("max_pool2d_with_indices", (t(1, 2, 6, 6), [2])))
    cases.append(("max_pool2d_with_indices", (t(1, 2, 6, 6), [3], [2], [1])))
    cases.append(("max_pool2d", (t(1, 2, 6, 6), [3], [2], [1])))
    return cases


def avg_pool_cases():
    cases = []
    for x, kernel, stride, padding, ceil_mode, count_include_pad, divisor in [
        (t(2, 3, 9, 10), [2], [], [0], False, True, None),
        (t(2, 3, 9, 10), [3], [2], [1], True, False, None),
        (channels_last(t(1, 8, 7, 7)), [3, 2], [1], [1, 0], False, True, 3),
    ]:
        args = (kernel, stride, padding, ceil_mode, count_include_pad, divisor)
        cases.append(("avg_pool2d", (x, *args)))
        out = torch.nn.functional.avg_pool2d(x, kernel, stride or None, padding, ceil_mode,
                                             count_include_pad, divisor).detach()
        g = torch.randn_like(out).requires_grad_()
        cases.append(("avg_pool2d_backward", (g, list(x.shape), *args)))
    cases.append(("avg_pool2d", (t(1, 2, 6, 6), [2])))
    cases.append(("avg_pool2d", (t(1, 2, 6, 6), [3], [2], [1], True)))
    return cases


def adaptive_cases():
    cases = []
    for x, size in [(t(2, 3, 9, 10), [3, 4]), (t(2, 3, 9, 10), [1, 1]),
                    (channels_last(t(1, 8, 5, 7)), [7, 9])]:
        cases.append(("adaptive_avg_pool2d", (x, size)))
        g = t(*x.shape[:2], *size)
        cases.append(("adaptive_avg_pool2d_backward", (g, list(x.shape))))
        cases.append(("adaptive_max_pool2d", (x, size)))
        _, idx = torch.nn.functional.adaptive_max_pool2d(x, size, return_indices=True)
        cases.append(("adaptive_max_pool2d_backward", (g, idx, list(x.shape))))
    return cases


CASES = conv_cases() + max_pool_cases() + avg_pool_cases() + adaptive_cases()


def case_id(case):
    name, args = case
    shapes = "-".join("x".join(map(str, a.shape)) for a in args if isinstance(a, torch.Tensor))
    return f"{name}-{shapes}-{len(args)}args"


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{case_id(c)}" for i, c in enumerate(CASES)])
def test_opcheck(case):
    name, args = case
    torch.library.opcheck(getattr(ops, name).default, args)


def test_every_op_is_opchecked():
    checked = {name for name, _ in CASES}
    assert checked == set(ALL_OPS)


ALL_OPS = ["conv2d", "conv2d_relu", "conv2d_input_backward", "conv2d_weight_backward", "conv2d_bias_backward",
           "max_pool2d_with_indices", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
           "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "adaptive_max_pool2d",
           "adaptive_max_pool2d_backward"]


def _to_meta(value):
    return value.detach().to("meta") if isinstance(value, torch.Tensor) else value


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{case_id(c)}" for i, c in enumerate(CASES)])
def test_meta_matches_cpu(case):
    """On meta tensors the fake kernel runs: same shapes, dtypes and strides
    as the CPU kernel's results, also with defaulted trailing arguments."""
    name, args = case
    op = getattr(ops, name).default
    with torch.no_grad():
        real = op(*args)
        fake = op(*[_to_meta(a) for a in args])
    real = real if isinstance(real, tuple) else (real,)
    fake = fake if isinstance(fake, tuple) else (fake,)
    for r, f in zip(real, fake, strict=True):
        assert f.device.type == "meta"
        assert (f.shape, f.dtype) == (r.shape, r.dtype)
        if r.numel() > 1:
            assert f.stride() == r.stride(), f"{name}: meta strides {f.stride()}, cpu {r.stride()}"
