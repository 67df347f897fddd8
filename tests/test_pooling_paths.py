"""Path coverage for the CPU pooling kernels (csrc/ops/cpu/pool2d_*).

Which code runs depends on the layout and the shape:
  * dense NCHW: vectors along output rows -- stride 1 (plain loads), stride 2
    (loads and a deinterleave), other strides one scalar lane; outputs whose
    windows are clipped (padding, ceil_mode) take a scalar path at each end;
  * dense channels_last: vectors along channels -- up to 8 (AVX-512) or 4
    vectors in registers; wider pixels go block by block of registers while
    the input fits the caches, and past them accumulate in the output, in
    blocks of 1024 channels;
  * adaptive NCHW: planes transposed in groups of one vector, or one plane
    at a time when the group would not fit its scratch; evenly dividing
    windows with stride <= 2 go through the plain kernels instead;
  * gradients: avg writes rows directly where windows tile the input; max
    gathers where windows do not overlap (channels_last with wide pixels;
    NCHW windows 2 wide at stride 2) and scatters elsewhere, and falls back
    to the reference loops when an index is not a tap of its own window;
  * anything else (strided views, planes of 2^31 elements) takes the
    reference loops.
Every path computes each output in the reference loops' order, so the
results of all instruction sets, both layouts and the strided reference must
agree bit for bit; each is also compared with torch in float64.
"""
import pytest
import torch
import torch.nn.functional as TF

import pycnn
from pycnn import _extension, functional as F
from checks import DTYPE_IDS, DTYPES, channels_last, compare_with_torch, layout_of
from conftest import SUPPORTED_ISAS

ops = torch.ops.pycnn
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
layouts = pytest.mark.parametrize("layout", ["contiguous", "channels_last"])


@pytest.fixture(autouse=True)
def restore_isa_and_threads():
    isa, threads = pycnn.cpu_isa(), torch.get_num_threads()
    yield
    pycnn.set_cpu_isa(isa)
    torch.set_num_threads(threads)


def arranged(x, layout):
    """x in `layout`: contiguous, channels_last, or strided (a view of a
    wider tensor, which takes the reference loops)."""
    if layout == "contiguous":
        return x.contiguous()
    if layout == "channels_last":
        return channels_last(x)
    wide = torch.full(x.shape[:3] + (x.shape[3] + 3,), float("nan"), dtype=x.dtype)
    wide[..., 1:-2] = x
    view = wide[..., 1:-2]
    assert layout_of(view) == "strided" or x.numel() == 0
    return view


OPS = {
    "max": lambda x, o: F.max_pool2d(x, return_indices=True, **o),
    "avg": lambda x, o: F.avg_pool2d(x, **o),
    "adaptive_avg": lambda x, o: F.adaptive_avg_pool2d(x, **o),
    "adaptive_max": lambda x, o: F.adaptive_max_pool2d(x, return_indices=True, **o),
}
TORCH_OPS = {
    "max": lambda x, o: TF.max_pool2d(x, return_indices=True, **o),
    "avg": lambda x, o: TF.avg_pool2d(x, **o),
    "adaptive_avg": lambda x, o: TF.adaptive_avg_pool2d(x, **o),
    "adaptive_max": lambda x, o: TF.adaptive_max_pool2d(x, return_indices=True, **o),
}


# max_pool2d without indices: where no graph is recorded its kernels skip
# the indices' stores, on every path.
VALUES_ONLY = {"max": lambda x, o: F.max_pool2d(x, **o)}


def run(op, x, layout, options, grad_seed=0):
    """(output, indices or None, grad_input) of pycnn's op on x arranged in
    `layout`, with a fixed random grad_output.  Where the op has a
    values-only form, its output must be the same bits."""
    leaf = arranged(x.detach(), layout).requires_grad_()
    result = OPS[op](leaf, options)
    out, idx = result if isinstance(result, tuple) else (result, None)
    if op in VALUES_ONLY:
        with torch.no_grad():
            values = VALUES_ONLY[op](leaf, options)
        assert_bitwise_equal(values.contiguous(), out.detach().contiguous(),
                             f"{op} {options} {layout}: the values-only forward")
    g = torch.randn(out.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(grad_seed))
    # In the output's layout, as a loss's gradient would come: grad_input
    # follows grad_output's layout, so an NCHW g would take the NCHW kernels.
    g = torch.empty_like(out).copy_(g)
    fallbacks = _extension.max_pool_reference_fallbacks()
    (grad,) = torch.autograd.grad(out, leaf, g)
    assert _extension.max_pool_reference_fallbacks() == fallbacks, (
        f"{op} {options} {layout} ({pycnn.cpu_isa()}): the gradient of a forward's own indices "
        "fell back to the reference loops")
    return out.detach(), idx, grad


