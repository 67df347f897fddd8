"""pycnn avg_pool2d against torch: output and grad_input, with ceil_mode,
count_include_pad and divisor_override, every layout and odd size."""
import itertools

import pytest
import torch
import torch.nn.functional as TF

import pycnn
from pycnn import functional as F
from checks import DTYPE_IDS, DTYPES, VIEWS, channels_last, compare_with_torch, layout_of, make_view

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)


def check_avg_pool(dtype, x, what="", prepare=lambda t: t, grad_output_layout=None,
                   check_layout=(), **options):
    compare_with_torch(
        lambda input: F.avg_pool2d(prepare(input), **options),
        lambda input: TF.avg_pool2d(prepare(input), **options),
        dict(input=x), dtype, grad_output_layout=grad_output_layout, check_layout=check_layout,
        what=f"avg_pool2d {what} {options}")


def torch_accepts(size, **options):
    try:
        TF.avg_pool2d(torch.empty(1, 1, *size), **options)
        return True
    except RuntimeError:
        return False


STRIDES = [None, 1, 2, 3, (1, 2), (3, 1)]
PADDINGS = [0, 1, (1, 0), 2]


@dtypes
@pytest.mark.parametrize("divisor_override", [None, 1, 3, -2], ids=lambda d: f"div{d}")
@pytest.mark.parametrize("count_include_pad", [True, False], ids=["incl", "excl"])
@pytest.mark.parametrize("ceil_mode", [False, True], ids=["floor", "ceil"])
@pytest.mark.parametrize("kernel", [1, 2, 3, (2, 3), (3, 1), 5], ids=str)
def test_options(dtype, kernel, ceil_mode, count_include_pad, divisor_override):
    checked = 0
    for stride, padding in itertools.product(STRIDES, PADDINGS):
        options = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
                       count_include_pad=count_include_pad, divisor_override=divisor_override)
        if not torch_accepts((11, 13), **options):
            continue
        checked += 1
        check_avg_pool(dtype, torch.randn(2, 3, 11, 13, dtype=torch.float64, requires_grad=True),
                       **options)
    assert checked >= len(STRIDES)


@dtypes
def test_every_width_and_height(dtype, cpu_isa):
    """Heights 1..70 with widths 70..1: every remainder of a vectorised row;
    with ceil_mode the last window hangs over the edge (and over the padding)."""
    for size in range(1, 71):
        h, w = size, 71 - size
        x = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
        check_avg_pool(dtype, x, f"H={size}", kernel_size=(min(h, 2), min(w, 2)))
        check_avg_pool(dtype, x, f"H={size}", kernel_size=3, stride=1, padding=1,
                       count_include_pad=False)
        check_avg_pool(dtype, x, f"H={size}", kernel_size=(min(h, 3), min(w, 3)), stride=2,
                       ceil_mode=True)
        check_avg_pool(dtype, x, f"H={size}", kernel_size=3, stride=2, padding=1,
                       ceil_mode=True)


@dtypes
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_every_channel_count(dtype, layout, cpu_isa):
    """Channels 1..70: the channels_last path vectorises across channels."""
    for channels in range(1, 71):
        x, prepare = make_view(layout, (2, channels, 7, 6))
        check_avg_pool(dtype, x, f"C={channels}", prepare, kernel_size=3, stride=2, padding=1,
                       ceil_mode=True, count_include_pad=channels % 2 == 0)


@dtypes
@pytest.mark.parametrize("view", VIEWS)
def test_input_views(dtype, view):
    for options in [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                    dict(kernel_size=(3, 2), stride=(1, 2), ceil_mode=True,
                         count_include_pad=False),
                    dict(kernel_size=3, padding=1, divisor_override=5)]:
        x, prepare = make_view(view, (3, 17, 9, 10))
        check_avg_pool(dtype, x, view, prepare, **options)


@dtypes
@pytest.mark.parametrize("grad_layout", ["like_output", "channels_last", "transposed", "expanded"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_grad_output_layouts(dtype, grad_layout, layout):
    x, prepare = make_view(layout, (2, 16, 9, 9))
    check_avg_pool(dtype, x, layout, prepare, grad_output_layout=grad_layout, kernel_size=3,
                   stride=2, padding=1)


@dtypes
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_output_layout_follows_input(dtype, layout):
    """torch's rule: output and grad_input take the input's memory format."""
    for channels in (1, 3, 16):
        x, prepare = make_view(layout, (2, channels, 8, 9))
        check_avg_pool(dtype, x, layout, prepare, grad_output_layout="like_output",
                       check_layout=("output", "input"), kernel_size=2)


@dtypes
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_batch_sizes(dtype, batch):
    check_avg_pool(dtype, torch.randn(batch, 4, 9, 8, dtype=torch.float64, requires_grad=True),
                   f"batch={batch}", kernel_size=3, stride=2, padding=1)


@dtypes
def test_unbatched_input(dtype):
    x = torch.randn(4, 9, 8, dtype=torch.float64, requires_grad=True)
    check_avg_pool(dtype, x, "unbatched", kernel_size=3, stride=2, padding=1, ceil_mode=True)


@dtypes
def test_large_window(dtype):
    x = torch.randn(2, 5, 23, 29, dtype=torch.float64, requires_grad=True)
    check_avg_pool(dtype, x, "global", kernel_size=(23, 29))
    check_avg_pool(dtype, x, "nearly global", kernel_size=(22, 27), stride=1, padding=(11, 13),
                   count_include_pad=False)


@dtypes
def test_infinities_and_nan(dtype):
    x = torch.randn(2, 3, 8, 9, dtype=torch.float64)
    x[0, 0, 1, 1] = float("inf")
    x[0, 1, 2, 2] = float("-inf")
    x[1, 2, 3, 3] = float("nan")
    x[1, 0, 4, 4] = float("inf")
    x[1, 0, 4, 5] = float("-inf")
    x = x.to(dtype)
    for options in [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1)]:
        torch.testing.assert_close(F.avg_pool2d(x, **options), TF.avg_pool2d(x, **options),
                                   equal_nan=True)


def test_layer_matches_torch_layer():
    x = torch.randn(2, 3, 10, 11)
    for args in [dict(kernel_size=3),
                 dict(kernel_size=(2, 3), stride=(2, 1), padding=1, ceil_mode=True,
                      count_include_pad=False, divisor_override=4)]:
        torch.testing.assert_close(pycnn.nn.AvgPool2d(**args)(x), torch.nn.AvgPool2d(**args)(x))
    assert layout_of(pycnn.nn.AvgPool2d(2)(channels_last(x))) == "channels_last"
