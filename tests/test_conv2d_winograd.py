"""The CPU's Winograd F(2x2, 3x3) path (csrc/ops/cpu/conv2d_winograd.cpp).

It runs the forward pass, grad_input and grad_weight of 3x3 stride-1
convolutions with at least 32 channels on each side and enough output
pixels.  Each case below is chosen to take it: odd heights and widths leave
partial 2x2 tiles, paddings 0-2 move the patches across the border
(grad_input pads by 2 - padding), channel counts leave partial column tiles
and partial row blocks of grad_weight's products, one shape spans many
blocks of tiles (and grad_weight's chunks of tiles), and two filters are
large enough for the chunked path.  Every output and gradient is compared with torch's
float64 convolution, under each instruction set this CPU supports, with
outputs poisoned (conftest.py) so that an unwritten element shows.
"""
import pytest
import torch
import torch.nn.functional as TF

import pycnn
from pycnn import functional as F
from pycnn._extension import cpu_conv_kernels

TOLERANCES = [(torch.float64, 1e-12), (torch.float32, 2e-5)]

# (batch, in channels, height, width, out channels, padding, bias, channels_last)
CASES = [
    (1, 32, 16, 16, 32, 1, True, False),
    (2, 33, 9, 13, 40, 0, False, False),
    (3, 48, 11, 7, 65, 2, True, True),
    (1, 64, 17, 12, 33, 1, True, True),
    (2, 40, 10, 15, 96, (0, 2), True, False),
]

# Many blocks of tiles (2 x 48 x 49 tiles of 32 channels), the last partial.
MULTI_BLOCK = (2, 32, 95, 97, 32, 1, True, False)

# Filters whose transform exceeds 1 MiB (128 x 160 channels) take the
# chunked path instead of the fused one: one chunk, then several.
CHUNKED = [(1, 128, 12, 12, 160, 1, True, False), (2, 128, 44, 43, 160, 1, False, True)]

# grad_weight takes Winograd from 64 channels on each side, with rows of 16
# or more outputs or 128 x 128 channels: a row of 19 (partial column tiles
# of 72), short rows of a large filter, and 8 parts of several blocks of
# tiles each, the last block of each part partial (products M that fit a
# core's L2 take this fused path: the 64 x 64 case's 270 KB on any machine,
# the others' 0.5-1.6 MB where the L2 holds them); then products past 2 MiB
# (256 x 260 channels), which always take chunks of tiles, here two.
WEIGHT_CASES = [(2, 64, 17, 19, 72, 1, True, False), (2, 128, 12, 11, 130, 2, False, True),
                (2, 64, 95, 97, 64, 1, True, False), (2, 256, 24, 24, 260, 1, True, True)]


def relative_error(ours, reference):
    return ((ours.double() - reference).abs().max() / reference.abs().max()).item()


def run_case(case, dtype, kernels="auto", relu=False):
    n, c, h, w, k, padding, bias, channels_last = case
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    weight = torch.randn(k, c, 3, 3, dtype=torch.float64)
    b = torch.randn(k, dtype=torch.float64) if bias else None
    leaves = [t.clone().requires_grad_() for t in (x, weight, b) if t is not None]
    reference = TF.conv2d(leaves[0], leaves[1], leaves[2] if bias else None, padding=padding)
    if relu:
        reference = reference.relu()
    grad = torch.randn_like(reference)
    ref_grads = torch.autograd.grad(reference, leaves, grad)

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ours_leaves = [t.to(dtype).clone() for t in (x, weight, b) if t is not None]
    ours_leaves[0] = ours_leaves[0].contiguous(memory_format=fmt)
    ours_leaves = [t.requires_grad_() for t in ours_leaves]
    conv = F.conv2d_relu if relu else F.conv2d
    with cpu_conv_kernels(kernels):
        ours = conv(ours_leaves[0], ours_leaves[1], ours_leaves[2] if bias else None,
                    padding=padding)
        ours_grads = torch.autograd.grad(ours, ours_leaves, grad.to(dtype).contiguous(memory_format=fmt))
    return (ours,) + ours_grads, (reference,) + ref_grads


@pytest.mark.parametrize("dtype,tolerance", TOLERANCES)
@pytest.mark.parametrize("case", CASES + [MULTI_BLOCK] + CHUNKED + WEIGHT_CASES, ids=str)
def test_winograd_matches_torch(cpu_isa, case, dtype, tolerance):
    ours, reference = run_case(case, dtype)
    for name, a, r in zip(["output", "grad_input", "grad_weight", "grad_bias"], ours, reference):
        assert not torch.isnan(a).any(), f"{name} has unwritten (NaN) elements"
        assert relative_error(a, r) < tolerance, f"{name} differs on {cpu_isa}"


@pytest.mark.parametrize("case", CASES + CHUNKED + WEIGHT_CASES, ids=str)
def test_winograd_is_the_path_taken(case):
    """Winograd and the GEMM round differently: in float32 their outputs and
    grad_inputs differ somewhere, and so do grad_weights where grad_weight
    takes Winograd (WEIGHT_CASES and CHUNKED, all of 128 x 128 channels or
    more); elsewhere the same GEMM gives the same bits."""
    torch.manual_seed(1)
    winograd, _ = run_case(case, torch.float32, "auto")
    torch.manual_seed(1)
    gemm, _ = run_case(case, torch.float32, "gemm")
    assert not torch.equal(winograd[0], gemm[0]), "the forward did not take the Winograd path"
    assert not torch.equal(winograd[1], gemm[1]), "grad_input did not take the Winograd path"
    if case in WEIGHT_CASES + CHUNKED:
        assert not torch.equal(winograd[2], gemm[2]), "grad_weight did not take the Winograd path"
    else:
        assert torch.equal(winograd[2], gemm[2])


@pytest.mark.parametrize("case", [WEIGHT_CASES[2], WEIGHT_CASES[3], CHUNKED[1]], ids=str)
def test_winograd_grad_weight_is_repeatable_across_threads(case):
    """grad_weight's parts (fused) or chunks of tiles add in a fixed order,
    and each part, or block of a chunk's products, belongs to one task: the
    same bits with one thread or two."""
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            torch.manual_seed(2)
            results.append(run_case(case, torch.float32)[0])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype,tolerance", TOLERANCES)
def test_winograd_fused_relu(dtype, tolerance):
    case = (2, 32, 13, 11, 48, 1, True, False)
    ours, reference = run_case(case, dtype, relu=True)
    assert (ours[0] >= 0).all()
    if dtype == torch.float64:  # float32 may round a near-zero pre-activation across zero
        for a, r in zip(ours, reference):
            assert relative_error(a, r) < tolerance
    torch.manual_seed(3)
    plain, _ = run_case(case, dtype)
    torch.manual_seed(3)
    fused, _ = run_case(case, dtype, relu=True)
    assert torch.equal(fused[0], plain[0].relu())


def test_winograd_gradcheck():
    x = torch.randn(1, 32, 12, 11, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(32, 32, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(32, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: F.conv2d(a, b, c, padding=1),
                                    (x, weight, bias), fast_mode=True)


def test_setting_is_validated_and_restored():
    assert pycnn._C.cpu_conv_kernels() == "auto"
    with cpu_conv_kernels("gemm"):
        assert pycnn._C.cpu_conv_kernels() == "gemm"
    assert pycnn._C.cpu_conv_kernels() == "auto"
    with pytest.raises(ValueError, match="kernels must be 'auto' or 'gemm', got 'fast'"):
        pycnn._extension.set_cpu_conv_kernels("fast")