def assert_bitwise_equal(a, b, what):
    assert a.shape == b.shape, f"{what}: shapes {list(a.shape)} and {list(b.shape)}"
    if a.dtype == torch.int64:
        same = a == b
    else:  # NaN equals NaN; +0.0 and -0.0 do not
        same = (a.view(torch.int64 if a.dtype == torch.float64 else torch.int32) ==
                b.view(torch.int64 if b.dtype == torch.float64 else torch.int32))
    if not bool(same.all()):
        at = tuple(int(i) for i in (~same).nonzero()[0])
        raise AssertionError(f"{what}: {int((~same).sum())} elements differ, first at {at}: "
                             f"{a[at].item()!r} vs {b[at].item()!r}")


def check_paths_agree(op, x, options, layouts=("contiguous", "channels_last", "strided"),
                      what=""):
    """Every supported ISA and every layout gives bit-identical outputs,
    indices and forward results equal to the strided reference's; the
    gradients of all ISAs are bit-identical within a layout and equal
    across layouts."""
    results = {}
    for isa in SUPPORTED_ISAS:
        pycnn.set_cpu_isa(isa)
        for layout in layouts:
            results[(isa, layout)] = run(op, x, layout, options)
    (first_key, first) = next(iter(results.items()))
    for key, result in results.items():
        for name, a, b in zip(("output", "indices", "grad_input"), first, result):
            if a is None:
                continue
            assert_bitwise_equal(a.contiguous(), b.contiguous(),
                                 f"{op} {what} {options} {name}: {key} vs {first_key}")
    return first


def check_against_torch(op, x, options, dtype, layout, what=""):
    compare_with_torch(lambda input: OPS[op](arranged(input, layout), options),
                       lambda input: TORCH_OPS[op](arranged(input, layout), options),
                       dict(input=x), dtype, linear=op in ("avg", "adaptive_avg"),
                       what=f"{op} {what} {layout}")


def randn(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=torch.float64).to(dtype)


# ------------------------------------------------------------------ NCHW rows

# Output widths around the vector widths (8 and 16 lanes for float32, 4 and
# 8 for float64), for strides 1, 2 (vector paths) and 3 (one scalar lane),
# with windows clipped by padding and ceil_mode at both ends.
ROW_CASES = [
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=2, stride=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=(2, 4), stride=(1, 2), padding=(1, 2), ceil_mode=True),
    dict(kernel_size=3, stride=3, padding=1),
    dict(kernel_size=(3, 1), stride=(2, 1)),
    dict(kernel_size=5, stride=2, padding=2),
]


@dtypes
@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("width", [1, 4, 7, 8, 9, 15, 16, 17, 31, 33, 35, 67])
def test_row_widths(op, width, dtype):
    for options in ROW_CASES:
        x = randn(2, 3, 6, width, dtype=dtype)
        try:
            TORCH_OPS[op](x, options)
        except RuntimeError:
            continue  # too small for these options
        check_paths_agree(op, x, options, what=f"width {width}")
        check_against_torch(op, x.double(), options, dtype, "contiguous", what=f"width {width}")


@dtypes
@pytest.mark.parametrize("out_w", [144, 140])
def test_max_rows_of_calls_larger_than_the_caches(out_w, dtype):
    """Past kLargeCallBytes the NCHW max pool prefetches its input rows and
    streams its outputs where every row starts on a 64-byte line (out_w 144;
    at 140 they are stored plainly): the same bits as every other path, and
    torch's values and indices."""
    x = randn(2, 32, 2 * 160, 2 * out_w + 1, dtype=dtype)  # 2x2 windows; the last column unused
    assert x.nbytes >= 16 << 20 and x.numel() // 4 * (x.element_size() + 8) >= 16 << 20
    options = dict(kernel_size=2)
    pycnn.set_cpu_isa(SUPPORTED_ISAS[-1])
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out, idx = F.max_pool2d(x, return_indices=True, **options)
        ref, ref_idx = TF.max_pool2d(x, return_indices=True, **options)
        assert torch.equal(out, ref) and torch.equal(idx, ref_idx), f"{threads} threads"
    check_paths_agree("max", x, options, layouts=("contiguous", "strided"), what="large")


