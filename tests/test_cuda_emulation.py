"""pycnn's CUDA kernel code run on the CPU, against torch's CPU ops in float64.

The kernels cannot run without a GPU, but their per-element functors and
implicit-GEMM problems are host-callable: tests/cuda_emulation/emulator.cu
runs them with the launch replaced by loops (and checks the assumptions
the real launch makes).  This checks their index arithmetic, tiling, stride
phases, split-K, layouts and dtypes on every machine, CI included.

The fast kernels (csrc/ops/cuda/conv2d_fast.cuh: tensor cores and FFMA)
run through tests/cuda_emulation/host_model.h: their own block code, with
cp.async, ldmatrix and mma.sync replaced by a host model written from the
PTX ISA, which also checks the pipeline's barrier discipline (a read of a
copy that has not landed before a barrier, a copy into bytes still being
read) and counts shared-memory bank conflicts.  What this cannot check:
timing, hardware races finer than a barrier, and the hardware's own
rounding inside an mma.
test_cuda.py runs the real kernels where a GPU is visible.
"""
import os
import pathlib

import pytest
import torch
import torch.nn.functional as TF

try:
    from cuda_cases import ADAPTIVE_SIZES, AVG_POOL_CASES, CONV_CASES, MAX_POOL_CASES, POOL_INPUT
except ImportError:  # tests/ made a package
    from .cuda_cases import ADAPTIVE_SIZES, AVG_POOL_CASES, CONV_CASES, MAX_POOL_CASES, POOL_INPUT

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Largest allowed max|ours - exact| / max|exact| per dtype, against a float64
# reference on the same (rounded) inputs.  float16/bfloat16 results are
# rounded once, after float32 accumulation: half a unit in the last place.
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
DTYPES = list(TOLERANCE)


@pytest.fixture(scope="module")
def emu():
    if torch.version.cuda is None:
        pytest.skip("this torch has no CUDA support")
    # As in setup.py: without CUDA_HOME torch guesses from nvcc's path.
    if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
        os.environ["CUDA_HOME"] = "/usr/local/cuda"
    from torch.utils import cpp_extension
    if cpp_extension.CUDA_HOME is None:
        pytest.skip("no CUDA toolkit (nvcc) found")
    # The emulator has no device code to speak of: one target is plenty.
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    build = ROOT / "build" / "cuda_emulation"
    build.mkdir(parents=True, exist_ok=True)
    module = cpp_extension.load(
        name="pycnn_cuda_emulation",
        sources=[str(ROOT / "tests" / "cuda_emulation" / "emulator.cu"),
                 str(ROOT / "csrc" / "ops" / "common.cpp"),
                 str(ROOT / "csrc" / "ops" / "large_blocks.cpp")],
        extra_include_paths=[str(ROOT / "csrc")],
        # The host compiler runs the kernels here; c10's bfloat16 conversions
        # read a uint16_t through CUDA's __nv_bfloat16, which gcc's
        # strict-aliasing optimisations reorder across vector stores.
        extra_cflags=["-O2", "-fno-strict-aliasing"],
        extra_cuda_cflags=["-O2", "--expt-relaxed-constexpr", "-Xcompiler", "-fno-strict-aliasing"],
        build_directory=str(build), verbose=False)
    module.set_poison_outputs(True)  # unwritten outputs show up as NaN
    yield module
    module.set_poison_outputs(False)


def assert_close(ours, exact, tolerance, what):
    assert ours.shape == exact.shape, f"{what}: shape {list(ours.shape)} != {list(exact.shape)}"
    ours, exact = ours.double(), exact.double()
    assert not ours.isnan().any(), f"{what}: NaN (an element no kernel wrote?)"
    if exact.numel() == 0:
        return
    finite = torch.isfinite(exact)
    assert torch.equal(ours[~finite], exact[~finite]), f"{what}: infinities differ"
    scale = exact[finite].abs().max().item() if finite.any() else 0.0
    err = (ours[finite] - exact[finite]).abs().max().item() if finite.any() else 0.0
    err = err / scale if scale > 0 else err
    assert err <= tolerance, f"{what}: relative error {err:.3g} > {tolerance:g}"


def pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def rounded(shape, dtype, generator):
    """Random values exactly representable in dtype (as float64 and in dtype)."""
    x = torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)
    return x, x.double()


# ----------------------------------------------------------------------------- conv2d

def conv_paths(case):
    c, kh, kw, groups = (CONV_CASES[case][i] for i in (1, 5, 6, 10))
    if c // groups != 1:
        return ["gemm"]
    fast = kh == kw and kh in (3, 5, 7)
    return ["gemm", "depthwise"] + (["depthwise_fast"] if fast else [])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case,path", [(c, p) for c in CONV_CASES for p in conv_paths(c)])
