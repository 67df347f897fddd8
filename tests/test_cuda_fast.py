"""pycnn's fast CUDA kernels (conv2d_fast.cuh, pool2d_fast.cuh) on a GPU.

test_cuda.py holds every op to torch's CUDA ops with the kernels pycnn picks
by itself.  This file aims at what that choice hides:
  * every kernel family (FFMA for exact float32, TF32, float16, bfloat16
    tensor cores) and every tile shape, in NCHW and channels_last, at shapes
    whose GEMM sides are not multiples of a tile, against a float64
    reference on the same (rounded) operands;
  * the fast kernels agree with the reference kernels (the first, simple
    implicit GEMM and one-thread-per-element pooling), which these tests run
    too, so that both generations are exercised on the GPU;
  * the fast kernels are the ones that run where they apply (the profiler
    names the kernels), and TF32 follows torch's cuDNN switch by default;
  * gradients repeat bitwise.
Skipped where no GPU is visible; the same kernel code runs on the CPU in
test_cuda_emulation.py.
"""
import functools
import zlib

import pytest
import torch
import torch.nn.functional as TF

import pycnn
from pycnn import _extension
from pycnn import functional as F

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")

# max|ours - reference| / max|reference| against float64 on the same operands.
# TF32 rounds each operand to a 10-bit mantissa; half types round the output.
FAMILIES = {
    "ffma": (torch.float32, False, 2e-5),
    "tf32": (torch.float32, True, 3e-3),
    "float16": (torch.float16, None, 3e-3),
    "bfloat16": (torch.bfloat16, None, 1.5e-2),
}
TILES = ["auto", "128x128", "128x64", "64x64"]

# N, C, H, W, K, R, S, stride, padding, dilation, groups: GEMM sides off the
# tiles' multiples, 3-channel stems, 1x1, strided, dilated, grouped.
CONV_SHAPES = [
    (2, 3, 33, 31, 64, 7, 7, 2, 3, 1, 1),
    (2, 64, 17, 19, 64, 3, 3, 1, 1, 1, 1),
    (3, 32, 15, 15, 40, 1, 1, 1, 0, 1, 1),
    (2, 24, 14, 13, 48, 3, 3, 2, 1, 1, 1),
    (2, 16, 16, 16, 24, 3, 3, 1, 2, 2, 1),
    (2, 32, 12, 12, 32, 3, 3, 1, 1, 1, 2),
    (1, 136, 9, 11, 136, 3, 3, 1, 1, 1, 1),
    (4, 8, 20, 20, 200, 5, 5, 1, 2, 1, 1),
    (2, 256, 7, 7, 256, 3, 3, 1, 1, 1, 1),
    (2, 64, 28, 28, 128, 1, 1, 2, 0, 1, 1),
]


def shape_id(shape):
    n, c, h, w, k, r, s, stride, padding, dilation, groups = shape
    return f"{n}x{c}x{h}x{w}-k{k}r{r}s{s}-st{stride}p{padding}d{dilation}g{groups}"