@dtypes
@pytest.mark.parametrize("channels", [64, 40])
def test_max_channels_last_calls_larger_than_the_caches(channels, dtype):
    """Past kLargeCallBytes the channels_last max pool streams its values and
    indices where a pixel's vectors start on 64-byte lines (every vector at
    64 channels; at 40 float32s the second vector of a pixel does not):
    torch's values and indices, with one thread and with two."""
    x = channels_last(randn(4, channels, 2 * 96, 2 * 120 + 1, dtype=dtype))
    assert x.numel() // 4 * (x.element_size() + 8) >= 16 << 20
    pycnn.set_cpu_isa(SUPPORTED_ISAS[-1])
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out, idx = F.max_pool2d(x, 2, return_indices=True)
        ref, ref_idx = TF.max_pool2d(x, 2, return_indices=True)
        assert torch.equal(out, ref) and torch.equal(idx, ref_idx), f"{threads} threads"
        assert out.is_contiguous(memory_format=torch.channels_last)


@dtypes
@pytest.mark.parametrize("op", ["max", "avg"])
def test_channels_last_wide_pixels_in_and_past_the_caches(op, dtype):
    """Pixels wider than the registers hold go block by block of registers
    while the input fits the caches, and past kLargeCallBytes sweep each tap
    in one pass through the output row.  The top output rows of a large
    input and of its top 16 rows alone (the two paths) agree bit for bit,
    and both agree with torch, with a partial last block and vector."""
    x = channels_last(randn(2, 136, 2 * 64, 2 * 64 + 1, dtype=dtype))
    assert x.nbytes >= 16 << 20
    top = channels_last(x[:, :, :16].clone())
    pycnn.set_cpu_isa(SUPPORTED_ISAS[-1])
    options = dict(kernel_size=3, stride=2, padding=1)
    large, small = run(op, x, "channels_last", options)[0], run(op, top, "channels_last", options)[0]
    assert_bitwise_equal(large[:, :, :8], small[:, :, :8], f"{op}: past the caches vs in them")
    for input, out in ((x, large), (top, small)):
        if op == "max":
            ref, ref_idx = TF.max_pool2d(input, return_indices=True, **options)
            out, idx = F.max_pool2d(input, return_indices=True, **options)
            assert torch.equal(out, ref) and torch.equal(idx, ref_idx), tuple(input.shape)
        else:
            ref = TF.avg_pool2d(input.double(), **options)
            assert torch.allclose(out.double(), ref, rtol=1e-6, atol=1e-6), tuple(input.shape)


@dtypes
@pytest.mark.parametrize("in_w", [128, 120])
def test_max_backward_of_calls_larger_than_the_caches(in_w, dtype):
    """Past kLargeCallBytes the NCHW max-pool backward streams grad_input's
    rows when each starts on a 64-byte line (all but 120 float32s, 480
    bytes, which it stores plainly): torch's result bit for bit, with one
    thread and with two."""
    x = randn(2, 72, 256, in_w, dtype=dtype)
    assert x.nbytes >= 16 << 20
    out, idx = TF.max_pool2d(x, 2, return_indices=True)
    g = randn(*out.shape, dtype=dtype)
    ref = torch.ops.aten.max_pool2d_with_indices_backward(g, x, [2, 2], [2, 2], [0, 0], [1, 1], False, idx)
    pycnn.set_cpu_isa(SUPPORTED_ISAS[-1])
    for threads in (1, 2):
        torch.set_num_threads(threads)
        ours = torch.ops.pycnn.max_pool2d_backward(g, idx, list(x.shape), [2], [2], [0], [1], False)
        assert torch.equal(ours, ref), f"{threads} threads"