def test_conv2d_kernels(emu, case, path, dtype):
    n, c, h, w, k, kh, kw, stride, padding, dilation, groups, has_bias = CONV_CASES[case]
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    gen = torch.Generator().manual_seed(0)
    x, x64 = rounded((n, c, h, w), dtype, gen)
    wt, w64 = rounded((k, c // groups, kh, kw), dtype, gen)
    b, b64 = rounded((k,), dtype, gen) if has_bias else (None, None)
    tol = TOLERANCE[dtype]

    out = emu.conv2d(x, wt, b, stride, padding, dilation, groups, path)
    exact = TF.conv2d(x64, w64, b64, stride, padding, dilation, groups)
    assert out.dtype == dtype
    assert_close(out, exact, tol, f"{case} output")

    g, g64 = rounded(tuple(exact.shape), dtype, gen)
    exact_gi, exact_gw, exact_gb = torch.ops.aten.convolution_backward(
        g64, x64, w64, [k], stride, padding, dilation, False, [0, 0], groups, [True, True, True])
    gi = emu.conv2d_input_backward(g, wt, list(x.shape), stride, padding, dilation, groups, path)
    assert_close(gi, exact_gi, tol, f"{case} grad_input")
    gw, splits = emu.conv2d_weight_backward(g, x, list(wt.shape), stride, padding, dilation,
                                            groups, path)
    assert_close(gw, exact_gw, tol, f"{case} grad_weight")
    if path == "gemm" and case == "split_k":
        assert splits > 1, "the split_k case no longer splits: it tests nothing"
    if path == "depthwise_fast" and case == "depthwise_7x7_many_chunks":
        assert splits > 1, "grad_weight took one chunk: the chunk sums are not tested"
    assert_close(emu.conv2d_bias_backward(g), exact_gb, tol, f"{case} grad_bias")


@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
@pytest.mark.parametrize("case", ["partial_chunks_two_n_tiles_stride2", "depthwise", "rgb_7x7_flat_k"])
def test_conv2d_kernels_layouts(emu, case, layout):
    n, c, h, w, k, kh, kw, stride, padding, dilation, groups, has_bias = CONV_CASES[case]
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    gen = torch.Generator().manual_seed(1)
    if layout == "channels_last":
        x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
        x = x.contiguous(memory_format=torch.channels_last)
        wt = torch.randn(k, c // groups, kh, kw, generator=gen, dtype=torch.float64)
        wt = wt.contiguous(memory_format=torch.channels_last)
    else:
        x = torch.randn(n * 2, c + 3, h * 2, w + 1, generator=gen, dtype=torch.float64)
        x = x[::2, 1:c + 1, ::2, 1:]
        wt = torch.randn(k, c // groups, kw, kh, generator=gen, dtype=torch.float64).transpose(2, 3)
    b = torch.randn(k, generator=gen, dtype=torch.float64)
    exact = TF.conv2d(x, wt, b, stride, padding, dilation, groups)
    g = torch.randn(exact.shape, generator=gen, dtype=torch.float64)
    if layout == "channels_last":
        g = g.contiguous(memory_format=torch.channels_last)
    else:
        g = torch.cat([g, g], dim=3)[..., ::2]  # a strided grad_output
    exact_gi, exact_gw, exact_gb = torch.ops.aten.convolution_backward(
        g, x, wt, [k], stride, padding, dilation, False, [0, 0], groups, [True, True, True])
    for path in conv_paths(case):
        out = emu.conv2d(x, wt, b, stride, padding, dilation, groups, path)
        assert out.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
        assert_close(out, exact, 1e-12, f"{case} {layout} {path} output")
        gi = emu.conv2d_input_backward(g, wt, list(x.shape), stride, padding, dilation, groups, path)
        assert_close(gi, exact_gi, 1e-12, f"{case} {layout} {path} grad_input")
        gw, _ = emu.conv2d_weight_backward(g, x, list(wt.shape), stride, padding, dilation, groups,
                                           path)
        assert_close(gw, exact_gw, 1e-12, f"{case} {layout} {path} grad_weight")
        assert_close(emu.conv2d_bias_backward(g), exact_gb, 1e-12, f"{case} {layout} grad_bias")


NARROW_CASES = {c: v for c, v in CONV_CASES.items()
                if v[1] <= 4 and v[10] == 1 and v[9] in (1, (1, 1))}
NARROW_CASES.update({
    # A stride along w that does not divide 32: one pixel per thread.
    "rgb_stride3_one_pixel_per_thread": (2, 3, 17, 20, 5, 5, 5, 3, 1, 1, 1, False),
    # Patches of 4 x 32 pixels per row: three across, the last one partial.
    "rgb_wider_than_two_patches": (1, 3, 9, 300, 4, 7, 7, 2, 3, 1, 1, False),
})


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", list(NARROW_CASES))
def test_conv2d_input_backward_narrow(emu, case, dtype, layout):
    """grad_input with at most four input channels: each thread owns pixels
    of one stride phase and all their channels."""
    n, c, h, w, k, kh, kw, stride, padding, dilation, groups, _ = NARROW_CASES[case]
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    gen = torch.Generator().manual_seed(4)
    wt, w64 = rounded((k, c, kh, kw), dtype, gen)
    out_shape = TF.conv2d(torch.zeros(1, c, h, w, dtype=torch.float64), w64, None, stride, padding).shape
    g, g64 = rounded((n, k) + tuple(out_shape[2:]), dtype, gen)
    if layout == "channels_last":
        g = g.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":
        # Every other element, the ones between NaN: a stray read shows.
        g = torch.stack([g, torch.full_like(g, float("nan"))], dim=-1).flatten(-2)[..., ::2]
        wt = wt.transpose(2, 3).contiguous().transpose(2, 3)
    exact = torch.ops.aten.convolution_backward(
        g64, torch.zeros(n, c, h, w, dtype=torch.float64), w64, [k], stride, padding, dilation, False,
        [0, 0], 1, [True, False, False])[0]
    emu.counters(True)
    gi = emu.conv2d_input_backward(g, wt, [n, c, h, w], stride, padding, dilation, 1, "narrow")
    # Four pixels of one stride phase per thread where the stride along w
    # divides the 32 lanes of a row, else one.
    assert emu.counters(False)["narrow_pixels"] == (4 if 32 % stride[1] == 0 else 1)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert gi.is_contiguous(memory_format=fmt)
    assert_close(gi, exact, TOLERANCE[dtype], f"{case} grad_input")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
@pytest.mark.parametrize("padding", [0, 1, 2, (1, 0)])
@pytest.mark.parametrize("size", [(7, 9), (6, 6), (3, 4)])
def test_conv2d_winograd(emu, size, padding, layout):
    """F(2x2, 3x3): forward (bias fused) and grad_input (the rotated, transposed
    filter) against float64 torch, odd sizes leaving partial edge tiles."""
    gen = torch.Generator().manual_seed(5)
    h, w = size
    x, x64 = rounded((2, 6, h, w), torch.float32, gen)
    wt, w64 = rounded((5, 6, 3, 3), torch.float32, gen)
    b, b64 = rounded((5,), torch.float32, gen)
    if layout == "channels_last":
        x, wt = x.contiguous(memory_format=torch.channels_last), wt.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = torch.stack([x, torch.full_like(x, float("nan"))], dim=-1).flatten(-2)[..., ::2]
        wt = wt.transpose(2, 3).contiguous().transpose(2, 3)
    pad = pair(padding)
    exact = TF.conv2d(x64, w64, b64, 1, pad)
    out = emu.conv2d_winograd(x, wt, b, pad, False)
    assert out.is_contiguous(memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)
    # Winograd's transforms add a few roundings: a few times the direct sum's error.
    assert_close(out, exact, 4 * TOLERANCE[torch.float32], f"{size} {padding} {layout} output")

    g, g64 = rounded(tuple(exact.shape), torch.float32, gen)
    if layout == "channels_last":
        g = g.contiguous(memory_format=torch.channels_last)
    exact_gi = torch.ops.aten.convolution_backward(
        g64, x64, w64, [5], [1, 1], pad, [1, 1], False, [0, 0], 1, [True, False, False])[0]
    gi = emu.conv2d_winograd(g, wt, None, [2 - pad[0], 2 - pad[1]], True)
    assert tuple(gi.shape) == tuple(x.shape)
    assert_close(gi, exact_gi, 4 * TOLERANCE[torch.float32], f"{size} {padding} {layout} grad_input")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
@pytest.mark.parametrize("padding", [0, 1, 2, (1, 0)])
@pytest.mark.parametrize("size", [(7, 9), (6, 6), (3, 4), (40, 38)])
def test_conv2d_winograd_weight_grad(emu, size, padding, layout):
    """F(2x2, 3x3) transposed, for grad_weight, against float64 torch: odd
    output sizes leave edge tiles whose gradient past the edge counts as
    zero, and the largest size splits the 16 GEMMs' reduction over tiles."""
    gen = torch.Generator().manual_seed(7)
    h, w = size
    pad = pair(padding)
    x, x64 = rounded((3, 6, h, w), torch.float32, gen)
    g, g64 = rounded((3, 5, h + 2 * pad[0] - 2, w + 2 * pad[1] - 2), torch.float32, gen)
    if layout == "channels_last":
        x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
    elif layout == "sliced":
        x, g = (torch.stack([t, torch.full_like(t, float("nan"))], dim=-1).flatten(-2)[..., ::2]
                for t in (x, g))
    exact = torch.ops.aten.convolution_backward(
        g64, x64, torch.zeros(5, 6, 3, 3, dtype=torch.float64), [5], [1, 1], pad, [1, 1], False,
        [0, 0], 1, [False, True, False])[1]
    gw, splits = emu.conv2d_winograd_weight_grad(g, x, pad)
    assert tuple(gw.shape) == (5, 6, 3, 3)
    if size == (40, 38):
        assert splits > 1
    assert_close(gw, exact, 4 * TOLERANCE[torch.float32], f"{size} {padding} {layout} grad_weight")


RELU_CASES = ["3x3", "depthwise", "partial_chunks_two_n_tiles_stride2"]


def relu_forwards(emu, case):
    """(name, forward(x, w, b, relu), dtypes) of every forward kernel that takes the case."""
    n, c, h, w, k, kh, kw, stride, padding, dilation, groups, _ = CONV_CASES[case]
    opts = (pair(stride), pair(padding), pair(dilation), groups)
    found = [(path, lambda x, wt, b, relu, p=path: emu.conv2d(x, wt, b, *opts, p, relu), DTYPES)
             for path in conv_paths(case)]
    for family, dtype, _ in FAST:
        if c // groups > 1 or family == "ffma":
            found.append((f"fast {family} {dtype}", lambda x, wt, b, relu, f=family:
                          emu.conv2d_fast(x, wt, b, *opts, f, 0, relu), [dtype]))
    if (kh, kw, stride, dilation, groups) == (3, 3, 1, 1, 1):
        found.append(("winograd", lambda x, wt, b, relu: emu.conv2d_winograd(x, wt, b, pair(padding), False, relu),
                      [torch.float32]))
    return found


@pytest.mark.parametrize("case", RELU_CASES)
def test_conv2d_relu_epilogue_on_every_forward_kernel(emu, case):
    """conv2d_relu's epilogue: bitwise relu of the same kernel's plain output
    (the ReLU is applied before the one rounding to the output's dtype, and
    commutes with it), nothing left unwritten.  (No NaN input here: the
    emulator takes a NaN in shared memory for an unwritten slot; the CPU
    tests check NaN through the same relu_value.)"""
    n, c, h, w, k, kh, kw, *_ = CONV_CASES[case]
    gen = torch.Generator().manual_seed(3)
    kernels = relu_forwards(emu, case)
    assert len(kernels) >= 3, [name for name, _, _ in kernels]
    for name, forward, dtypes in kernels:
        for dtype in dtypes:
            x, _ = rounded((n, c, h, w), dtype, gen)
            wt, _ = rounded((k, c // CONV_CASES[case][10], kh, kw), dtype, gen)
            b, _ = rounded((k,), dtype, gen)
            plain = forward(x, wt, b, False)
            fused = forward(x, wt, b, True)
            assert (plain < 0).any() and (plain > 0).any(), f"{case} {name} {dtype}: no sign change to test"
            assert not fused.isnan().any(), f"{case} {name} {dtype}: an output left unwritten"
            assert torch.equal(fused, torch.relu(plain)), f"{case} {name} {dtype}"


def test_winograd_serves_many_channel_3x3_stride1_only(emu):
    vgg = ([64, 512, 14, 14], [512, 512, 3, 3])
    assert emu.winograd_applies(*vgg, [1, 1], [1, 1], [1, 1], 1, False)
    assert emu.winograd_applies(*vgg, [1, 1], [1, 1], [1, 1], 1, True)
    assert not emu.winograd_applies(*vgg, [2, 2], [1, 1], [1, 1], 1, False)       # strided
    assert not emu.winograd_applies(*vgg, [1, 1], [1, 1], [2, 2], 1, False)       # dilated
    assert not emu.winograd_applies(*vgg, [1, 1], [1, 1], [1, 1], 2, False)       # grouped
    assert not emu.winograd_applies(*vgg, [1, 1], [3, 3], [1, 1], 1, True)        # grad_input, pad 3
    assert emu.winograd_applies(*vgg, [1, 1], [3, 3], [1, 1], 1, False)
    assert not emu.winograd_applies([64, 64, 56, 56], [64, 64, 3, 3], [1, 1], [1, 1], [1, 1], 1, False)
    assert not emu.winograd_applies([64, 512, 14, 14], [512, 512, 5, 5], [1, 1], [2, 2], [1, 1], 1, False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_conv2d_bias_backward_sums_in_chunks(emu, dtype):
    """Few channels over many pixels: the sum goes in chunks, then chunk totals."""
    shape = (3, 5, 40, 50)
    assert emu.reduce_chunks(shape[1], shape[0] * shape[2] * shape[3]) > 1
    g, g64 = rounded(shape, dtype, torch.Generator().manual_seed(3))
    assert_close(emu.conv2d_bias_backward(g), g64.sum((0, 2, 3)), TOLERANCE[dtype], "grad_bias")
    cl = emu.conv2d_bias_backward(g.contiguous(memory_format=torch.channels_last))
    assert_close(cl, g64.sum((0, 2, 3)), TOLERANCE[dtype], "grad_bias channels_last")


def test_conv2d_weight_backward_split_choice_is_shape_only(emu):
    """Many tiles: one split, written straight into grad_weight."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 64, 4, 4, generator=gen, dtype=torch.float64)
    g = torch.randn(1, 640, 4, 4, generator=gen, dtype=torch.float64)
    gw, splits = emu.conv2d_weight_backward(g, x, [640, 64, 3, 3], [1, 1], [1, 1], [1, 1], 1, "gemm")
    assert splits == 1
    exact = torch.ops.aten.convolution_backward(g, x, torch.empty(640, 64, 3, 3, dtype=torch.float64),
                                                [640], [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                [False, True, False])[1]
    assert_close(gw, exact, 1e-12, "grad_weight")


# ----------------------------------------------------------------------------- fast kernels

# family, dtype, tolerance: the tensor-core kernels in float16, bfloat16 and
# float32 as TF32 (operands rounded to 11 significant bits), the FFMA
# kernels in float32.
FAST = [("tc", torch.float16, 2e-3), ("tc", torch.bfloat16, 1e-2), ("tc", torch.float32, 2e-3),
        ("ffma", torch.float32, 1e-5)]
FAST_IDS = ["f16", "bf16", "tf32", "ffma"]


def conflicts(emu):
    c = emu.counters(reset=True)
    return c["conflicted_loads"], c


def test_fast_divmod(emu):
    assert emu.check_fast_divmod(2048, 20000, 7) > 40000


def test_fragment_maps_match_the_ptx_figures(emu):
    """Every register element the kernels' ldmatrix / shared-load maps produce
    is the matrix element the mma.sync fragment figure requires, for every
    tile layout; every swizzle is a permutation."""
    assert emu.check_fragments() > 30000


def run_fast(emu, case, family, dtype, tile=0, layout="nchw", seed=0):
    n, c, h, w, k, kh, kw, stride, padding, dilation, groups, has_bias = CONV_CASES[case]
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    gen = torch.Generator().manual_seed(seed)
    x, x64 = rounded((n, c, h, w), dtype, gen)
    wt, w64 = rounded((k, c // groups, kh, kw), dtype, gen)
    b, b64 = rounded((k,), dtype, gen) if has_bias else (None, None)
    exact = TF.conv2d(x64, w64, b64, stride, padding, dilation, groups)
    g, g64 = rounded(tuple(exact.shape), dtype, gen)
    if layout == "channels_last":
        x, wt, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, wt, g))
    exact_gi, exact_gw, _ = torch.ops.aten.convolution_backward(
        g64, x64, w64, [k], stride, padding, dilation, False, [0, 0], groups, [True, True, False])
    out = emu.conv2d_fast(x, wt, b, stride, padding, dilation, groups, family, tile)
    gi = emu.conv2d_input_backward_fast(g, wt, list(x.shape), stride, padding, dilation, groups,
                                        family, tile)
    gw, splits = emu.conv2d_weight_backward_fast(g, x, list(wt.shape), stride, padding, dilation,
                                                 groups, family, tile)
    return (out, gi, gw), (exact, exact_gi, exact_gw), splits


@pytest.mark.parametrize("family,dtype,tol", FAST, ids=FAST_IDS)
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_fast_kernels(emu, case, family, dtype, tol):
    emu.counters(reset=True)
    ours, exact, splits = run_fast(emu, case, family, dtype)
    for name, o, e in zip(("output", "grad_input", "grad_weight"), ours, exact):
        assert o.dtype == dtype
        assert_close(o, e, tol, f"{case} {name}")
    bad, counts = conflicts(emu)
    assert bad == 0, f"{bad} of {counts['shared_loads']} shared loads had bank conflicts"
    assert counts["mma"] > 0 if family == "tc" else counts["mma"] == 0


@pytest.mark.parametrize("family,dtype,tol", FAST, ids=FAST_IDS)
@pytest.mark.parametrize("case", ["partial_chunks_two_n_tiles_stride2", "1x1_three_n_tiles",
                                  "dilation3_kernel4_stride2"])
def test_conv2d_fast_tiles_sum_in_one_order(emu, case, family, dtype, tol):
    """Every tile shape gives bitwise the same output and grad_input (each
    element is summed over K in one order whatever the tile); grad_weight
    is right with each."""
    results = {}
    for tile in (1, 2, 3):
        ours, exact, _ = run_fast(emu, case, family, dtype, tile=tile)
        for name, o, e in zip(("output", "grad_input", "grad_weight"), ours, exact):
            assert_close(o, e, tol, f"{case} tile {tile} {name}")
        results[tile] = ours
    for tile in (2, 3):
        assert torch.equal(results[tile][0], results[1][0]), f"output differs with tile {tile}"
        assert torch.equal(results[tile][1], results[1][1]), f"grad_input differs with tile {tile}"


@pytest.mark.parametrize("family,dtype,tol", FAST, ids=FAST_IDS)
@pytest.mark.parametrize("case", ["3x3", "groups4", "1x1_three_n_tiles"])
def test_conv2d_fast_channels_last_reads_in_place(emu, case, family, dtype, tol):
    """channels_last operands whose groups are whole granules are read in
    place, NCHW ones packed first: the same sums, bitwise."""
    nchw, exact, _ = run_fast(emu, case, family, dtype)
    emu.counters(reset=True)
    cl, _, _ = run_fast(emu, case, family, dtype, layout="channels_last")
    for name, a, b, e in zip(("output", "grad_input", "grad_weight"), nchw, cl, exact):
        assert_close(b, e, tol, f"{case} channels_last {name}")
        assert torch.equal(a, b), f"{case} {name}: channels_last and NCHW differ"
    assert cl[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("family,dtype,tol", FAST, ids=FAST_IDS)
def test_conv2d_fast_sliced_operands(emu, family, dtype, tol):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(4, 19, 14, 17, generator=gen, dtype=torch.float64)[::2, 1:17, :, 1:].to(dtype)
    wt = torch.randn(24, 16, 3, 3, generator=gen, dtype=torch.float64).to(dtype).transpose(2, 3)
    b = torch.randn(24, generator=gen, dtype=torch.float64).to(dtype)
    exact = TF.conv2d(x.double(), wt.double(), b.double(), [1, 2], [1, 0], [1, 1], 1)
    g = torch.randn(exact.shape[0], exact.shape[1], exact.shape[2], exact.shape[3] * 2,
                    generator=gen, dtype=torch.float64)[..., ::2].to(dtype)
    exact_gi, exact_gw, _ = torch.ops.aten.convolution_backward(
        g.double(), x.double(), wt.double(), [24], [1, 2], [1, 0], [1, 1], False, [0, 0], 1,
        [True, True, False])
    out = emu.conv2d_fast(x, wt, b, [1, 2], [1, 0], [1, 1], 1, family, 0)
    assert_close(out, exact, tol, "output")
    gi = emu.conv2d_input_backward_fast(g, wt, list(x.shape), [1, 2], [1, 0], [1, 1], 1, family, 0)
    assert_close(gi, exact_gi, tol, "grad_input")
    gw, _ = emu.conv2d_weight_backward_fast(g, x, list(wt.shape), [1, 2], [1, 0], [1, 1], 1, family, 0)
    assert_close(gw, exact_gw, tol, "grad_weight")


@pytest.mark.parametrize("family,dtype,tol", FAST, ids=FAST_IDS)
def test_conv2d_fast_many_steps_and_splits(emu, family, dtype, tol):
    """Full tiles, several K steps per stage ring, several M tiles, grad_weight
    split many ways."""
    gen = torch.Generator().manual_seed(6)
    x, x64 = rounded((3, 40, 18, 18), dtype, gen)
    wt, w64 = rounded((136, 40, 3, 3), dtype, gen)
    exact = TF.conv2d(x64, w64, None, 1, 1)
    g, g64 = rounded(tuple(exact.shape), dtype, gen)
    exact_gi, exact_gw, _ = torch.ops.aten.convolution_backward(
        g64, x64, w64, [136], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, True, False])
    assert_close(emu.conv2d_fast(x, wt, None, [1, 1], [1, 1], [1, 1], 1, family, 0), exact, tol,
                 "output")
    gi = emu.conv2d_input_backward_fast(g, wt, list(x.shape), [1, 1], [1, 1], [1, 1], 1, family, 0)
    assert_close(gi, exact_gi, tol, "grad_input")
    gw, splits = emu.conv2d_weight_backward_fast(g, x, list(wt.shape), [1, 1], [1, 1], [1, 1], 1,
                                                 family, 0)
    assert splits > 1
    assert_close(gw, exact_gw, tol, "grad_weight")


def test_conv2d_fast_tf32_rounds_operands(emu):
    """float32 on the tensor cores is TF32: operands exactly representable in
    TF32 give float32-accurate results, others do not (so TF32 is really on)."""
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 16, 9, 9, generator=gen)
    wt = torch.randn(16, 16, 3, 3, generator=gen)
    tf32_x = (x.view(torch.int32) & ~0x1fff).view(torch.float32)
    tf32_w = (wt.view(torch.int32) & ~0x1fff).view(torch.float32)
    exact = TF.conv2d(tf32_x.double(), tf32_w.double(), None, 1, 1)
    out = emu.conv2d_fast(tf32_x, tf32_w, None, [1, 1], [1, 1], [1, 1], 1, "tc", 0)
    assert_close(out, exact, 1e-6, "TF32-exact operands")
    out = emu.conv2d_fast(x, wt, None, [1, 1], [1, 1], [1, 1], 1, "tc", 0)
    err = ((out.double() - TF.conv2d(x.double(), wt.double(), None, 1, 1)).abs().max()).item()
    assert err > 1e-5, "float32 operands passed through the tensor cores unrounded"


# ----------------------------------------------------------------------------- pooling

def pool_args(opt):
    kernel = pair(opt["kernel_size"])
    stride = pair(opt["stride"]) if "stride" in opt else []
    return (kernel, stride, pair(opt.get("padding", 0)), pair(opt.get("dilation", 1)),
            bool(opt.get("ceil_mode", False)))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(MAX_POOL_CASES))
def test_max_pool2d_kernels(emu, case, dtype):
    kernel, stride, padding, dilation, ceil_mode = pool_args(MAX_POOL_CASES[case])
    gen = torch.Generator().manual_seed(0)
    x, x64 = rounded(POOL_INPUT, dtype, gen)
    out, idx = emu.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    exact, exact_idx = torch.ops.aten.max_pool2d_with_indices(
        x64, kernel, stride or kernel, padding, dilation, ceil_mode)
    assert_close(out, exact, 0.0, f"{case} output")
    if dtype in (torch.float32, torch.float64):  # no ties: torch's choice is unique
        assert torch.equal(idx, exact_idx)
    assert torch.equal(out.double().flatten(2), x64.flatten(2).gather(2, idx.flatten(2)))
    g, g64 = rounded(tuple(out.shape), dtype, gen)
    gi = emu.max_pool2d_backward(g, idx, list(x.shape), kernel, stride, padding, dilation, ceil_mode)
    exact_gi = torch.ops.aten.max_pool2d_with_indices_backward(
        g64, x64, kernel, stride or kernel, padding, dilation, ceil_mode, idx)
    assert_close(gi, exact_gi, TOLERANCE[dtype], f"{case} grad_input")


@pytest.mark.parametrize("case", list(MAX_POOL_CASES))
def test_max_pool2d_nan_ties_and_infinities(emu, case):
    """The CPU kernel's rule, index for index: NaN wins, first maximum among equals."""
    import pycnn.functional as F
    opt = MAX_POOL_CASES[case]
    kernel, stride, padding, dilation, ceil_mode = pool_args(opt)
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(-2, 3, POOL_INPUT, generator=gen).double()
    x[torch.rand(POOL_INPUT, generator=gen) < 0.05] = float("nan")
    x[:, :, :6, :7] = float("-inf")
    out, idx = emu.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    cpu_out, cpu_idx = F.max_pool2d(x, **opt, return_indices=True)
    assert torch.equal(idx, cpu_idx)
    assert torch.equal(out.nan_to_num(7.0), cpu_out.nan_to_num(7.0))
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    gi = emu.max_pool2d_backward(g, idx, list(x.shape), kernel, stride, padding, dilation, ceil_mode)
    cpu_gi = torch.ops.pycnn.max_pool2d_backward(g, cpu_idx, list(x.shape), kernel, stride or kernel,
                                                 padding, dilation, ceil_mode)
    assert_close(gi, cpu_gi, 1e-12, f"{case} grad_input")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(AVG_POOL_CASES))
def test_avg_pool2d_kernels(emu, case, dtype):
    opt = AVG_POOL_CASES[case]
    kernel, stride, padding, _, ceil_mode = pool_args(opt)
    include_pad = bool(opt.get("count_include_pad", True))
    divisor = opt.get("divisor_override")
    gen = torch.Generator().manual_seed(0)
    x, x64 = rounded(POOL_INPUT, dtype, gen)
    out = emu.avg_pool2d(x, kernel, stride, padding, ceil_mode, include_pad, divisor or 0)
    exact = TF.avg_pool2d(x64, kernel, stride or kernel, padding, ceil_mode, include_pad, divisor)
    assert_close(out, exact, TOLERANCE[dtype], f"{case} output")
    g, g64 = rounded(tuple(out.shape), dtype, gen)
    gi = emu.avg_pool2d_backward(g, list(x.shape), kernel, stride, padding, ceil_mode, include_pad,
                                 divisor or 0)
    exact_gi = torch.ops.aten.avg_pool2d_backward(g64, x64, kernel, stride or kernel, padding,
                                                  ceil_mode, include_pad, divisor)
    assert_close(gi, exact_gi, TOLERANCE[dtype], f"{case} grad_input")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("size", list(ADAPTIVE_SIZES))
def test_adaptive_pool2d_kernels(emu, size, dtype):
    out_size = list(ADAPTIVE_SIZES[size])
    gen = torch.Generator().manual_seed(0)
    x, x64 = rounded(POOL_INPUT, dtype, gen)
    tol = TOLERANCE[dtype]

    out = emu.adaptive_avg_pool2d(x, out_size)
    exact = TF.adaptive_avg_pool2d(x64, out_size)
    assert_close(out, exact, tol, f"avg {size} output")
    g, g64 = rounded(tuple(out.shape), dtype, gen)
    gi = emu.adaptive_avg_pool2d_backward(g, list(x.shape))
    assert_close(gi, torch.ops.aten._adaptive_avg_pool2d_backward(g64, x64), tol, f"avg {size} grad")

    out, idx = emu.adaptive_max_pool2d(x, out_size)
    exact, exact_idx = TF.adaptive_max_pool2d(x64, out_size, return_indices=True)
    assert_close(out, exact, 0.0, f"max {size} output")
    if dtype in (torch.float32, torch.float64):
        assert torch.equal(idx, exact_idx)
    assert torch.equal(out.double().flatten(2), x64.flatten(2).gather(2, idx.flatten(2)))
    gi = emu.adaptive_max_pool2d_backward(g, idx, list(x.shape))
    exact_gi = torch.ops.aten.adaptive_max_pool2d_backward(g64, x64, idx)
    assert_close(gi, exact_gi, tol, f"max {size} grad")


@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
def test_pool_kernels_layouts(emu, layout):
    gen = torch.Generator().manual_seed(4)
    n, c, h, w = POOL_INPUT
    if layout == "channels_last":
        x = torch.randn(POOL_INPUT, generator=gen, dtype=torch.float64)
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        x = torch.randn(n, c * 2, h + 2, w * 2, generator=gen, dtype=torch.float64)
        x = x[:, ::2, 1:h + 1, ::2]
    cl = layout == "channels_last"

    out, idx = emu.max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], True)
    exact, exact_idx = torch.ops.aten.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1], [1, 1], True)
    assert out.is_contiguous(memory_format=torch.channels_last) == cl
    assert_close(out, exact, 0.0, "max output")
    assert torch.equal(idx, exact_idx)
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    if cl:
        g = g.contiguous(memory_format=torch.channels_last)
    gi = emu.max_pool2d_backward(g, idx, list(x.shape), [3, 3], [2, 2], [1, 1], [1, 1], True)
    assert gi.is_contiguous(memory_format=torch.channels_last) == cl
    exact_gi = torch.ops.aten.max_pool2d_with_indices_backward(g, x, [3, 3], [2, 2], [1, 1], [1, 1],
                                                               True, idx)
    assert_close(gi, exact_gi, 1e-12, "max grad")

    out = emu.avg_pool2d(x, [3, 3], [2, 2], [1, 1], True, False, 0)
    assert_close(out, TF.avg_pool2d(x, 3, 2, 1, True, False), 1e-12, "avg output")
    gi = emu.avg_pool2d_backward(g, list(x.shape), [3, 3], [2, 2], [1, 1], True, False, 0)
    exact_gi = torch.ops.aten.avg_pool2d_backward(g, x, [3, 3], [2, 2], [1, 1], True, False, None)
    assert_close(gi, exact_gi, 1e-12, "avg grad")

    out = emu.adaptive_avg_pool2d(x, [5, 7])
    assert_close(out, TF.adaptive_avg_pool2d(x, [5, 7]), 1e-12, "adaptive avg output")
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    gi = emu.adaptive_avg_pool2d_backward(g, list(x.shape))
    assert_close(gi, torch.ops.aten._adaptive_avg_pool2d_backward(g, x), 1e-12, "adaptive avg grad")
    out, idx = emu.adaptive_max_pool2d(x, [5, 7])
    exact, exact_idx = TF.adaptive_max_pool2d(x, [5, 7], return_indices=True)
    assert_close(out, exact, 0.0, "adaptive max output")
    assert torch.equal(idx, exact_idx)
    gi = emu.adaptive_max_pool2d_backward(g, idx, list(x.shape))
    assert_close(gi, torch.ops.aten.adaptive_max_pool2d_backward(g, x, idx), 1e-12, "adaptive max grad")


# ----------------------------------------------------------------------------- fast pooling

# (input shape, layout, the vector width the plan must choose for float32 / 16-bit types)
FAST_POOL_INPUTS = {
    "nchw": ((3, 5, 17, 19), False, (1, 1)),
    "channels_last_scalar": ((3, 5, 17, 19), True, (1, 1)),
    "channels_last_vector": ((2, 16, 17, 19), True, (4, 8)),
}
FAST_POOL_DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def fast_pool_input(layout, dtype, seed, special=False):
    shape, cl, widths = FAST_POOL_INPUTS[layout]
    gen = torch.Generator().manual_seed(seed)
    if special:  # ties, NaN and -inf, as in the reference tests
        x = torch.randint(-2, 3, shape, generator=gen).double()
        x[torch.rand(shape, generator=gen) < 0.05] = float("nan")
        x[:, :, :6, :7] = float("-inf")
    else:
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
    x = x.to(dtype)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    width = widths[0] if dtype == torch.float32 else widths[1]
    return x, width, gen


def assert_bitwise(ours, reference, what):
    assert ours.shape == reference.shape, what
    assert ours.stride() == reference.stride(), f"{what}: layout differs"
    same = (ours == reference) | (ours.isnan() & reference.isnan())
    assert bool(same.all()), f"{what}: {int((~same).sum())} elements differ from the reference kernel"


@pytest.mark.parametrize("dtype", FAST_POOL_DTYPES, ids=str)
@pytest.mark.parametrize("layout", list(FAST_POOL_INPUTS))
@pytest.mark.parametrize("case", list(MAX_POOL_CASES))
@pytest.mark.parametrize("special", [False, True], ids=["random", "nan_ties_inf"])
def test_max_pool2d_fast_kernels_match_reference(emu, case, layout, dtype, special):
    """The fast functors compute exactly what the reference functors do
    (values, indices, NaN/tie rules, gradient sums) in every layout."""
    kernel, stride, padding, dilation, ceil_mode = pool_args(MAX_POOL_CASES[case])
    x, width, gen = fast_pool_input(layout, dtype, 0, special)
    out, idx = emu.max_pool2d_fast(x, kernel, stride, padding, dilation, ceil_mode)
    assert emu.counters(reset=True)["pool_vector"] == width
    ref_out, ref_idx = emu.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    assert_bitwise(out, ref_out, f"{case} output")
    assert torch.equal(idx, ref_idx), f"{case} indices differ"
    g = torch.randn(out.shape, generator=gen).to(dtype)
    if layout != "nchw":
        g = g.contiguous(memory_format=torch.channels_last)
    gi = emu.max_pool2d_backward_fast(g, idx, list(x.shape), kernel, stride, padding, dilation, ceil_mode)
    ref_gi = emu.max_pool2d_backward(g, idx, list(x.shape), kernel, stride, padding, dilation, ceil_mode)
    assert_bitwise(gi, ref_gi, f"{case} grad_input")


@pytest.mark.parametrize("dtype", FAST_POOL_DTYPES, ids=str)
@pytest.mark.parametrize("layout", list(FAST_POOL_INPUTS))
@pytest.mark.parametrize("case", list(AVG_POOL_CASES))
def test_avg_pool2d_fast_kernels_match_reference(emu, case, layout, dtype):
    opt = AVG_POOL_CASES[case]
    kernel, stride, padding, _, ceil_mode = pool_args(opt)
    include_pad = bool(opt.get("count_include_pad", True))
    divisor = opt.get("divisor_override") or 0
    x, width, gen = fast_pool_input(layout, dtype, 1)
    out = emu.avg_pool2d_fast(x, kernel, stride, padding, ceil_mode, include_pad, divisor)
    assert emu.counters(reset=True)["pool_vector"] == width
    assert_bitwise(out, emu.avg_pool2d(x, kernel, stride, padding, ceil_mode, include_pad, divisor),
                   f"{case} output")
    g = torch.randn(out.shape, generator=gen).to(dtype)
    if layout != "nchw":
        g = g.contiguous(memory_format=torch.channels_last)
    gi = emu.avg_pool2d_backward_fast(g, list(x.shape), kernel, stride, padding, ceil_mode,
                                      include_pad, divisor)
    ref_gi = emu.avg_pool2d_backward(g, list(x.shape), kernel, stride, padding, ceil_mode,
                                     include_pad, divisor)
    assert_bitwise(gi, ref_gi, f"{case} grad_input")


@pytest.mark.parametrize("dtype", FAST_POOL_DTYPES, ids=str)
@pytest.mark.parametrize("layout", list(FAST_POOL_INPUTS))
@pytest.mark.parametrize("size", list(ADAPTIVE_SIZES))
def test_adaptive_pool2d_fast_kernels_match_reference(emu, size, layout, dtype):
    out_size = list(ADAPTIVE_SIZES[size])
    x, width, gen = fast_pool_input(layout, dtype, 2)
    cl = layout != "nchw"

    out = emu.adaptive_avg_pool2d_fast(x, out_size)
    assert emu.counters(reset=True)["pool_vector"] == width
    assert_bitwise(out, emu.adaptive_avg_pool2d(x, out_size), f"avg {size} output")
    g = torch.randn(out.shape, generator=gen).to(dtype)
    if cl:
        g = g.contiguous(memory_format=torch.channels_last)
    assert_bitwise(emu.adaptive_avg_pool2d_backward_fast(g, list(x.shape)),
                   emu.adaptive_avg_pool2d_backward(g, list(x.shape)), f"avg {size} grad")

    out, idx = emu.adaptive_max_pool2d_fast(x, out_size)
    ref_out, ref_idx = emu.adaptive_max_pool2d(x, out_size)
    assert_bitwise(out, ref_out, f"max {size} output")
    assert torch.equal(idx, ref_idx)
    assert_bitwise(emu.adaptive_max_pool2d_backward_fast(g, idx, list(x.shape)),
                   emu.adaptive_max_pool2d_backward(g, idx, list(x.shape)), f"max {size} grad")


def test_fast_pooling_declines_strided_views(emu):
    x = torch.randn(2, 8, 10, 12)[:, :, :, ::2]
    with pytest.raises(RuntimeError, match="do not apply"):
        emu.max_pool2d_fast(x, [2, 2], [], [0, 0], [1, 1], False)


def test_adaptive_pool_zero_output_size(emu):
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    out = emu.adaptive_avg_pool2d(x, [0, 3])
    assert out.shape == (2, 3, 0, 3)
    gi = emu.adaptive_avg_pool2d_backward(out, list(x.shape))
    assert torch.equal(gi, torch.zeros_like(x))
