"""pycnn max_pool2d (and its indices) against torch: output and indices exactly,
grad_input to rounding; NaN, -inf and ties resolved exactly as torch does."""
import itertools

import pytest
import torch
import torch.nn.functional as TF

import pycnn
from pycnn import functional as F
from checks import (DTYPE_IDS, DTYPES, VIEWS, channels_last, compare_with_torch, layout_of,
                    make_view)

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)


def check_max_pool(dtype, x, what="", prepare=lambda t: t, grad_output_layout=None,
                   check_layout=(), **options):
    """max_pool2d_with_indices(prepare(x), **options) against torch's, and
    the values-only max_pool2d (no graph recorded: no indices written)
    against torch's output bit for bit."""
    compare_with_torch(
        lambda input: F.max_pool2d(prepare(input), return_indices=True, **options),
        lambda input: TF.max_pool2d(prepare(input), return_indices=True, **options),
        dict(input=x), dtype, linear=False, grad_output_layout=grad_output_layout,
        check_layout=check_layout, what=f"max_pool2d {what} {options}")
    with torch.no_grad():
        input = prepare(x.detach().to(dtype))
        values, reference = F.max_pool2d(input, **options), TF.max_pool2d(input, **options)
    assert values.dtype == dtype, what
    assert torch.equal(values.nan_to_num(), reference.nan_to_num()), f"values-only {what} {options}"
    assert torch.equal(values.isnan(), reference.isnan()), f"values-only NaN {what} {options}"


def valid_options(kernel, stride, padding, dilation, ceil_mode, size):
    """Whether torch accepts these options for an input of `size` (H, W)."""
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    p = (padding, padding) if isinstance(padding, int) else padding
    if any(pi > ki // 2 for pi, ki in zip(p, k)):
        return False
    try:
        TF.max_pool2d(torch.empty(1, 1, *size), kernel, stride, padding, dilation, ceil_mode)
        return True
    except RuntimeError:
        return False


STRIDES = [None, 1, 2, 3, (1, 2), (3, 1)]
PADDINGS = [0, 1, (1, 0), 2]
DILATIONS = [1, 2, (1, 3)]


@dtypes
@pytest.mark.parametrize("ceil_mode", [False, True], ids=["floor", "ceil"])
@pytest.mark.parametrize("kernel", [1, 2, 3, (2, 3), (3, 1), 4, 5], ids=str)
def test_options(dtype, ceil_mode, kernel):
    checked = 0
    for stride, padding, dilation in itertools.product(STRIDES, PADDINGS, DILATIONS):
        if not valid_options(kernel, stride, padding, dilation, ceil_mode, (11, 13)):
            continue
        checked += 1
        check_max_pool(dtype, torch.randn(2, 3, 11, 13, dtype=torch.float64, requires_grad=True),
                       kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                       ceil_mode=ceil_mode)
    assert checked >= len(STRIDES) * len(DILATIONS)


@dtypes
def test_every_width_and_height(dtype, cpu_isa):
    """Heights 1..70 with widths 70..1: every remainder of a vectorised row."""
    for size in range(1, 71):
        x = torch.randn(2, 3, size, 71 - size, dtype=torch.float64, requires_grad=True)
        h, w = size, 71 - size
        check_max_pool(dtype, x, f"H={size}", kernel_size=(min(h, 2), min(w, 2)))
        check_max_pool(dtype, x, f"H={size}", kernel_size=3, stride=1, padding=1)
        check_max_pool(dtype, x, f"H={size}", kernel_size=(min(h, 3), min(w, 3)), stride=2,
                       ceil_mode=True)


@dtypes
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_every_channel_count(dtype, layout, cpu_isa):
    """Channels 1..70: the channels_last path vectorises across channels."""
    for channels in range(1, 71):
        x, prepare = make_view(layout, (2, channels, 7, 6))
        check_max_pool(dtype, x, f"C={channels}", prepare, kernel_size=3, stride=2, padding=1,
                       ceil_mode=True)


@dtypes
@pytest.mark.parametrize("view", VIEWS)
def test_input_views(dtype, view):
    for options in [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, dilation=2),
                    dict(kernel_size=(3, 2), stride=(1, 2), ceil_mode=True)]:
        x, prepare = make_view(view, (3, 17, 9, 10))
        check_max_pool(dtype, x, view, prepare, **options)