@dtypes
@pytest.mark.parametrize("dilation", [2, (1, 3), (2, 2)])
def test_max_dilation_rows(dilation, dtype):
    for width in (9, 17, 40):
        for options in (dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=3, stride=2),
                        dict(kernel_size=(2, 3), stride=2, padding=1, ceil_mode=True)):
            options = dict(options, dilation=dilation)
            x = randn(2, 2, 9, width, dtype=dtype)
            try:
                TF.max_pool2d(x, **options)
            except RuntimeError:
                continue
            check_paths_agree("max", x, options, what=f"width {width}")
            check_against_torch("max", x.double(), options, dtype, "contiguous")


@dtypes
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("divisor_override", [None, 3])
def test_avg_divisors_on_every_path(count_include_pad, divisor_override, dtype):
    for options in ROW_CASES:
        options = dict(options, count_include_pad=count_include_pad,
                       divisor_override=divisor_override)
        for shape in ((2, 3, 7, 18), (1, 20, 5, 5)):
            x = randn(*shape, dtype=dtype)
            try:
                TF.avg_pool2d(x, **options)
            except RuntimeError:
                continue
            check_paths_agree("avg", x, options)
            for layout in ("contiguous", "channels_last"):
                check_against_torch("avg", x.double(), options, dtype, layout)


# -------------------------------------------------------------- NHWC channels

# 1..130 channels: fewer than one vector, exact vectors, several vectors in
# registers with a partial last one, and the in-output accumulation past
# them (a vector holds 16 float32 or 8 float64 with AVX-512, 8 or 4 with
# AVX2; registers hold 8 vectors with AVX-512, 4 with AVX2).
CHANNELS = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 47, 48, 49, 63, 64, 65, 70, 127,
            128, 129]


@dtypes
@pytest.mark.parametrize("op", ["max", "avg", "adaptive_avg", "adaptive_max"])
def test_channel_counts(op, dtype):
    options = {"max": dict(kernel_size=3, stride=2, padding=1),
               "avg": dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
               "adaptive_avg": dict(output_size=(3, 2)),
               "adaptive_max": dict(output_size=(3, 2))}[op]
    for channels in CHANNELS:
        x = randn(2, channels, 7, 6, dtype=dtype)
        check_paths_agree(op, x, options, what=f"{channels} channels")
        check_against_torch(op, x.double(), options, dtype, "channels_last",
                            what=f"{channels} channels")


@pytest.mark.parametrize("op", ["max", "avg", "adaptive_avg", "adaptive_max"])
def test_pixels_wider_than_a_channel_block(op):
    """Past 1024 channels a pixel accumulates block by block."""
    options = {"max": dict(kernel_size=2, stride=1), "avg": dict(kernel_size=2, stride=1),
               "adaptive_avg": dict(output_size=2), "adaptive_max": dict(output_size=2)}[op]
    x = randn(1, 1030, 3, 3, dtype=torch.float32)
    check_paths_agree(op, x, options, layouts=("contiguous", "channels_last"))
    check_against_torch(op, x.double(), options, torch.float32, "channels_last")


# -------------------------------------------------------------------- special values

@dtypes
@layouts
@pytest.mark.parametrize("op", ["max", "adaptive_max"])
def test_nan_inf_and_ties_on_vector_paths(op, layout, dtype):
    """NaN wins (the last one in the window scan), the first of equal maxima
    wins, an all -inf window reports its first element: in vector lanes,
    at row ends and in every channel position."""
    options = dict(kernel_size=3, stride=2, padding=1) if op == "max" else dict(output_size=(4, 5))
    x = randn(2, 37, 9, 35).round()  # rounding makes ties common
    x[0, :, 2:5, 3:9] = float("-inf")
    x[1, 3:20, 4, 10:30:3] = float("nan")
    x[1, 5:9, 5, 11:31:4] = float("nan")
    x[0, 30:, :, 20:] = float("-inf")
    x[0, 31, 1, 21] = float("nan")
    check_paths_agree(op, x.to(dtype), options)
    check_against_torch(op, x, options, dtype, layout)


@dtypes
@pytest.mark.parametrize("op, output_size", [("avg", None), ("adaptive_avg", (2, 3)),
                                             ("adaptive_avg", (6, 8))])
