"""Path coverage for the CPU convolution kernels (csrc/ops/cpu/conv2d_gemm.cpp).

The GEMM kernels tile pixels by the micro-kernel's MR and output channels by
its NR, which differ per instruction set; grad_input runs one gather per
stride phase; grad_weight accumulates per thread.  A seeded sweep of random
shapes hits partial tiles, empty phases, windows that need padding and ones
that read the tensor in place, under every ISA this CPU supports and in
both memory layouts, comparing all three gradients with torch in float64.
"""
import random

import pytest
import torch
import torch.nn.functional as TF

import pycnn
from pycnn import functional as F

ISAS = {"avx512": ["generic", "avx2", "avx512"], "avx2": ["generic", "avx2"],
        "generic": ["generic"]}[pycnn._C.cpu_isa()]


@pytest.fixture(autouse=True)
def poison_and_restore_isa():
    detected = pycnn.cpu_isa()
    pycnn._extension.set_poison_outputs(True)
    yield
    pycnn._extension.set_poison_outputs(False)
    pycnn.set_cpu_isa(detected)


def random_case(rng):
    groups = rng.choice([1, 1, 1, 2, 3])
    c = groups * rng.choice([1, 2, 3, 5, 8, 16])
    k = groups * rng.choice([2, 3, 6, 7, 16, 17, 33])
    r, s = rng.choice([1, 2, 3, 5]), rng.choice([1, 3, 4])
    dil = (rng.choice([1, 2]), rng.choice([1, 2]))
    stride = (rng.choice([1, 2, 3]), rng.choice([1, 2]))
    pad = (rng.randint(0, 3), rng.randint(0, 3))
    h = rng.randint(max(1, dil[0] * (r - 1) + 1 - 2 * pad[0]), 20)
    w = rng.randint(max(1, dil[1] * (s - 1) + 1 - 2 * pad[1]), 25)
    return dict(shape=(rng.choice([0, 1, 2, 3]), c, h, w), weight=(k, c // groups, r, s),
                stride=stride, padding=pad, dilation=dil, groups=groups,
                bias=rng.random() < 0.6, channels_last=rng.random() < 0.3)


def relative_error(ours, reference):
    if reference.numel() == 0:
        return 0.0
    return ((ours.double() - reference).abs().max() / reference.abs().max().clamp_min(1e-30)).item()


def random_leaves(spec, dtype, seed, layout=torch.contiguous_format):
    """Input, weight and bias for a case (popping its "shape" and "weight"),
    in `dtype` and in float64, all requiring grad."""
    torch.manual_seed(seed)
    x64 = torch.randn(spec.pop("shape"), dtype=torch.float64).contiguous(memory_format=layout)
    w64 = torch.randn(spec.pop("weight"), dtype=torch.float64)
    b64 = torch.randn(w64.shape[0], dtype=torch.float64)
    ours = tuple(t.to(dtype).requires_grad_() for t in (x64, w64, b64))
    return ours, tuple(t.requires_grad_() for t in (x64, w64, b64))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("seed", range(4))
def test_random_convolutions_match_torch(isa, dtype, tolerance, seed):
    pycnn.set_cpu_isa(isa)
    rng = random.Random(seed * 1000 + len(isa))
    for _ in range(12):
        case = random_case(rng)
        x = torch.randn(case["shape"], dtype=torch.float64)
        w = torch.randn(case["weight"], dtype=torch.float64)
        b = torch.randn(case["weight"][0], dtype=torch.float64) if case["bias"] else None
        options = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
                       groups=case["groups"])
        leaves = [t.clone().requires_grad_() for t in (x, w, b) if t is not None]
        reference = TF.conv2d(*leaves, **options) if b is not None else TF.conv2d(*leaves, None, **options)
        grad = torch.randn_like(reference)
        ref_grads = torch.autograd.grad(reference, leaves, grad)

        fmt = torch.channels_last if case["channels_last"] else torch.contiguous_format
        ours_leaves = [t.to(dtype).clone().requires_grad_() for t in (x, w, b) if t is not None]
        ours_leaves[0] = ours_leaves[0].detach().to(memory_format=fmt).requires_grad_()
        ours = F.conv2d(ours_leaves[0], ours_leaves[1], ours_leaves[2] if b is not None else None, **options)
        ours_grads = torch.autograd.grad(ours, ours_leaves, grad.to(dtype).to(memory_format=fmt))
        for name, a, r in zip(["output", "grad_input", "grad_weight", "grad_bias"],
                              (ours,) + ours_grads, (reference,) + ref_grads):
            assert not torch.isnan(a).any(), f"{name} has unwritten (NaN) elements for {case}"
            assert relative_error(a, r) < tolerance, f"{name} differs for {case} on {isa}"


