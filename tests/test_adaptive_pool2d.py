"""pycnn adaptive_avg_pool2d and adaptive_max_pool2d against torch: output
sizes that divide the input and that do not, None entries, outputs larger
than the input, every layout."""
import pytest
import torch
import torch.nn.functional as TF

import pycnn
from pycnn import functional as F
from checks import DTYPE_IDS, DTYPES, VIEWS, channels_last, compare_with_torch, layout_of, make_view

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
kinds = pytest.mark.parametrize("kind", ["avg", "max"])


def check_adaptive(kind, dtype, x, output_size, what="", prepare=lambda t: t,
                   grad_output_layout=None, check_layout=()):
    if kind == "avg":
        ours = lambda input: F.adaptive_avg_pool2d(prepare(input), output_size)
        ref = lambda input: TF.adaptive_avg_pool2d(prepare(input), output_size)
    else:
        ours = lambda input: F.adaptive_max_pool2d(prepare(input), output_size, return_indices=True)
        ref = lambda input: TF.adaptive_max_pool2d(prepare(input), output_size, return_indices=True)
    compare_with_torch(ours, ref, dict(input=x), dtype, linear=kind == "avg",
                       grad_output_layout=grad_output_layout, check_layout=check_layout,
                       what=f"adaptive_{kind}_pool2d {what} output_size={output_size}")


# (input H, W, output_size)
SIZES = [
    (10, 10, 1), (10, 10, (1, 1)), (7, 9, 1),              # global pooling
    (10, 10, 5), (12, 8, (3, 4)), (16, 16, (8, 2)),         # dividing
    (10, 10, (3, 7)), (13, 11, (4, 5)), (7, 5, (6, 4)),     # not dividing: overlapping cells
    (9, 11, (None, 3)), (9, 11, (4, None)), (9, 11, (None, None)),
    (5, 7, (13, 17)), (3, 2, 7), (1, 1, (3, 2)),            # larger than the input
    (10, 10, (10, 10)), (1, 70, (1, 9)), (70, 1, (11, 1)),
]


@dtypes
@kinds
@pytest.mark.parametrize("case", SIZES, ids=lambda c: f"{c[0]}x{c[1]}to{c[2]}".replace(" ", ""))
def test_output_sizes(kind, dtype, case):
    h, w, output_size = case
    x = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
    check_adaptive(kind, dtype, x, output_size)


@dtypes
@kinds
@pytest.mark.parametrize("output_size", [(0, 3), 0], ids=["0x3", "0"])
def test_empty_output(kind, dtype, output_size):
    """torch allows an output size of 0 (an empty result).  Its own backward
    then refuses the empty grad_output; ours returns the true gradient, zeros."""
    x = torch.randn(2, 3, 6, 6, dtype=dtype, requires_grad=True)
    ours = (F.adaptive_avg_pool2d if kind == "avg" else F.adaptive_max_pool2d)(x, output_size)
    ref = (TF.adaptive_avg_pool2d if kind == "avg" else TF.adaptive_max_pool2d)(x, output_size)
    assert ours.shape == ref.shape and ours.numel() == 0
    (grad,) = torch.autograd.grad(ours, x, torch.ones_like(ours))
    assert torch.equal(grad, torch.zeros_like(x))


@dtypes
@kinds
def test_every_size(kind, dtype, cpu_isa):
    """Input heights 1..70 (widths 70..1) to a few output sizes."""
    for size in range(1, 71):
        x = torch.randn(1, 3, size, 71 - size, dtype=torch.float64, requires_grad=True)
        for output_size in [(1, 1), (3, 5), (size, 1), (7, 7)]:
            check_adaptive(kind, dtype, x, output_size, f"H={size}")


@dtypes
@kinds
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_every_channel_count(kind, dtype, layout, cpu_isa):
    for channels in range(1, 71):
        x, prepare = make_view(layout, (2, channels, 7, 6))
        check_adaptive(kind, dtype, x, (1, 1) if channels % 3 == 0 else (3, 4), f"C={channels}",
                       prepare)


@dtypes
@kinds
@pytest.mark.parametrize("view", VIEWS)
def test_input_views(kind, dtype, view):
    x, prepare = make_view(view, (3, 17, 9, 10))
    for output_size in [(1, 1), (4, 3), (9, 13)]:
        check_adaptive(kind, dtype, x, output_size, view, prepare)


@dtypes
@kinds
@pytest.mark.parametrize("grad_layout", ["like_output", "channels_last", "transposed", "expanded"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_grad_output_layouts(kind, dtype, grad_layout, layout):
    x, prepare = make_view(layout, (2, 16, 9, 9))
    check_adaptive(kind, dtype, x, (4, 5), layout, prepare, grad_output_layout=grad_layout)


@dtypes
@kinds
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_output_layout_follows_input(kind, dtype, layout):
    """torch's rule: output, indices and grad_input take the input's memory format."""
    for channels in (1, 3, 16):
        x, prepare = make_view(layout, (2, channels, 8, 9))
        check_adaptive(kind, dtype, x, (3, 4), layout, prepare, grad_output_layout="like_output",
                       check_layout=("output", "input"))


@dtypes
@kinds
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_batch_sizes(kind, dtype, batch):
    x = torch.randn(batch, 4, 9, 8, dtype=torch.float64, requires_grad=True)
    check_adaptive(kind, dtype, x, (4, 3), f"batch={batch}")


@dtypes
@kinds
def test_unbatched_input(kind, dtype):
    x = torch.randn(4, 9, 8, dtype=torch.float64, requires_grad=True)
    for output_size in [(4, 3), (None, 2), 1]:
        check_adaptive(kind, dtype, x, output_size, "unbatched")


@dtypes
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_max_special_values(dtype, layout):
    """NaN wins, -inf-only cells report their first element, ties go to the
    first maximum: as torch."""
    x, prepare = make_view(layout, (2, 17, 11, 12))
    with torch.no_grad():
        x.copy_(torch.randint(-2, 3, x.shape).to(x.dtype))
        x[torch.rand_like(x) < 0.3] = float("-inf")
        x[torch.rand_like(x) < 0.03] = float("nan")
        x[torch.rand_like(x) < 0.03] = float("inf")
        x[:, :, :4, :4] = float("-inf")
    for output_size in [(1, 1), (3, 5), (11, 12), (4, 7)]:
        check_adaptive("max", dtype, x, output_size, "special values", prepare)


def test_layers_match_torch_layers():
    x = torch.randn(2, 3, 10, 11)
    for size in [1, (3, 4), (None, 5)]:
        torch.testing.assert_close(pycnn.nn.AdaptiveAvgPool2d(size)(x),
                                   torch.nn.AdaptiveAvgPool2d(size)(x))
        assert torch.equal(pycnn.nn.AdaptiveMaxPool2d(size)(x), torch.nn.AdaptiveMaxPool2d(size)(x))
        out, idx = pycnn.nn.AdaptiveMaxPool2d(size, return_indices=True)(x)
        ref, ref_idx = torch.nn.AdaptiveMaxPool2d(size, return_indices=True)(x)
        assert torch.equal(out, ref) and torch.equal(idx, ref_idx)
    assert layout_of(pycnn.nn.AdaptiveAvgPool2d(2)(channels_last(x))) == "channels_last"