def test_signed_zeros_and_infinities_in_sums(op, output_size, dtype):
    """Sums keep the reference order: -0.0, infinities and NaN come out the same."""
    options = dict(kernel_size=2, stride=2) if op == "avg" else dict(output_size=output_size)
    x = torch.zeros(1, 18, 6, 8, dtype=torch.float64)
    x[0, :6] = -0.0
    x[0, 6:9, 1, 1] = float("inf")
    x[0, 7:10, 2, 3] = float("-inf")
    x[0, 12, 4, 4] = float("nan")
    check_paths_agree(op, x.to(dtype), options)


# ------------------------------------------------------------------- adaptive

# (7, 5) on the 7 x 5 input: windows of one pixel (a flat pass backward).
ADAPTIVE_SIZES = [(1, 1), (7, 7), (5, 3), (2, 4), (9, 11), (1, 6), (14, 1), (7, 5)]


@dtypes
@layouts
@pytest.mark.parametrize("op", ["adaptive_avg", "adaptive_max"])
def test_adaptive_windows(op, layout, dtype):
    """Even windows (the plain kernels for stride <= 2, plane groups else),
    uneven and overlapping ones, outputs larger than the input, and plane
    counts that leave a partial group."""
    for shape in ((2, 9, 14, 14), (1, 17, 7, 5), (3, 11, 13, 13), (1, 1, 28, 21)):
        for output_size in ADAPTIVE_SIZES:
            x = randn(*shape, dtype=dtype)
            options = dict(output_size=output_size)
            check_paths_agree(op, x, options, what=f"{list(shape)}")
            check_against_torch(op, x.double(), options, dtype, layout, what=f"{list(shape)}")


@pytest.mark.parametrize("op", ["adaptive_avg", "adaptive_max"])
def test_adaptive_planes_too_large_for_a_group(op):
    """A 400 x 400 plane does not fit the transposed group's scratch: the
    kernels go one plane at a time."""
    x = randn(1, 3, 400, 400, dtype=torch.float32)
    options = dict(output_size=(7, 6))
    check_paths_agree(op, x, options, layouts=("contiguous", "strided"))
    check_against_torch(op, x.double(), options, torch.float32, "contiguous")


@pytest.mark.parametrize("op", ["adaptive_avg", "adaptive_max"])
def test_adaptive_empty_output(op):
    x = randn(2, 3, 5, 5, dtype=torch.float32)
    for layout in ("contiguous", "channels_last"):
        out, idx, grad = run(op, x, layout, dict(output_size=(0, 3)))
        assert out.shape == (2, 3, 0, 3)
        assert torch.equal(grad, torch.zeros_like(x))


# ------------------------------------------------------------------ gradients

@dtypes
def test_max_gradient_gather_along_nchw_rows(dtype):
    """NCHW windows 2 wide at stride 2 that do not overlap along h gather on
    rows of 32 or more (shorter ones scatter): odd widths, padding (the
    row's first element alone), ceil_mode, rows no window covers, dilation
    along h."""
    for width in (1, 3, 16, 31, 32, 33, 34, 47, 48, 49, 50, 65):
        for options in (dict(kernel_size=2, stride=2), dict(kernel_size=2, stride=2, padding=1),
                        dict(kernel_size=2, stride=2, ceil_mode=True),
                        dict(kernel_size=(3, 2), stride=(3, 2), padding=(1, 1)),
                        dict(kernel_size=(1, 2), stride=(3, 2)),
                        dict(kernel_size=2, stride=(4, 2), dilation=(2, 1), padding=(1, 0))):
            x = randn(2, 3, 7, width, dtype=dtype)
            try:
                TF.max_pool2d(x, **options)
            except RuntimeError:
                continue
            check_paths_agree("max", x, options, what=f"width {width}")
            check_against_torch("max", x.double(), options, dtype, "contiguous")


@dtypes
@layouts
def test_max_gradient_gather_and_scatter(layout, dtype):
    """channels_last with >= 32 channels and windows that do not overlap
    gathers; overlapping windows and narrow pixels scatter."""
    for channels, options in ((48, dict(kernel_size=2, stride=2)),
                              (40, dict(kernel_size=(1, 3), stride=3, padding=(0, 1))),
                              (33, dict(kernel_size=3, stride=2, padding=1)),
                              (6, dict(kernel_size=2, stride=2)),
                              (35, dict(kernel_size=2, stride=3, ceil_mode=True)),
                              (32, dict(kernel_size=2, stride=2, dilation=2))):
        x = randn(2, channels, 11, 10, dtype=dtype)
        check_paths_agree("max", x, options, what=f"{channels} channels")
        check_against_torch("max", x.double(), options, dtype, layout)