@pytest.fixture(autouse=True)
def _poisoned_and_restored():
    """Outputs start as NaN; torch's TF32 switches and pycnn's settings are
    restored after each test."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             _extension.tf32_mode())
    _extension.set_poison_outputs(True)
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
    _extension.set_tf32(saved[2])
    _extension.set_cuda_kernels("auto")
    _extension.set_cuda_conv_tile("auto")


def relative_error(ours, reference):
    ours, reference = ours.detach().double().cpu(), reference.detach().double().cpu()
    assert not ours.isnan().any(), "NaN in pycnn's result: an element was not written"
    scale = reference.abs().max().item()
    return (ours - reference).abs().max().item() / (scale if scale > 0 else 1.0)


def conv_inputs(shape, dtype, layout, seed):
    n, c, h, w, k, r, s, stride, padding, dilation, groups = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g).to(dtype)
    wt = (torch.randn(k, c // groups, r, s, generator=g) / (c // groups * r * s) ** 0.5).to(dtype)
    b = torch.randn(k, generator=g).to(dtype)
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    out_shape = TF.conv2d(x.float(), wt.float(), None, **options).shape
    gy = torch.randn(out_shape, generator=g).to(dtype)
    memory = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    on_gpu = [t.cuda().contiguous(memory_format=memory) if t.dim() == 4 else t.cuda()
              for t in (x, wt, b, gy)]
    return (x, wt, b, gy), on_gpu, options


def conv_with_grads(conv, x, wt, b, gy, options):
    x, wt, b = (t.detach().requires_grad_() for t in (x, wt, b))
    y = conv(x, wt, b, **options)
    gx, gw, gb = torch.autograd.grad(y, (x, wt, b), gy)
    return y, gx, gw, gb


def seed_of(*key):
    return zlib.crc32(repr(key).encode())


@functools.lru_cache(maxsize=8)
def float64_reference(shape, family):
    """torch's float64 CPU result on the family's operands (the same for
    every tile and layout, so computed once)."""
    cpu, _, options = conv_inputs(shape, FAMILIES[family][0], "nchw", seed_of(shape, family))
    return conv_with_grads(TF.conv2d, *(t.double() for t in cpu), options)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=shape_id)
def test_conv2d_fast_kernels_match_float64(shape, family, tile, layout):
    dtype, tf32, tolerance = FAMILIES[family]
    _, gpu, options = conv_inputs(shape, dtype, layout, seed_of(shape, family))
    reference = float64_reference(shape, family)
    with _extension.tf32(tf32), _extension.cuda_kernels("auto", tile):
        ours = conv_with_grads(F.conv2d, *gpu, options)
    for name, a, r in zip(("output", "grad_input", "grad_weight", "grad_bias"), ours, reference):
        assert a.dtype == dtype and a.shape == r.shape, name
        err = relative_error(a, r)
        assert err <= tolerance, f"{family} tile {tile} {layout} {name}: relative error {err:.3g} > {tolerance:g}"


@pytest.mark.parametrize("family", ["ffma", "float16", "bfloat16"])
@pytest.mark.parametrize("shape", CONV_SHAPES[:6], ids=shape_id)
def test_conv2d_fast_and_reference_kernels_agree(shape, family):
    """The two generations of kernels, on the same GPU tensors: the reference
    kernels run here as they do for float64 and past-int32 tensors."""
    dtype, tf32, tolerance = FAMILIES[family]
    _, gpu, options = conv_inputs(shape, dtype, "nchw", seed=7)
    with _extension.tf32(tf32):
        fast = conv_with_grads(F.conv2d, *gpu, options)
        with _extension.cuda_kernels("reference"):
            reference = conv_with_grads(F.conv2d, *gpu, options)
    for name, a, r in zip(("output", "grad_input", "grad_weight", "grad_bias"), fast, reference):
        err = relative_error(a, r)
        assert err <= tolerance, f"{family} {name}: fast vs reference kernels {err:.3g} > {tolerance:g}"


def cuda_kernel_names(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return {e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_conv2d_fast_kernels_are_the_ones_that_run(family):
    dtype, tf32, _ = FAMILIES[family]
    _, (x, wt, b, gy), options = conv_inputs(CONV_SHAPES[1], dtype, "channels_last", seed=3)
    with _extension.tf32(tf32):
        auto = cuda_kernel_names(lambda: conv_with_grads(F.conv2d, x, wt, b, gy, options))
        with _extension.cuda_kernels("reference"):
            reference = cuda_kernel_names(lambda: conv_with_grads(F.conv2d, x, wt, b, gy, options))
    assert any("igemm_kernel" in n for n in auto), sorted(auto)
    assert not any("implicit_gemm_kernel" in n for n in auto), sorted(auto)
    assert any("implicit_gemm_kernel" in n for n in reference), sorted(reference)


def test_tf32_follows_torch_cudnn_switch_by_default():
    _extension.set_tf32(None)
    for allowed in (False, True):
        torch.backends.cudnn.allow_tf32 = allowed
        assert pycnn.tf32_enabled() is allowed
    torch.backends.cudnn.allow_tf32 = True
    with pycnn.tf32(False):
        assert pycnn.tf32_enabled() is False
    assert pycnn.tf32_mode() is None and pycnn.tf32_enabled() is True


def test_tf32_switch_changes_float32_results_as_tf32_would():
    """With TF32 on, float32 results carry TF32's rounding (differ from FFMA
    by about 1e-4); off, they match float64 to float32 rounding."""
    cpu, gpu, options = conv_inputs(CONV_SHAPES[8], torch.float32, "nchw", seed=11)
    exact = TF.conv2d(cpu[0].double(), cpu[1].double(), cpu[2].double(), **options)
    with pycnn.tf32(False):
        err_off = relative_error(F.conv2d(*gpu[:3], **options), exact)
    with pycnn.tf32(True):
        err_on = relative_error(F.conv2d(*gpu[:3], **options), exact)
    assert err_off < 1e-5 < err_on < 3e-3, (err_off, err_on)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_conv2d_fast_gradients_repeat_bitwise(family):
    dtype, tf32, _ = FAMILIES[family]
    _, gpu, options = conv_inputs((8, 64, 28, 28, 64, 3, 3, 1, 1, 1, 1), dtype, "channels_last", seed=5)
    with _extension.tf32(tf32):
        first = conv_with_grads(F.conv2d, *gpu, options)
        for _ in range(2):
            again = conv_with_grads(F.conv2d, *gpu, options)
            for a, b in zip(first, again):
                assert torch.equal(a, b)


# ----------------------------------------------------------------------------- pooling

POOLS = [
    ("max_pool2d", dict(kernel_size=3, stride=2, padding=1)),
    ("max_pool2d", dict(kernel_size=2, stride=2)),
    ("max_pool2d", dict(kernel_size=3, stride=2, dilation=2, ceil_mode=True)),
    ("avg_pool2d", dict(kernel_size=3, stride=1, padding=1)),
    ("avg_pool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("avg_pool2d", dict(kernel_size=2, divisor_override=3)),
    ("adaptive_avg_pool2d", dict(output_size=(5, 7))),
    ("adaptive_avg_pool2d", dict(output_size=1)),
    ("adaptive_max_pool2d", dict(output_size=(5, 7))),
    ("adaptive_max_pool2d", dict(output_size=1)),
]


def pool_with_grad(fn, x, options, gy_seed):
    x = x.detach().requires_grad_()
    y = fn(x, **options)
    g = torch.Generator().manual_seed(gy_seed)
    gy = torch.randn(y.shape, generator=g).to(y.device, y.dtype)
    (gx,) = torch.autograd.grad(y, x, gy)
    return y, gx


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("op,options", POOLS, ids=[f"{o}-{i}" for i, (o, _) in enumerate(POOLS)])
def test_pool_fast_kernels_equal_reference_kernels_and_torch(op, options, layout, dtype):
    """Fast and reference pooling kernels: the same arithmetic in the same
    order, so bitwise equal; and torch's CUDA op within its dtype's rounding."""
    g = torch.Generator().manual_seed(17)
    x = torch.randn(3, 24, 23, 29, generator=g).to(dtype).cuda()
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    ours_fn, torch_fn = getattr(F, op), getattr(TF, op)
    fast = pool_with_grad(ours_fn, x, options, 1)
    with _extension.cuda_kernels("reference"):
        reference = pool_with_grad(ours_fn, x, options, 1)
    # torch gets the NCHW copy: its channels_last avg_pool2d backward ignores
    # the padding in torch 2.11 (pytorch#188344); the values are the same.
    theirs = pool_with_grad(torch_fn, x.contiguous(), options, 1)
    for name, a, r, t in zip(("output", "grad_input"), fast, reference, theirs):
        assert not a.isnan().any(), f"{name}: an element was not written"
        assert torch.equal(a, r), f"{name}: fast and reference kernels differ"
        if "max" in op and name == "grad_input" and dtype != torch.float32:
            continue  # half types tie within windows: which tap wins is not torch's contract
        # A max is exact; gradients of overlapping windows are sums, whose
        # order (torch's adaptive max backward adds atomically) rounds.
        exact = "max" in op and name == "output"
        tolerance = 0.0 if exact else {torch.float32: 1e-6, torch.float16: 2e-3,
                                       torch.bfloat16: 1.6e-2}[dtype]
        err = relative_error(a, t)
        assert err <= tolerance, f"{name}: pycnn vs torch {err:.3g} > {tolerance:g}"


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_pool_fast_kernels_are_the_ones_that_run(layout):
    x = torch.randn(4, 64, 32, 32, device="cuda")
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    names = cuda_kernel_names(lambda: pool_with_grad(F.max_pool2d, x, dict(kernel_size=3, stride=2, padding=1), 0))
    assert any("items_kernel" in n for n in names), sorted(names)