def test_grad_weight_is_deterministic():
    x = torch.randn(4, 16, 23, 23)
    w = torch.randn(32, 16, 3, 3)
    g = torch.randn(4, 32, 23, 23)
    first = torch.ops.pycnn.conv2d_weight_backward(g, x, w.shape, [1, 1], [1, 1], [1, 1], 1)
    for _ in range(3):
        again = torch.ops.pycnn.conv2d_weight_backward(g, x, w.shape, [1, 1], [1, 1], [1, 1], 1)
        assert torch.equal(first, again)


def test_large_layer_matches_float64_reference():
    # Many tiles per band and several bands per image.
    x = torch.randn(2, 64, 40, 40, dtype=torch.float64)
    w = torch.randn(96, 64, 3, 3, dtype=torch.float64)
    expected = TF.conv2d(x, w, padding=1)
    ours = F.conv2d(x.float(), w.float(), padding=1)
    assert relative_error(ours, expected) < 2e-5


# Outputs far smaller than their inputs: grad_input takes the scatter form
# (conv2d_input_scatter.cpp), which skips the taps that would only meet
# padding.  N, C, H, W, weight, options.
SMALL_OUTPUT_CASES = {
    "lenet_c5": ((3, 16, 5, 5), (120, 16, 5, 5), {}),
    "odd_kernel": ((2, 4, 8, 7), (6, 4, 7, 5), {}),
    "grouped_dilated": ((2, 6, 9, 9), (4, 3, 3, 3), dict(groups=2, dilation=3)),
    "strided_padded": ((2, 3, 14, 14), (5, 3, 11, 11), dict(stride=(2, 2), padding=(1, 2))),
    "empty_batch": ((0, 4, 6, 6), (3, 4, 5, 5), {}),
}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("case", list(SMALL_OUTPUT_CASES))
def test_small_output_grad_input_matches_torch(case, dtype, tolerance, layout, isa):
    pycnn.set_cpu_isa(isa)
    size, weight_size, options = SMALL_OUTPUT_CASES[case]
    x = torch.randn(size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(weight_size, dtype=torch.float64)
    out = TF.conv2d(x, w, **options)
    stride = options.get("stride", (1, 1))
    # The regime this test is about: under a quarter of the taps are real.
    assert out.shape[2] * out.shape[3] * stride[0] * stride[1] < 0.25 * size[2] * size[3]
    g = torch.randn(out.shape, dtype=torch.float64)
    (expected,) = torch.autograd.grad(out, x, g)
    g_ours = g.to(dtype).contiguous(memory_format=layout)
    ours = torch.ops.pycnn.conv2d_input_backward(
        g_ours, w.to(dtype), list(size),
        list(options.get("stride", (1, 1))), list(options.get("padding", (0, 0))),
        [options.get("dilation", 1)] * 2, options.get("groups", 1))
    assert ours.shape == expected.shape and ours.dtype == dtype
    if not g_ours.is_contiguous():  # unambiguously channels_last (a 1x1 output is both)
        assert ours.is_contiguous(memory_format=torch.channels_last)
    assert not torch.isnan(ours).any(), "unwritten (NaN) elements"
    assert relative_error(ours, expected) < tolerance


# Convolutions with at most 8 destination channels, NCHW, groups=1: the
# pixel-lane path (csrc/ops/cpu/conv2d_narrow.cpp) computes the forward pass
# (stride 1 along the width) and grad_input.  Widths straddle the vector
# widths of every ISA (2, 4, 8, 16 lanes) so that partial vectors and the
# repeated slots of a last, partial tile are exercised.
NARROW_CASES = {
    "lenet_c1": dict(shape=(3, 1, 32, 32), weight=(6, 1, 5, 5)),
    "lenet_c3_grad_input": dict(shape=(2, 6, 14, 14), weight=(16, 6, 5, 5)),
    "alexnet_conv1_like": dict(shape=(2, 3, 45, 43), weight=(8, 3, 11, 11), stride=4, padding=2),
    "resnet_stem_like": dict(shape=(1, 3, 33, 34), weight=(5, 3, 7, 7), stride=2, padding=3),
    "dilated_uneven": dict(shape=(2, 2, 13, 17), weight=(3, 2, 3, 2), stride=(2, 1),
                           padding=(1, 2), dilation=(2, 3)),
    "row_stride_only": dict(shape=(1, 4, 12, 19), weight=(7, 4, 2, 3), stride=(3, 1), padding=1),
    "one_channel_each": dict(shape=(2, 1, 9, 40), weight=(1, 1, 3, 3), padding=1),
    "eight_channels": dict(shape=(1, 8, 6, 5), weight=(8, 8, 1, 1)),
    "empty_batch": dict(shape=(0, 3, 8, 8), weight=(4, 3, 3, 3)),
}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("case", list(NARROW_CASES))
def test_few_channel_convolutions_match_torch(case, dtype, tolerance, isa):
    pycnn.set_cpu_isa(isa)
    spec = dict(NARROW_CASES[case])
    (x, w, b), (x64, w64, b64) = random_leaves(spec, dtype, 7)
    out = F.conv2d(x, w, b, **spec)
    ref = TF.conv2d(x64, w64, b64, **spec)
    assert relative_error(out, ref) <= tolerance
    g = torch.randn(ref.shape, dtype=torch.float64)
    ours = torch.autograd.grad(out, (x, w, b), g.to(dtype))
    theirs = torch.autograd.grad(ref, (x64, w64, b64), g)
    for got, expected in zip(ours, theirs):
        assert relative_error(got, expected) <= tolerance


# Small images: below a few hundred pixels per batch and under weights larger
# than the activations, the threads split the output channels and pack the
# weights block by block (the column split); otherwise tasks take several
# whole images each, and so do grad_weight's (whose first task per thread
# writes its accumulator instead of adding to it).  Which applies depends on
# the thread count, so both counts run.
SMALL_IMAGE_CASES = {
    "column_split_one_image": dict(shape=(1, 48, 5, 5), weight=(128, 48, 3, 3), padding=1),
    "column_split_strided": dict(shape=(2, 32, 9, 9), weight=(128, 32, 3, 3), stride=2, padding=1),
    "column_split_partial_tile": dict(shape=(3, 20, 4, 6), weight=(200, 20, 3, 3), padding=(0, 1)),
    "images_per_task": dict(shape=(8, 32, 6, 6), weight=(16, 32, 3, 3), padding=1),
    "images_per_task_dilated": dict(shape=(6, 8, 5, 7), weight=(24, 8, 3, 2), padding=(2, 1),
                                    dilation=(2, 1)),
    "images_per_task_in_place": dict(shape=(8, 16, 7, 7), weight=(40, 16, 3, 3)),
    "images_per_task_groups": dict(shape=(8, 16, 4, 4), weight=(32, 8, 3, 3), padding=1, groups=2),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("case", list(SMALL_IMAGE_CASES))
def test_small_image_convolutions_match_torch(case, dtype, tolerance, layout, isa, threads):
    pycnn.set_cpu_isa(isa)
    spec = dict(SMALL_IMAGE_CASES[case])
    (x, w, b), (x64, w64, b64) = random_leaves(spec, dtype, 11, layout)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = F.conv2d(x, w, b, **spec)
        g = torch.randn(out.shape, dtype=torch.float64)
        ours = torch.autograd.grad(out, (x, w, b), g.to(dtype))
    finally:
        torch.set_num_threads(previous)
    ref = TF.conv2d(x64, w64, b64, **spec)
    assert relative_error(out, ref) <= tolerance
    theirs = torch.autograd.grad(ref, (x64, w64, b64), g)
    for got, expected in zip(ours, theirs):
        assert relative_error(got, expected) <= tolerance


# 1x1 convolutions of NCHW tensors with planes of 784 pixels or more: the
# pixels-on-lanes product (csrc/ops/cpu/conv2d_pointwise.cpp) computes the
# forward pass (any stride) and the stride-1 grad_input.  Blocks of pixels
# cross image boundaries and end short of the last image's end, destination
# channels leave a partial row group, and the channels split into several
# panels; each case checks that the path ran as many times as expected.
POINTWISE_CASES = {
    "bottleneck_like": dict(shape=(2, 64, 28, 28), weight=(16, 64, 1, 1), passes=2),
    "uneven_planes_and_rows": dict(shape=(3, 11, 29, 31), weight=(13, 11, 1, 1), passes=2),
    "many_channels": dict(shape=(1, 300, 30, 30), weight=(37, 300, 1, 1), passes=2),
    "expand": dict(shape=(2, 9, 32, 32), weight=(70, 9, 1, 1), passes=2),
    "strided": dict(shape=(2, 24, 64, 60), weight=(20, 24, 1, 1), stride=2, passes=1),
    "uneven_stride": dict(shape=(1, 17, 57, 90), weight=(10, 17, 1, 1), stride=(2, 3), passes=1),
    "empty_batch": dict(shape=(0, 16, 28, 28), weight=(12, 16, 1, 1), passes=2),
}


@pytest.mark.parametrize("relu", [False, True], ids=["conv2d", "conv2d_relu"])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("case", list(POINTWISE_CASES))
def test_pointwise_convolutions_match_torch(case, dtype, tolerance, isa, relu):
    pycnn.set_cpu_isa(isa)
    spec = dict(POINTWISE_CASES[case])
    passes = spec.pop("passes")
    (x, w, b), (x64, w64, b64) = random_leaves(spec, dtype, 13)
    before = pycnn._extension.pointwise_conv_passes()
    out = (F.conv2d_relu if relu else F.conv2d)(x, w, b, **spec)
    g = torch.randn(out.shape, dtype=torch.float64)
    ours = torch.autograd.grad(out, (x, w, b), g.to(dtype))
    assert pycnn._extension.pointwise_conv_passes() - before == passes
    ref = TF.conv2d(x64, w64, b64, **spec)
    if relu:
        ref = TF.relu(ref)
    assert not torch.isnan(out).any(), "unwritten (NaN) elements"
    assert relative_error(out, ref) <= tolerance
    theirs = torch.autograd.grad(ref, (x64, w64, b64), g)
    for name, got, expected in zip(["grad_input", "grad_weight", "grad_bias"], ours, theirs):
        assert not torch.isnan(got).any(), f"{name}: unwritten (NaN) elements"
        assert relative_error(got, expected) <= tolerance, name


def test_pointwise_path_leaves_channels_last_and_gemm_mode_alone():
    x = torch.randn(2, 16, 28, 28)
    w = torch.randn(24, 16, 1, 1)
    before = pycnn._extension.pointwise_conv_passes()
    F.conv2d(x.contiguous(memory_format=torch.channels_last), w)
    with pycnn._extension.cpu_conv_kernels("gemm"):
        expected = F.conv2d(x, w)
    assert pycnn._extension.pointwise_conv_passes() == before
    torch.testing.assert_close(F.conv2d(x, w), expected, rtol=1e-5, atol=1e-5)
    assert pycnn._extension.pointwise_conv_passes() == before + 1