@dtypes
def test_max_gradient_tiles_channels_last(dtype):
    """Windows that tile the input (kernel == stride, no padding) on pixels of
    32 channels or more: each output writes its whole window (where the ISA
    has that kernel).  Remainder rows and columns no window covers, blocks of
    channels past 1024, non-square windows, ceil_mode with and without a
    partial window, and adaptive pooling that divides evenly."""
    cases = [(32, "max", dict(kernel_size=2, stride=2)),
             (40, "max", dict(kernel_size=3, stride=3)),
             (67, "max", dict(kernel_size=(2, 3), stride=(2, 3))),
             (33, "max", dict(kernel_size=2, stride=2, ceil_mode=True)),
             (36, "max", dict(kernel_size=(3, 2), stride=(3, 2), ceil_mode=True)),
             (1100, "max", dict(kernel_size=2, stride=2)),
             (48, "adaptive_max", dict(output_size=(3, 2))),
             (64, "adaptive_max", dict(output_size=1))]
    for channels, op, options in cases:
        x = randn(2, channels, 9, 8 if op == "adaptive_max" else 11, dtype=dtype)
        check_paths_agree(op, x, options, what=f"{channels} channels")
        check_against_torch(op, x.double(), options, dtype, "channels_last",
                            what=f"{channels} channels")


@dtypes
@layouts
def test_avg_gradient_tiling_and_overlap(layout, dtype):
    """Windows that tile the input exactly write grad_input directly; the
    rest accumulate (overlaps, gaps, padding, ceil_mode)."""
    for shape, options in (((2, 20, 8, 12), dict(kernel_size=2, stride=2)),
                           ((2, 20, 9, 12), dict(kernel_size=3, stride=3)),
                           ((2, 20, 9, 12), dict(kernel_size=2, stride=2)),
                           ((2, 20, 9, 11), dict(kernel_size=2, stride=3)),
                           ((2, 20, 9, 11), dict(kernel_size=3, stride=2, ceil_mode=True)),
                           ((1, 5, 6, 6), dict(kernel_size=1, stride=1))):
        x = randn(*shape, dtype=dtype)
        check_paths_agree("avg", x, options, what=f"{list(shape)}")
        check_against_torch("avg", x.double(), options, dtype, layout)


def reference_scatter(grad_output, indices, input_shape):
    n, c, h, w = input_shape
    flat = torch.zeros(n, c, h * w, dtype=grad_output.dtype)
    flat.scatter_add_(2, indices.flatten(2), grad_output.flatten(2))
    return flat.view(n, c, h, w)


# Wide pixels (channels_last gathers) and, in NCHW, 8-wide rows (scatter)
# and 48-wide rows (the 2-wide gather and its blocks of 2L inputs).
BAD_INDEX_SHAPES = [(2, 40, 8, 8), (2, 3, 6, 48)]


@dtypes
@layouts
@pytest.mark.parametrize("shape", BAD_INDEX_SHAPES)
@pytest.mark.parametrize("op", ["max", "adaptive_max"])
def test_max_gradient_indices_outside_their_window(op, shape, layout, dtype):
    """Indices that no forward gives (inside the plane, outside the output's
    window) make the vector paths fall back to the reference scatter, which
    adds each gradient wherever its index points."""
    x = randn(*shape, dtype=dtype)
    if layout == "channels_last":
        x = channels_last(x)
    if op == "max":
        out, idx = ops.max_pool2d_with_indices(x, [2, 2], [2, 2], [0, 0], [1, 1], False)
    else:
        out, idx = ops.adaptive_max_pool2d(x, [3, 3])
    idx = idx.clone()
    plane = shape[2] * shape[3]
    idx[1, shape[1] - 1, 2, 1] = 0
    idx[0, 2, 0, 0] = plane - 1
    g = torch.randn_like(out)
    for isa in SUPPORTED_ISAS:
        pycnn.set_cpu_isa(isa)
        if op == "max":
            grad = ops.max_pool2d_backward(g, idx, x.shape, [2, 2], [2, 2], [0, 0],
                                                     [1, 1], False)
        else:
            grad = ops.adaptive_max_pool2d_backward(g, idx, x.shape)
        assert_bitwise_equal(grad.contiguous(), reference_scatter(g, idx, x.shape),
                             f"{op} {isa}")