@dtypes
@pytest.mark.parametrize("grad_layout", ["like_output", "channels_last", "transposed", "expanded"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_grad_output_layouts(dtype, grad_layout, layout):
    x, prepare = make_view(layout, (2, 16, 9, 9))
    check_max_pool(dtype, x, layout, prepare, grad_output_layout=grad_layout, kernel_size=3,
                   stride=2)


@dtypes
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_output_layout_follows_input(dtype, layout):
    """torch's rule: output, indices and grad_input take the input's memory format."""
    for channels in (1, 3, 16):
        x, prepare = make_view(layout, (2, channels, 8, 9))
        check_max_pool(dtype, x, layout, prepare, grad_output_layout="like_output",
                       check_layout=("output", "input"), kernel_size=2)


@dtypes
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_batch_sizes(dtype, batch):
    check_max_pool(dtype, torch.randn(batch, 4, 9, 8, dtype=torch.float64, requires_grad=True),
                   f"batch={batch}", kernel_size=3, stride=2, padding=1)


@dtypes
def test_unbatched_input(dtype):
    x = torch.randn(4, 9, 8, dtype=torch.float64, requires_grad=True)
    check_max_pool(dtype, x, "unbatched", kernel_size=3, stride=2, padding=1)
    out = F.max_pool2d(x.detach().to(dtype), 2)
    assert out.shape == (4, 4, 4) and torch.equal(out, TF.max_pool2d(x.detach().to(dtype), 2))


@dtypes
def test_return_indices_flag(dtype):
    x = torch.randn(2, 3, 8, 8, dtype=dtype)
    out = F.max_pool2d(x, 2)
    assert isinstance(out, torch.Tensor) and torch.equal(out, TF.max_pool2d(x, 2))
    out, idx = F.max_pool2d(x, 2, return_indices=True)
    ref, ref_idx = TF.max_pool2d(x, 2, return_indices=True)
    assert torch.equal(out, ref) and torch.equal(idx, ref_idx)
    out, idx = F.max_pool2d_with_indices(x, 2)
    assert torch.equal(out, ref) and torch.equal(idx, ref_idx)
    out, idx = pycnn.nn.MaxPool2d(2, return_indices=True)(x)
    assert torch.equal(out, ref) and torch.equal(idx, ref_idx)


# ----------------------------------------------------------------------------- special values

SPECIAL_OPTIONS = [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
                   dict(kernel_size=3, stride=2, dilation=2, ceil_mode=True),
                   dict(kernel_size=(2, 4), stride=(1, 3), padding=(1, 2))]


@dtypes
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
@pytest.mark.parametrize("density", [0.05, 0.3, 1.0], ids=["few", "many", "all"])
def test_nan_wins(dtype, layout, density):
    """A NaN in a window is the window's maximum; with several NaNs torch's
    index is the one its scan order settles on, and so must ours be."""
    x, prepare = make_view(layout, (2, 17, 11, 12))
    with torch.no_grad():
        x[torch.rand_like(x) < density] = float("nan")
    for options in SPECIAL_OPTIONS:
        check_max_pool(dtype, x, f"{layout} NaN density {density}", prepare, **options)


@dtypes
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_infinities(dtype, layout):
    """Windows of -inf only report their first element, as torch does;
    +inf wins; NaN beats +inf."""
    x, prepare = make_view(layout, (2, 9, 10, 11))
    with torch.no_grad():
        x.fill_(float("-inf"))
        x[torch.rand_like(x) < 0.2] = 1.5
        x[torch.rand_like(x) < 0.05] = float("inf")
        x[torch.rand_like(x) < 0.02] = float("nan")
    for options in SPECIAL_OPTIONS:
        check_max_pool(dtype, x, f"{layout} infinities", prepare, **options)
        all_neg_inf = torch.full((1, 3, 7, 8), float("-inf"), dtype=torch.float64,
                                 requires_grad=True)
        check_max_pool(dtype, all_neg_inf, f"{layout} all -inf", prepare, **options)


@dtypes
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed_hw"])
def test_ties(dtype, layout):
    """Equal maxima: torch reports the first in its scan order."""
    x, prepare = make_view(layout, (2, 19, 12, 13))
    with torch.no_grad():
        x.copy_(torch.randint(-2, 3, x.shape).to(x.dtype))
    for options in SPECIAL_OPTIONS:
        check_max_pool(dtype, x, f"{layout} ties", prepare, **options)
    constant = torch.full((1, 5, 9, 9), 0.25, dtype=torch.float64, requires_grad=True)
    for options in SPECIAL_OPTIONS:
        check_max_pool(dtype, constant, f"{layout} constant", prepare, **options)


@dtypes
def test_large_window(dtype):
    """A window covering the whole plane (global max pooling)."""
    x = torch.randn(2, 5, 23, 29, dtype=torch.float64, requires_grad=True)
    check_max_pool(dtype, x, "global", kernel_size=(23, 29))
    check_max_pool(dtype, x, "nearly global", kernel_size=(22, 27), stride=1, padding=(11, 13))


def test_layer_matches_torch_layer():
    x = torch.randn(2, 3, 10, 11)
    for args in [dict(kernel_size=3), dict(kernel_size=(2, 3), stride=(2, 1), padding=1,
                                           dilation=(1, 2), ceil_mode=True)]:
        assert torch.equal(pycnn.nn.MaxPool2d(**args)(x), torch.nn.MaxPool2d(**args)(x))
    assert layout_of(pycnn.nn.MaxPool2d(2)(channels_last(x))) == "channels_last"


@dtypes
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_window_without_valid_taps(dtype, layout):
    """With dilation, a window can have every tap in the padding or past the
    input: input height 2, kernel 2, dilation 3, padding 1 puts the taps at
    rows -1 and 2.  torch outputs -inf there with index 2 (one past the
    plane); its backward then writes through that index outside the plane.
    The gradient of that output with respect to every input is zero, and
    backward must return it (not fail on the index, not write elsewhere)."""
    leaf, prepare = make_view(layout, (2, 3, 2, 1))
    x = prepare(leaf.detach().to(dtype)).requires_grad_()
    out, idx = F.max_pool2d(x, (2, 1), padding=(1, 0), dilation=(3, 1), return_indices=True)
    ref, ref_idx = TF.max_pool2d(x.detach(), (2, 1), padding=(1, 0), dilation=(3, 1),
                                 return_indices=True)
    assert torch.equal(out, ref) and torch.equal(idx, ref_idx)
    assert out.shape == (2, 3, 1, 1) and bool((out == float("-inf")).all())
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    assert torch.equal(grad, torch.zeros_like(x))

    # Columns with no valid tap (taps at -1 and 2 of a width-2 row): torch's
    # index is then h * W + 2, the first element of the next row, and one past
    # the plane for the last row.  Gradient goes where an in-plane index
    # points, as in torch, and nowhere for the out-of-plane one.
    x = torch.randn(2, 3, 3, 2, dtype=dtype, requires_grad=True)
    options = dict(kernel_size=(1, 2), padding=(0, 1), dilation=(1, 3))
    out, idx = F.max_pool2d(x, return_indices=True, **options)
    ref, ref_idx = TF.max_pool2d(x.detach(), return_indices=True, **options)
    assert torch.equal(out, ref) and torch.equal(idx, ref_idx)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, g)
    plane = 3 * 2
    inside = ref_idx.flatten(2) < plane
    expected = torch.zeros(2, 3, plane, dtype=dtype).scatter_add_(
        2, ref_idx.flatten(2).clamp(max=plane - 1), torch.where(inside, g.flatten(2), 0))
    torch.testing.assert_close(grad, expected.view_as(x), rtol=0, atol=0)
