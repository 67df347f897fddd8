"""Randomised comparison with torch: hypothesis draws shapes, options, dtype
and memory layout for convolution and every pooling op, and pycnn must agree
with torch forward and backward (tolerances in checks.py)."""
import pytest
import torch
import torch.nn.functional as TF

from pycnn import functional as F
from checks import DTYPES, compare_with_torch, make_view

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings, strategies as st  # noqa: E402

LAYOUTS = ["contiguous", "channels_last", "sliced", "transposed_hw", "channel_slice"]
common = settings(max_examples=100, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _seed(data):
    torch.manual_seed(data.draw(st.integers(0, 2 ** 31 - 1), label="seed"))


@st.composite
def conv_problems(draw):
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 5))
    c_out = groups * draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    same = draw(st.booleans()) and draw(st.booleans())
    if same:
        stride, padding = (1, 1), "same"
        ph = pw = 0
    else:
        stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        ph, pw = draw(st.integers(0, 4)), draw(st.integers(0, 4))
        padding = (ph, pw)
    # Inputs at least as large as the padded, dilated kernel.
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 24))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 24))
    return dict(n=draw(st.integers(0, 3)), c_in=c_in, c_out=c_out, h=h, w=w, kernel=(kh, kw),
                options=dict(stride=stride, padding=padding, dilation=(dh, dw), groups=groups),
                bias=draw(st.booleans()), layout=draw(st.sampled_from(LAYOUTS)),
                dtype=draw(st.sampled_from(DTYPES)))


@common
@given(problem=conv_problems(), data=st.data())
def test_conv2d(problem, data):
    _seed(data)
    p = problem
    x, prepare = make_view(p["layout"], (p["n"], p["c_in"], p["h"], p["w"]))
    inputs = dict(input=x,
                  weight=torch.randn(p["c_out"], p["c_in"] // p["options"]["groups"], *p["kernel"],
                                     dtype=torch.float64, requires_grad=True),
                  bias=torch.randn(p["c_out"], dtype=torch.float64, requires_grad=True)
                  if p["bias"] else None)
    options = p["options"]
    compare_with_torch(
        lambda input, weight, bias: F.conv2d(prepare(input), weight, bias, **options),
        lambda input, weight, bias: TF.conv2d(prepare(input), weight, bias, **options),
        inputs, p["dtype"], what=f"conv2d {p}")


@st.composite
def pool_problems(draw, avg):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    dilation = (1, 1) if avg else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 20))
    w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 20))
    options = dict(kernel_size=(kh, kw), stride=stride, padding=padding,
                   ceil_mode=draw(st.booleans()))
    if avg:
        options.update(count_include_pad=draw(st.booleans()),
                       divisor_override=draw(st.one_of(st.none(), st.integers(1, 9))))
    else:
        options.update(dilation=dilation)
    return dict(shape=(draw(st.integers(0, 3)), draw(st.integers(1, 9)), h, w), options=options,
                layout=draw(st.sampled_from(LAYOUTS)), dtype=draw(st.sampled_from(DTYPES)),
                special=not avg and draw(st.booleans()))


def _special_values(x):
    """Ties, NaN and infinities, which max pooling must resolve as torch does."""
    with torch.no_grad():
        x.copy_(torch.randint(-3, 4, x.shape).to(x.dtype))
        x[torch.rand_like(x) < 0.1] = float("-inf")
        x[torch.rand_like(x) < 0.05] = float("nan")
        x[torch.rand_like(x) < 0.05] = float("inf")


def has_empty_window(size, kernel, stride, padding, dilation, ceil_mode):
    """Whether some output window has no tap inside the input (possible with
    dilation): test_max_pool2d.py::test_window_without_valid_taps covers those."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return any(all(not 0 <= o * stride - padding + j * dilation < size for j in range(kernel))
               for o in range(out))


@common
@given(problem=pool_problems(avg=False), data=st.data())
def test_max_pool2d(problem, data):
    _seed(data)
    o = problem["options"]
    stride = o["stride"] or o["kernel_size"]
    for i in range(2):
        assume(not has_empty_window(problem["shape"][2 + i], o["kernel_size"][i], stride[i],
                                    o["padding"][i], o["dilation"][i], o["ceil_mode"]))
    x, prepare = make_view(problem["layout"], problem["shape"])
    if problem["special"]:
        _special_values(x)
    options = problem["options"]
    compare_with_torch(
        lambda input: F.max_pool2d(prepare(input), return_indices=True, **options),
        lambda input: TF.max_pool2d(prepare(input), return_indices=True, **options),
        dict(input=x), problem["dtype"], linear=False, what=f"max_pool2d {problem}")


@common
@given(problem=pool_problems(avg=True), data=st.data())
def test_avg_pool2d(problem, data):
    _seed(data)
    x, prepare = make_view(problem["layout"], problem["shape"])
    options = problem["options"]
    compare_with_torch(
        lambda input: F.avg_pool2d(prepare(input), **options),
        lambda input: TF.avg_pool2d(prepare(input), **options),
        dict(input=x), problem["dtype"], what=f"avg_pool2d {problem}")


@st.composite
def adaptive_problems(draw):
    size = st.one_of(st.none(), st.integers(1, 12))
    return dict(shape=(draw(st.integers(0, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 15)),
                       draw(st.integers(1, 15))),
                output_size=(draw(size), draw(size)), kind=draw(st.sampled_from(["avg", "max"])),
                layout=draw(st.sampled_from(LAYOUTS)), dtype=draw(st.sampled_from(DTYPES)),
                special=draw(st.booleans()))


@common
@given(problem=adaptive_problems(), data=st.data())
def test_adaptive_pool2d(problem, data):
    _seed(data)
    x, prepare = make_view(problem["layout"], problem["shape"])
    size = problem["output_size"]
    if problem["kind"] == "avg":
        ours = lambda input: F.adaptive_avg_pool2d(prepare(input), size)
        ref = lambda input: TF.adaptive_avg_pool2d(prepare(input), size)
    else:
        if problem["special"]:
            _special_values(x)
        ours = lambda input: F.adaptive_max_pool2d(prepare(input), size, return_indices=True)
        ref = lambda input: TF.adaptive_max_pool2d(prepare(input), size, return_indices=True)
    compare_with_torch(ours, ref, dict(input=x), problem["dtype"], linear=problem["kind"] == "avg",
                       what=f"adaptive pool {problem}")