@layouts
@pytest.mark.parametrize("shape", BAD_INDEX_SHAPES)
@pytest.mark.parametrize("bad", ["plane", "-1", "tap + 2**32", "tap - 2**32"])
def test_max_gradient_index_outside_the_plane_raises(bad, shape, layout):
    """Including indices whose low 32 bits name the right tap."""
    x = randn(*shape, dtype=torch.float32)
    if layout == "channels_last":
        x = channels_last(x)
    out, idx = ops.max_pool2d_with_indices(x, [2, 2], [2, 2], [0, 0], [1, 1], False)
    idx = idx.clone()
    plane = shape[2] * shape[3]
    index = eval(bad, {"plane": plane, "tap": int(idx[1, 2, 1, 1])})
    idx[1, 2, 1, 1] = index
    for isa in SUPPORTED_ISAS:
        pycnn.set_cpu_isa(isa)
        with pytest.raises(RuntimeError, match=f"index {index} is outside the input plane of "
                                               f"{shape[2]} x {shape[3]}"):
            ops.max_pool2d_backward(torch.ones_like(out), idx, x.shape, [2, 2], [2, 2],
                                              [0, 0], [1, 1], False)


@pytest.mark.parametrize("grad_layout", [None, "channels_last", "transposed", "expanded"])
@pytest.mark.parametrize("op", ["max", "avg", "adaptive_avg", "adaptive_max"])
def test_gradients_from_any_grad_output_layout(op, grad_layout):
    """grad_output in another layout than the forward's (indices are then
    brought to grad_input's layout) still gives torch's gradient."""
    options = {"max": dict(kernel_size=3, stride=2, padding=1), "avg": dict(kernel_size=2),
               "adaptive_avg": dict(output_size=(3, 4)), "adaptive_max": dict(output_size=(3, 4))}[op]
    for layout in ("contiguous", "channels_last"):
        compare_with_torch(lambda input: OPS[op](arranged(input, layout), options),
                           lambda input: TORCH_OPS[op](arranged(input, layout), options),
                           dict(input=randn(2, 36, 9, 8).requires_grad_()), torch.float32,
                           linear=op in ("avg", "adaptive_avg"), grad_output_layout=grad_layout,
                           what=f"{op} {layout} grad {grad_layout}")


# ------------------------------------------------------------- batch, threads

@pytest.mark.parametrize("op", ["max", "avg", "adaptive_avg", "adaptive_max"])
@pytest.mark.parametrize("batch", [0, 1])
def test_small_batches(op, batch):
    options = {"max": dict(kernel_size=2), "avg": dict(kernel_size=3, stride=2, padding=1),
               "adaptive_avg": dict(output_size=3), "adaptive_max": dict(output_size=3)}[op]
    x = randn(batch, 5, 9, 9, dtype=torch.float32)
    out, _, grad = check_paths_agree(op, x, options)
    assert out.shape[0] == batch and grad.shape == x.shape
    if batch:
        for layout in ("contiguous", "channels_last"):
            check_against_torch(op, x.double(), options, torch.float32, layout)


@pytest.mark.parametrize("op", ["max", "avg", "adaptive_avg", "adaptive_max"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_thread_split_does_not_change_results(op, layout):
    """Rows are split over threads (inside planes for batch 1, inside images
    for channels_last); the results must not depend on the split."""
    options = {"max": dict(kernel_size=3, stride=2, padding=1),
               "avg": dict(kernel_size=3, stride=1, padding=1),
               "adaptive_avg": dict(output_size=(13, 9)),
               "adaptive_max": dict(output_size=(13, 9))}[op]
    x = randn(1, 3, 200, 180, dtype=torch.float32)
    if layout == "channels_last":
        x = randn(1, 40, 96, 80, dtype=torch.float32)
    results = []
    for threads in (1, 2, 3):
        torch.set_num_threads(threads)
        results.append(run(op, x, layout, options))
    for result in results[1:]:
        for a, b in zip(results[0], result):
            if a is not None:
                assert_bitwise_equal(a.contiguous(), b.contiguous(), f"{op} {layout} threads")
    check_against_torch(op, x.double(), options, torch.float32, layout)
