"""pycnn.functional.conv2d and pycnn.nn.Conv2d against torch: output, grad
input, grad weight and grad bias, float64 and float32 (tolerances in checks.py).

The shapes are chosen for the edges of a blocked, vectorised kernel: channel
counts around multiples of 8/16 and below them, widths and heights from 1 to
70 (primes included), every kernel size a fast path might specialise, strides
1-4, dilation, grouped and depthwise convolutions, and every memory layout.
"""
import pytest
import torch
import torch.nn.functional as TF

import pycnn
from pycnn import functional as F
from checks import (DTYPE_IDS, DTYPES, VIEWS, channels_last, compare_with_torch, layout_of,
                    make_view)

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)


def conv_inputs(n, c_in, c_out, h, w, kernel, groups=1, bias=True, grad=True):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    inputs = dict(input=torch.randn(n, c_in, h, w, dtype=torch.float64),
                  weight=torch.randn(c_out, c_in // groups, kh, kw, dtype=torch.float64),
                  bias=torch.randn(c_out, dtype=torch.float64) if bias else None)
    for t in inputs.values():
        if t is not None:
            t.requires_grad_(grad)
    return inputs


def check_conv(dtype, inputs, what="", prepare=lambda x: x, **options):
    """Compares conv2d(prepare(input), weight, bias, **options) with torch's."""
    compare_with_torch(
        lambda input, weight, bias: F.conv2d(prepare(input), weight, bias, **options),
        lambda input, weight, bias: TF.conv2d(prepare(input), weight, bias, **options),
        inputs, dtype, what=f"conv2d {what} {options}")


# ----------------------------------------------------------------------------- options

OPTIONS = [
    dict(),
    dict(stride=2),
    dict(stride=(1, 3)),
    dict(stride=(4, 2), padding=(2, 1)),
    dict(padding=1),
    dict(padding=(0, 3)),
    dict(padding=5),  # more padding than the kernel: windows entirely in the padding
    dict(padding="valid"),
    dict(padding="same"),
    dict(padding="same", dilation=2),
    dict(padding="same", dilation=(1, 3)),
    dict(dilation=2),
    dict(dilation=(3, 1), padding=(3, 0), stride=(1, 2)),
    dict(groups=2),
    dict(groups=3, stride=2, padding=1),
    dict(groups=6),  # depthwise
    dict(groups=6, stride=(2, 3), dilation=2, padding=2),
]


@dtypes
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_options(dtype, bias, options):
    groups = options.get("groups", 1)
    for kernel in [(3, 3), (3, 4), (2, 5)]:  # odd, even and non-square ('same' pads asymmetrically)
        inputs = conv_inputs(2, 6, 2 * groups, 11, 13, kernel, groups=groups, bias=bias)
        check_conv(dtype, inputs, f"kernel={kernel}", **options)


@dtypes
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("options", [dict(padding=1), dict(padding=(2, 1), stride=2),
                                     dict(padding="same", dilation=(1, 2)),
                                     dict(padding=(1, 3), groups=2)],
                         ids=["p1", "p21s2", "same", "groups"])
def test_padding_modes(dtype, padding_mode, options):
    torch_layer = torch.nn.Conv2d(4, 6, (3, 4), padding_mode=padding_mode, dtype=torch.float64,
                                  **options)
    ours_layer = pycnn.nn.Conv2d(4, 6, (3, 4), padding_mode=padding_mode, dtype=dtype, **options)
    # The layers' parameters become the compared inputs: functional_call swaps them in.
    inputs = dict(input=torch.randn(2, 4, 9, 10, dtype=torch.float64, requires_grad=True),
                  weight=torch.randn_like(torch_layer.weight, requires_grad=True),
                  bias=torch.randn_like(torch_layer.bias, requires_grad=True))

    def run(layer):
        return lambda input, weight, bias: torch.func.functional_call(
            layer, {"weight": weight, "bias": bias}, (input,))

    compare_with_torch(run(ours_layer), run(torch_layer), inputs, dtype,
                       what=f"Conv2d padding_mode={padding_mode} {options}")


# ----------------------------------------------------------------------------- blocking

# (batch, c_in, c_out, h, w, kernel, options): channel counts 1, 3, 16, 17, 33,
# 64 and off-by-one around vector and tile widths, primes, 1-wide images,
# kernels 1x1 to 11x11 and non-square, strides 1-4, depthwise and grouped.
BLOCKING = [
    (2, 1, 1, 7, 9, 3, dict(padding=1)),
    (1, 3, 16, 17, 19, 3, dict(padding=1)),
    (2, 16, 17, 9, 11, 3, dict(padding=1)),
    (1, 17, 33, 13, 7, 3, dict(stride=2)),
    (1, 33, 64, 8, 9, 3, dict(padding=1)),
    (1, 64, 64, 6, 7, 3, dict(padding=1)),
    (1, 64, 3, 9, 5, 1, dict()),
    (3, 17, 33, 13, 13, 1, dict()),
    (1, 16, 16, 16, 16, 1, dict(stride=2)),
    (1, 33, 17, 11, 23, 1, dict(stride=(3, 4))),
    (1, 3, 8, 23, 29, 5, dict(padding=2)),
    (1, 16, 17, 12, 12, 5, dict(stride=(2, 3), padding=(1, 2))),
    (1, 3, 16, 29, 31, 7, dict(stride=2, padding=3)),
    (1, 17, 5, 13, 13, 7, dict()),
    (1, 3, 4, 37, 41, 11, dict(stride=4, padding=2)),
    (2, 1, 3, 23, 11, 11, dict(padding=5)),
    (1, 5, 7, 61, 67, (1, 7), dict(padding=(0, 3))),
    (1, 5, 7, 67, 61, (7, 1), dict(padding=(3, 0))),
    (1, 16, 17, 19, 13, (3, 5), dict(stride=(1, 2))),
    (1, 6, 9, 14, 15, (2, 4), dict(stride=3)),
    (1, 7, 16, 31, 5, (11, 3), dict(stride=(4, 1), padding=(5, 1))),
    (1, 3, 5, 70, 70, 3, dict(padding=1)),
    (1, 4, 4, 1, 70, 3, dict(padding=1)),
    (1, 4, 4, 70, 1, 3, dict(padding=1)),
    (1, 4, 4, 1, 1, 3, dict(padding=1)),
    (1, 4, 4, 1, 1, 1, dict()),
    (1, 2, 3, 2, 2, 3, dict(padding=2, stride=3)),
    (2, 3, 3, 53, 47, 3, dict(stride=3, dilation=2)),
    (1, 8, 8, 5, 5, 5, dict()),  # the kernel covers the whole image: one output
    # depthwise: multiplier 1 and 2, channel counts around vector widths
    (2, 16, 16, 13, 14, 3, dict(groups=16, padding=1)),
    (1, 17, 17, 9, 23, 3, dict(groups=17, stride=2, padding=1)),
    (1, 33, 66, 10, 10, 3, dict(groups=33, padding=1)),
    (1, 64, 64, 12, 11, 5, dict(groups=64, padding=2)),
    (1, 32, 32, 15, 15, 7, dict(groups=32, stride=2, padding=3)),
    (1, 24, 24, 16, 17, (1, 5), dict(groups=24, padding=(0, 2))),
    # grouped
    (2, 12, 8, 9, 9, 3, dict(groups=4, padding=1)),
    (1, 34, 66, 7, 8, 3, dict(groups=2)),
    (1, 64, 64, 8, 8, 3, dict(groups=8, padding=1, stride=2)),
    (1, 51, 17, 11, 9, 1, dict(groups=17)),
    # long reductions (in_channels x kernel area past any K block) and wide outputs
    (1, 64, 8, 13, 13, 11, dict(padding=5)),
    (1, 130, 9, 7, 6, 3, dict(padding=1)),
    (1, 8, 130, 6, 7, 3, dict(padding=1)),
    # many images of a few pixels: work split across the batch
    (64, 3, 8, 4, 4, 3, dict(padding=1)),
    (33, 16, 16, 3, 5, 1, dict()),
]


def blocking_id(case):
    n, c_in, c_out, h, w, k, o = case
    opts = "".join(f",{key}={v}" for key, v in o.items())
    return f"{n}x{c_in}x{h}x{w}-{c_out}k{k}{opts}".replace(" ", "")


@dtypes
@pytest.mark.parametrize("case", BLOCKING, ids=blocking_id)
def test_blocking_shapes(dtype, case, cpu_isa):
    n, c_in, c_out, h, w, kernel, options = case
    inputs = conv_inputs(n, c_in, c_out, h, w, kernel, groups=options.get("groups", 1))
    check_conv(dtype, inputs, f"{blocking_id(case)} isa={cpu_isa}", **options)


@dtypes
def test_every_width_and_height(dtype, cpu_isa):
    """Heights 1..70 with widths 70..1: every remainder of every vector and
    tile width, with padding (3x3) and with stride (1x1, stride 2)."""
    for size in range(1, 71):
        check_conv(dtype, conv_inputs(1, 3, 5, size, 71 - size, 3), f"H={size}", padding=1)
        if size % 2:
            check_conv(dtype, conv_inputs(1, 3, 5, 71 - size, size, 1), f"W={size}", stride=2)


DEPTHWISE_CHANNELS = range(1, 71)


@dtypes
def test_every_channel_count(dtype, cpu_isa):
    """Output channels 1..70 with input channels 70..1, and depthwise channel
    counts around every block width: every remainder of a channel block."""
    for channels in range(1, 71):
        check_conv(dtype, conv_inputs(1, 71 - channels, channels, 4, 5, 3), f"c_out={channels}",
                   padding=1)
    for channels in DEPTHWISE_CHANNELS:
        check_conv(dtype, conv_inputs(1, channels, channels, 4, 4, 3, groups=channels),
                   f"depthwise c={channels}", groups=channels, padding=1)


@dtypes
@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("kernel", [1, 2, 3, 5], ids=lambda k: f"k{k}")
def test_strides(dtype, stride, kernel):
    for size in (kernel, kernel + 1, 2 * kernel + 3, 17):
        for padding in sorted({0, kernel // 2, kernel}):
            check_conv(dtype, conv_inputs(2, 4, 5, size, size + 2, kernel), f"size={size}",
                       stride=stride, padding=padding)
            check_conv(dtype, conv_inputs(1, 4, 4, size, size, kernel, groups=4), f"size={size}",
                       stride=(stride, 1), padding=padding, groups=4)


# ----------------------------------------------------------------------------- batch, dims

@dtypes
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_batch_sizes(dtype, batch):
    check_conv(dtype, conv_inputs(batch, 5, 6, 8, 9, 3), f"batch={batch}", padding=1)
    check_conv(dtype, conv_inputs(batch, 4, 4, 8, 9, 3, groups=4), f"batch={batch}", groups=4)


@dtypes
@pytest.mark.parametrize("options", [dict(padding=1), dict(padding="same"), dict(stride=2, groups=2)],
                         ids=["p1", "same", "s2g2"])
def test_unbatched_input(dtype, options):
    inputs = conv_inputs(1, 4, 6, 9, 10, 3, groups=options.get("groups", 1))
    inputs["input"] = inputs["input"][0].detach().requires_grad_()
    check_conv(dtype, inputs, "unbatched", **options)


# ----------------------------------------------------------------------------- layouts

@dtypes
@pytest.mark.parametrize("view", VIEWS)
def test_input_views(dtype, view):
    """Inputs whose memory is not plain NCHW: kernels must read through the strides."""
    for c_out, kernel, options in [(6, 3, dict(padding=1)), (17, 1, dict(stride=2)),
                                   (8, 3, dict(groups=8, padding=1))]:
        inputs = conv_inputs(2, 8, c_out, 12, 14, kernel, groups=options.get("groups", 1))
        inputs["input"], prepare = make_view(view, (3, 8, 12, 14))
        check_conv(dtype, inputs, view, prepare=prepare, **options)


@dtypes
@pytest.mark.parametrize("view", ["channels_last", "transposed", "sliced"])
def test_weight_and_bias_views(dtype, view):
    """Non-contiguous weight (and bias): the kernels may not assume packed weights."""
    w_view = {"channels_last": channels_last,
              "transposed": lambda w: w.transpose(2, 3).contiguous().transpose(2, 3),
              "sliced": lambda w: w[::2]}[view]
    inputs = conv_inputs(2, 8, 24 if view == "sliced" else 12, 9, 10, 3)
    inputs["bias"] = torch.randn(24, dtype=torch.float64, requires_grad=True)
    compare_with_torch(
        lambda input, weight, bias: F.conv2d(input, w_view(weight), bias[::2], padding=1),
        lambda input, weight, bias: TF.conv2d(input, w_view(weight), bias[::2], padding=1),
        inputs, dtype, what=f"conv2d weight {view}")


@dtypes
@pytest.mark.parametrize("grad_layout", ["like_output", "channels_last", "transposed", "expanded"])
@pytest.mark.parametrize("input_layout", ["contiguous", "channels_last"])
def test_grad_output_layouts(dtype, grad_layout, input_layout):
    """The backward ops get grad_output as autograd hands it over: in any layout,
    including the stride-0 tensor that y.sum().backward() produces."""
    prepare = channels_last if input_layout == "channels_last" else (lambda x: x)
    for options in [dict(padding=1), dict(stride=2, groups=4)]:
        inputs = conv_inputs(2, 8, 12, 10, 11, 3, groups=options.get("groups", 1))
        compare_with_torch(
            lambda input, weight, bias: F.conv2d(prepare(input), weight, bias, **options),
            lambda input, weight, bias: TF.conv2d(prepare(input), weight, bias, **options),
            inputs, dtype, grad_output_layout=grad_layout, what=f"conv2d {input_layout}")


@dtypes
@pytest.mark.parametrize("input_layout", ["contiguous", "channels_last"])
def test_output_layout_follows_input(dtype, input_layout):
    """torch's rule for a contiguous weight: the output and grad_input take the
    input's memory format.  (grad_weight's layout is torch's backend's choice
    and is not compared.)"""
    prepare = channels_last if input_layout == "channels_last" else (lambda x: x)
    for c_in, options in [(8, dict(padding=1)), (8, dict(groups=8)), (3, dict(stride=2))]:
        inputs = conv_inputs(2, c_in, 16, 7, 9, 3, groups=options.get("groups", 1))
        compare_with_torch(
            lambda input, weight, bias: F.conv2d(prepare(input), weight, bias, **options),
            lambda input, weight, bias: TF.conv2d(prepare(input), weight, bias, **options),
            inputs, dtype, grad_output_layout="like_output", check_layout=("output", "input"),
            what=f"conv2d {input_layout}")
    y = F.conv2d(prepare(torch.randn(2, 8, 7, 9, dtype=dtype)), torch.randn(4, 8, 3, 3, dtype=dtype))
    assert layout_of(y) == input_layout


@dtypes
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_special_values(dtype, layout):
    """inf, -inf and NaN in the input and exact zeros in the weight propagate
    as in torch: inf * 0 and inf - inf are NaN, whatever the summation order."""
    for c_out, kernel, options in [(6, 3, dict(padding=1)), (16, 1, dict()),
                                   (8, 3, dict(groups=8, stride=2))]:
        inputs = conv_inputs(2, 8, c_out, 9, 10, kernel, groups=options.get("groups", 1))
        inputs["input"], prepare = make_view(layout, (2, 8, 9, 10))
        with torch.no_grad():
            x = inputs["input"]
            x[torch.rand_like(x) < 0.02] = float("inf")
            x[torch.rand_like(x) < 0.02] = float("-inf")
            x[torch.rand_like(x) < 0.01] = float("nan")
            w = inputs["weight"]
            w[torch.rand_like(w) < 0.2] = 0.0
        check_conv(dtype, inputs, f"special values {layout}", prepare=prepare, **options)


# ----------------------------------------------------------------------------- ISA

def test_isa_switch_changes_the_active_isa():
    from conftest import SUPPORTED_ISAS
    saved = pycnn.cpu_isa()
    try:
        for isa in SUPPORTED_ISAS:
            pycnn.set_cpu_isa(isa)
            assert pycnn.cpu_isa() == isa
    finally:
        pycnn.set_cpu_isa(saved)
    with pytest.raises(ValueError, match="isa must be 'generic', 'avx2' or 'avx512', got 'sse9'"):
        pycnn.set_cpu_isa("sse9")
    assert pycnn.cpu_isa() == saved


def test_isa_switch_does_not_change_results(cpu_isa):
    """Every ISA computes the same values (to rounding) as the generic path."""
    x = torch.randn(2, 17, 15, 19)
    w = torch.randn(33, 17, 3, 3)
    b = torch.randn(33)
    saved = pycnn.cpu_isa()
    ours = F.conv2d(x, w, b, padding=1)
    pycnn.set_cpu_isa("generic")
    try:
        generic = F.conv2d(x, w, b, padding=1)
    finally:
        pycnn.set_cpu_isa(saved)
    torch.testing.assert_close(ours, generic, rtol=1e-5, atol=1e-4)
