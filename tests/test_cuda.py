"""pycnn's CUDA kernels against torch's CUDA ops, and against pycnn's CPU kernels.

Every op is run forward and backward (every gradient) on fresh random input:
  * float64 against torch in float64, tight (1e-12);
  * float32 against torch in float32, TF32 off on both sides (5e-5: room
    for cuDNN's other summation orders and algorithms, while TF32 on either
    side would show as errors near 1e-3);
  * float16 and bfloat16 against torch in float32 on the same (rounded)
    inputs: pycnn accumulates in float32, so the only error left is the
    rounding of each result, at most half a unit in the last place
    (2^-11 relative for float16, 2^-8 for bfloat16); the tolerances below
    allow about twice that;
  * pycnn's CUDA kernels against its CPU kernels in float64;
  * determinism: the same inputs give bitwise the same gradients run after run;
  * gradcheck in float64.
Outputs are poisoned (NaN) before the kernels write them, so an element a
kernel leaves unwritten fails the comparison.

Only test_cuda_kernels_registered (and test_cuda_build_has_cuda_kernels)
run without a GPU: the library must carry a CUDA kernel for every op.
"""
import os

import pytest
import torch
import torch.nn.functional as TF

import pycnn
from pycnn import _extension
from pycnn import functional as F

try:
    from cuda_cases import ADAPTIVE_SIZES, AVG_POOL_CASES, CONV_CASES, MAX_POOL_CASES, POOL_INPUT
except ImportError:  # tests/ made a package
    from .cuda_cases import ADAPTIVE_SIZES, AVG_POOL_CASES, CONV_CASES, MAX_POOL_CASES, POOL_INPUT

OPS = [
    "conv2d", "conv2d_relu", "conv2d_input_backward", "conv2d_weight_backward", "conv2d_bias_backward",
    "max_pool2d_with_indices", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d", "adaptive_max_pool2d_backward",
]

# Largest allowed max|ours - reference| / max|reference| per dtype of pycnn's computation.
TOLERANCE = {torch.float64: 1e-12, torch.float32: 5e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
DTYPES = list(TOLERANCE)

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")


# ----------------------------------------------------------------------------- without a GPU

def test_cuda_build_has_cuda_kernels():
    """Where torch has CUDA and the build was not told to skip it, the library has CUDA kernels."""
    if torch.version.cuda is None:
        pytest.skip("this torch has no CUDA support")
    if pycnn.cuda_compiled():
        return
    if os.environ.get("CI"):
        pytest.fail("CI must build pycnn's CUDA kernels (torch has CUDA), but this build has none")
    pytest.skip("this build of pycnn has no CUDA kernels (built with PYCNN_CUDA=0?)")


def test_cuda_kernels_registered():
    if not pycnn.cuda_compiled():
        pytest.skip("this build of pycnn has no CUDA kernels")
    missing = [op for op in OPS
               if not torch._C._dispatch_has_kernel_for_dispatch_key(f"pycnn::{op}", "CUDA")]
    assert not missing, f"no CUDA kernel registered for {missing}"
    cpu = {name for name in torch._C._dispatch_get_registrations_for_dispatch_key("CPU")
           if name.startswith("pycnn::")}
    cuda = {name for name in torch._C._dispatch_get_registrations_for_dispatch_key("CUDA")
            if name.startswith("pycnn::")}
    assert cpu, "no pycnn op has a CPU kernel: the dispatcher query is broken"
    assert cpu <= cuda, f"ops with a CPU kernel but no CUDA kernel: {sorted(cpu - cuda)}"


@pytest.mark.parametrize("op", ["conv2d", "conv2d_relu"])
def test_conv2d_has_an_autocast_cuda_kernel(op):
    """Without one, conv2d would run in float32 inside torch.autocast("cuda")."""
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"pycnn::{op}", "AutocastCUDA")


# ----------------------------------------------------------------------------- helpers

@pytest.fixture(autouse=True)
def _exact_and_poisoned():
    """TF32 off for torch's float32 reference; every pycnn output starts as
    NaN (as conftest.py sets for the whole session; it stays on after)."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    _extension.set_poison_outputs(True)
    yield
    _extension.set_poison_outputs(True)  # the 64-bit tests turn it off for speed
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def relative_error(ours, reference):
    ours, reference = ours.detach().double(), reference.detach().double()
    if reference.numel() == 0:
        return 0.0
    finite = torch.isfinite(reference)
    diff = (ours[finite] - reference[finite]).abs().max().item() if finite.any() else 0.0
    scale = reference[finite].abs().max().item() if finite.any() else 0.0
    return diff / scale if scale > 0 else diff


def assert_close(ours, reference, tolerance, what):
    assert ours.shape == reference.shape, f"{what}: shape {list(ours.shape)} != {list(reference.shape)}"
    ours_d, ref_d = ours.detach().double(), reference.detach().double()
    # NaN/inf exactly where the reference has them: an unwritten (poisoned) element shows here.
    assert torch.equal(ours_d.isnan(), ref_d.isnan()), f"{what}: NaN in different places"
    finite = torch.isfinite(ref_d)
    assert torch.equal(ours_d[~finite & ~ref_d.isnan()], ref_d[~finite & ~ref_d.isnan()]), \
        f"{what}: infinities differ"
    err = relative_error(ours_d, ref_d)
    assert err <= tolerance, f"{what}: relative error {err:.3g} > {tolerance:g}"


def run_with_grads(fn, inputs, grad_output_seed):
    """fn(**inputs) and the gradient of every floating input, for a fixed random grad_output."""
    # detach() keeps the strides of a sliced input (clone() would compact it).
    leaves = {k: v.detach().requires_grad_(v.is_floating_point())
              for k, v in inputs.items() if v is not None}
    output = fn(**leaves)
    output = output[0] if isinstance(output, tuple) else output
    # Drawn on the CPU, so that CPU and CUDA runs get the same grad_output.
    generator = torch.Generator().manual_seed(grad_output_seed)
    grad_output = torch.randn(output.shape, generator=generator).to(output.device, output.dtype)
    names = [k for k, v in leaves.items() if v.requires_grad]
    grads = torch.autograd.grad(output, [leaves[k] for k in names], grad_output,
                                allow_unused=True)
    return output, dict(zip(names, grads)), grad_output


def compare_with_torch(ours_fn, torch_fn, inputs, dtype, what, torch_in_nchw=False):
    """Runs ours in `dtype` and torch in dtype (float64/32) or in float32 on the
    same rounded values (float16/bfloat16); compares the output and every gradient.
    torch_in_nchw: torch gets NCHW-contiguous copies (the same values), for its
    layouts that are known to be wrong."""
    ours_inputs = {k: (v.to(dtype) if v is not None and v.is_floating_point() else v)
                   for k, v in inputs.items()}
    ref_dtype = dtype if dtype in (torch.float64, torch.float32) else torch.float32
    ref_inputs = {k: (v.to(ref_dtype) if v is not None and v.is_floating_point() else v)
                  for k, v in ours_inputs.items()}
    if torch_in_nchw:
        ref_inputs = {k: (v.contiguous() if v is not None else v) for k, v in ref_inputs.items()}
    out, grads, grad_output = run_with_grads(ours_fn, ours_inputs, 1)
    ref_leaves = {k: v.detach().requires_grad_(v.is_floating_point())
                  for k, v in ref_inputs.items() if v is not None}
    ref_out = torch_fn(**ref_leaves)
    ref_out = ref_out[0] if isinstance(ref_out, tuple) else ref_out
    names = list(grads)
    ref_grads = torch.autograd.grad(ref_out, [ref_leaves[k] for k in names],
                                    grad_output.to(ref_dtype))
    tolerance = TOLERANCE[dtype]
    assert out.dtype == dtype
    assert_close(out, ref_out, tolerance, f"{what} output ({dtype})")
    for name, ref_grad in zip(names, ref_grads):
        assert grads[name].dtype == dtype
        assert_close(grads[name], ref_grad, tolerance, f"{what} grad_{name} ({dtype})")
    return out


def randn(*shape, dtype=torch.float32, device="cuda"):
    return torch.randn(*shape, dtype=dtype, device=device)


# ----------------------------------------------------------------------------- conv2d cases

def conv_inputs(case, device="cuda", dtype=torch.float32, seed=0):
    n, c, h, w, k, kh, kw, stride, padding, dilation, groups, bias = CONV_CASES[case]
    torch.manual_seed(seed)
    inputs = dict(input=randn(n, c, h, w, dtype=dtype, device=device),
                  weight=randn(k, c // groups, kh, kw, dtype=dtype, device=device),
                  bias=randn(k, dtype=dtype, device=device) if bias else None)
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return inputs, options


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_matches_torch(case, dtype):
    inputs, options = conv_inputs(case)
    compare_with_torch(lambda **a: F.conv2d(**a, **options),
                       lambda **a: TF.conv2d(**a, **options), inputs, dtype, f"conv2d[{case}]")


# Winograd's layers: 3x3, stride 1, at least 128 channels each side (input size, K, padding).
WINOGRAD_SHAPES = {"padded_odd": ((2, 128, 9, 11), 128, 1), "unpadded": ((2, 128, 7, 8), 160, 0),
                   "pad2": ((1, 136, 6, 5), 128, 2)}


@needs_gpu
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", list(WINOGRAD_SHAPES))
def test_conv2d_winograd_matches_torch(shape, layout):
    """float32 3x3 stride-1 layers with many channels run F(2x2, 3x3)
    (forward, grad_input and grad_weight): within float32's tolerance of
    torch, not bitwise the implicit GEMM's result (so Winograd ran), and
    repeatable."""
    size, k, pad = WINOGRAD_SHAPES[shape]
    torch.manual_seed(0)
    x, w, b = randn(*size), randn(k, size[1], 3, 3), randn(k)
    if layout == "channels_last":
        x, w = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)
    inputs = dict(input=x, weight=w, bias=b)
    ours = lambda **a: F.conv2d(**a, padding=pad)  # noqa: E731
    compare_with_torch(ours, lambda **a: TF.conv2d(**a, padding=pad), inputs, torch.float32,
                       f"winograd[{shape}, {layout}]")
    auto = run_with_grads(ours, inputs, 1)
    with _extension.cuda_kernels("gemm"):
        gemm = run_with_grads(ours, inputs, 1)
    assert not torch.equal(auto[0], gemm[0]), "the forward did not run Winograd"
    assert not torch.equal(auto[1]["input"], gemm[1]["input"]), "grad_input did not run Winograd"
    assert not torch.equal(auto[1]["weight"], gemm[1]["weight"]), "grad_weight did not run Winograd"
    again = run_with_grads(ours, inputs, 1)
    assert torch.equal(again[0], auto[0])
    for name in ("input", "weight"):
        assert torch.equal(again[1][name], auto[1][name]), f"grad_{name} not repeatable"


# conv2d_relu on every CUDA forward kernel: (input, weight, options, dtype, TF32, kernel choice).
RELU_KERNELS = {
    "reference_f64": ((2, 8, 9, 10), (16, 8, 3, 3), dict(padding=1), torch.float64, None, "auto"),
    "reference_f32": ((2, 8, 9, 10), (16, 8, 3, 3), dict(padding=1), torch.float32, False, "reference"),
    "ffma": ((2, 16, 9, 10), (24, 16, 3, 3), dict(padding=1, stride=(1, 2)), torch.float32, False, "auto"),
    "tf32": ((2, 16, 9, 10), (24, 16, 3, 3), dict(padding=1), torch.float32, True, "auto"),
    "f16": ((2, 16, 9, 10), (24, 16, 3, 3), dict(padding=1), torch.float16, None, "auto"),
    "bf16_packed": ((2, 3, 9, 10), (24, 3, 5, 5), dict(padding=2), torch.bfloat16, None, "auto"),
    "winograd": ((2, 128, 9, 11), (128, 128, 3, 3), dict(padding=1), torch.float32, False, "auto"),
    "depthwise_fast": ((2, 8, 9, 10), (8, 1, 3, 3), dict(padding=1, groups=8), torch.float32, None, "auto"),
    "depthwise_direct": ((2, 8, 9, 10), (16, 1, 2, 2), dict(groups=8), torch.float16, None, "auto"),
}


@needs_gpu
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("kernel", list(RELU_KERNELS))
def test_conv2d_relu_is_bitwise_relu_of_the_same_kernel(kernel, layout):
    """conv2d_relu applies the ReLU in each forward kernel's epilogue: output
    and gradients bitwise torch.relu(pycnn conv2d) on the same kernel, and
    within tolerance of torch's relu(conv2d)."""
    x_shape, w_shape, options, dtype, tf32, kernels = RELU_KERNELS[kernel]
    torch.manual_seed(0)
    x, w, b = randn(*x_shape, dtype=dtype), randn(*w_shape, dtype=dtype), randn(w_shape[0], dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    inputs = dict(input=x, weight=w, bias=b)
    with _extension.tf32(tf32), _extension.cuda_kernels(kernels):
        fused = run_with_grads(lambda **a: F.conv2d_relu(**a, **options), inputs, 1)
        plain = run_with_grads(lambda **a: torch.relu(F.conv2d(**a, **options)), inputs, 1)
        pre = F.conv2d(x, w, b, **options)
    assert (pre < 0).float().mean() > 0.2, "too few negative pre-activations to test"
    assert torch.equal(fused[0], plain[0]), "output"
    for name in ("input", "weight", "bias"):
        assert torch.equal(fused[1][name], plain[1][name]), f"grad_{name}"
    reference = torch.relu(TF.conv2d(x.double(), w.double(), b.double(), **options))
    assert_close(fused[0], reference, TOLERANCE[dtype] if tf32 is not True else 2e-3, "against torch")


@needs_gpu
def test_conv2d_relu_under_autocast():
    x = torch.randn(2, 8, 10, 10, device="cuda")
    w, b = torch.randn(16, 8, 3, 3, device="cuda"), torch.randn(16, device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        y = F.conv2d_relu(x, w, b, padding=1)
    assert y.dtype == torch.float16
    expected = torch.relu(F.conv2d(x.half(), w.half(), b.half(), padding=1))
    assert torch.equal(y, expected)


@needs_gpu
@pytest.mark.parametrize("layout", ["channels_last", "sliced", "channels_last_weight"])
@pytest.mark.parametrize("case", ["partial_chunks_two_n_tiles_stride2", "depthwise", "rgb_7x7_flat_k"])
def test_conv2d_layouts(case, layout):
    inputs, options = conv_inputs(case, dtype=torch.float64)
    x, w = inputs["input"], inputs["weight"]
    if layout == "channels_last":
        inputs["input"] = x.contiguous(memory_format=torch.channels_last)
    elif layout == "channels_last_weight":
        inputs["weight"] = w.contiguous(memory_format=torch.channels_last)
    else:
        # Views with gaps in every dimension.
        big = randn(x.shape[0] * 2, x.shape[1] + 3, x.shape[2] * 2, x.shape[3] + 1, dtype=torch.float64)
        inputs["input"] = big[::2, 1:x.shape[1] + 1, ::2, 1:]
        assert inputs["input"].shape == x.shape and not inputs["input"].is_contiguous()
        inputs["weight"] = w.transpose(2, 3).contiguous().transpose(2, 3)
    out = compare_with_torch(lambda **a: F.conv2d(**a, **options),
                             lambda **a: TF.conv2d(**a, **options), inputs, torch.float64,
                             f"conv2d[{case}, {layout}]")
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)


@needs_gpu
def test_conv2d_channels_last_grad_output():
    """A channels_last grad_output (from a channels_last consumer) for every backward op."""
    inputs, _ = conv_inputs("dilated_asymmetric", dtype=torch.float64)
    x, w, b = inputs["input"], inputs["weight"], inputs["bias"]
    stride, padding, dilation, groups = [2, 3], [2, 1], [1, 2], 1
    out = TF.conv2d(x, w, b, stride, padding, dilation, groups)
    g = torch.randn_like(out).contiguous(memory_format=torch.channels_last)
    ops = torch.ops.pycnn
    gi = ops.conv2d_input_backward(g, w, list(x.shape), stride, padding, dilation, groups)
    gw = ops.conv2d_weight_backward(g, x, list(w.shape), stride, padding, dilation, groups)
    gb = ops.conv2d_bias_backward(g)
    ref = torch.ops.aten.convolution_backward(g, x, w, [w.shape[0]], stride, padding, dilation,
                                              False, [0, 0], groups, [True, True, True])
    for ours, theirs, name in zip((gi, gw, gb), ref, ("input", "weight", "bias")):
        assert_close(ours, theirs, TOLERANCE[torch.float64], f"grad_{name}")


@needs_gpu
@pytest.mark.parametrize("case", ["3x3", "depthwise"])
def test_conv2d_empty_batch(case):
    inputs, options = conv_inputs(case)
    inputs["input"] = inputs["input"][:0]
    out, grads, _ = run_with_grads(lambda **a: F.conv2d(**a, **options), inputs, 1)
    ref = TF.conv2d(inputs["input"], inputs["weight"], inputs["bias"], **options)
    assert out.shape == ref.shape
    assert grads["input"].shape == inputs["input"].shape
    assert torch.equal(grads["weight"], torch.zeros_like(inputs["weight"]))
    assert torch.equal(grads["bias"], torch.zeros_like(inputs["bias"]))


# ----------------------------------------------------------------------------- pooling cases

def pool_cases():
    """(name, pycnn function, torch function) for every pooling case."""
    cases = []
    for name, opt in MAX_POOL_CASES.items():
        cases.append((f"max_pool2d[{name}]",
                      lambda input, opt=opt: F.max_pool2d(input, **opt, return_indices=True),
                      lambda input, opt=opt: TF.max_pool2d(input, **opt, return_indices=True)))
    for name, opt in AVG_POOL_CASES.items():
        cases.append((f"avg_pool2d[{name}]", lambda input, opt=opt: F.avg_pool2d(input, **opt),
                      lambda input, opt=opt: TF.avg_pool2d(input, **opt)))
    for name, size in ADAPTIVE_SIZES.items():
        cases.append((f"adaptive_avg_pool2d[{name}]",
                      lambda input, size=size: F.adaptive_avg_pool2d(input, size),
                      lambda input, size=size: TF.adaptive_avg_pool2d(input, size)))
        cases.append((f"adaptive_max_pool2d[{name}]",
                      lambda input, size=size: F.adaptive_max_pool2d(input, size, return_indices=True),
                      lambda input, size=size: TF.adaptive_max_pool2d(input, size, return_indices=True)))
    return cases


POOL_CASES = {name: (ours, theirs) for name, ours, theirs in pool_cases()}


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(POOL_CASES))
def test_pool_matches_torch(case, dtype):
    ours, theirs = POOL_CASES[case]
    torch.manual_seed(0)
    compare_with_torch(ours, theirs, dict(input=randn(*POOL_INPUT)), dtype, case)


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", [c for c in POOL_CASES if "max" in c])
def test_max_pool_indices_match_torch(case, dtype):
    ours, theirs = POOL_CASES[case]
    x = randn(*POOL_INPUT, dtype=dtype)
    (_, ours_idx), (_, ref_idx) = ours(x), theirs(x)
    assert torch.equal(ours_idx, ref_idx)


@needs_gpu
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_max_pool_values_only_matches_with_indices(layout):
    """max_pool2d where no graph is recorded (pycnn::max_pool2d, the values
    alone): the with-indices op's output, bit for bit."""
    x = randn(*POOL_INPUT)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    for options in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, ceil_mode=True)):
        with torch.no_grad():
            values = F.max_pool2d(x, **options)
        assert torch.equal(values, F.max_pool2d(x, return_indices=True, **options)[0]), options
        assert torch.equal(values, TF.max_pool2d(x, **options)), options


def torch_cuda_avg_pool_channels_last_backward_is_wrong():
    """torch's CUDA avg_pool2d backward for channels_last input with padding
    ignored the padding when it mapped input pixels to windows (pytorch#188344,
    fixed by pytorch#188345 in July 2026): torch 2.11, the GPU machine's, has it.
    Probed rather than judged by version."""
    grads = []
    for memory_format in (torch.contiguous_format, torch.channels_last):
        x = torch.arange(32, device="cuda", dtype=torch.float64).reshape(1, 2, 4, 4)
        leaf = x.contiguous(memory_format=memory_format).requires_grad_()
        TF.avg_pool2d(leaf, 2, 1, 1).sum().backward()
        grads.append(leaf.grad)
    return not torch.equal(grads[0], grads[1])


def avg_pool_backward_wrong_for_channels_last(case, layout):
    return (layout == "channels_last" and case.startswith("avg_pool2d")
            and torch_cuda_avg_pool_channels_last_backward_is_wrong())


@needs_gpu
@pytest.mark.parametrize("layout", ["channels_last", "sliced"])
@pytest.mark.parametrize("case", ["max_pool2d[3x3_s2_p1]", "avg_pool2d[ceil_pad_exclude]",
                                  "adaptive_avg_pool2d[5x7]", "adaptive_max_pool2d[upsample]"])
def test_pool_layouts(case, layout):
    ours, theirs = POOL_CASES[case]
    if layout == "channels_last":
        x = randn(*POOL_INPUT, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    else:
        n, c, h, w = POOL_INPUT
        x = randn(n, c * 2, h + 2, w * 2, dtype=torch.float64)[:, ::2, 1:h + 1, ::2]
        assert x.shape == POOL_INPUT and not x.is_contiguous()
    out = compare_with_torch(ours, theirs, dict(input=x), torch.float64, f"{case}, {layout}",
                             torch_in_nchw=avg_pool_backward_wrong_for_channels_last(case, layout))
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", [c for c in POOL_CASES if "max" in c])
def test_max_pool_nan_ties_and_infinities_match_cpu(case, dtype):
    """The CPU kernel's rule for NaN (last NaN wins), ties (first maximum
    wins) and all -inf windows, compared index for index."""
    ours, _ = POOL_CASES[case]
    torch.manual_seed(3)
    x = torch.randint(-2, 3, POOL_INPUT).double()  # many ties
    x[torch.rand(POOL_INPUT) < 0.05] = float("nan")
    x[:, :, :6, :7] = float("-inf")  # whole windows of -inf
    x = x.to(dtype)
    cuda_out, cuda_idx = ours(x.cuda())
    cpu_out, cpu_idx = ours(x.double())  # the CPU kernels take float32/64 only
    assert torch.equal(cuda_idx.cpu(), cpu_idx)
    assert torch.equal(cuda_out.double().cpu().nan_to_num(7.0), cpu_out.nan_to_num(7.0))


@needs_gpu
@pytest.mark.parametrize("case", [c for c in POOL_CASES if "max" in c])
def test_max_pool_backward_sums_repeated_indices(case):
    """An input chosen by several overlapping windows receives the sum of their gradients."""
    ours, theirs = POOL_CASES[case]
    x = torch.randint(0, 3, POOL_INPUT, device="cuda").double().requires_grad_()
    out, _ = ours(x)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, g)
    x_cpu = x.detach().cpu().requires_grad_()
    out_cpu, _ = ours(x_cpu)
    (grad_cpu,) = torch.autograd.grad(out_cpu, x_cpu, g.cpu())
    assert_close(grad.cpu(), grad_cpu, 1e-12, case)


@needs_gpu
@pytest.mark.parametrize("case", ["max_pool2d[3x3_s2_p1]", "avg_pool2d[3x3_s2_p1]",
                                  "adaptive_avg_pool2d[5x7]", "adaptive_max_pool2d[5x7]"])
def test_pool_empty_batch(case):
    ours, theirs = POOL_CASES[case]
    x = randn(0, 5, 17, 19)
    out, grads, _ = run_with_grads(ours, dict(input=x), 1)
    ref = theirs(x)
    ref = ref[0] if isinstance(ref, tuple) else ref
    assert out.shape == ref.shape and grads["input"].shape == x.shape


@needs_gpu
def test_adaptive_pool_zero_output_size():
    x = randn(2, 3, 5, 6, dtype=torch.float64)
    out, grads, _ = run_with_grads(lambda input: F.adaptive_avg_pool2d(input, (0, 3)),
                                   dict(input=x), 1)
    assert out.shape == (2, 3, 0, 3)
    assert torch.equal(grads["input"], torch.zeros_like(x))


# ----------------------------------------------------------------------------- CPU == CUDA

@needs_gpu
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_cuda_matches_cpu(case):
    inputs, options = conv_inputs(case, device="cpu", dtype=torch.float64)
    fn = lambda **a: F.conv2d(**a, **options)  # noqa: E731
    cpu_out, cpu_grads, g = run_with_grads(fn, inputs, 1)
    cuda_inputs = {k: (v.cuda() if v is not None else None) for k, v in inputs.items()}
    cuda_out, cuda_grads, g_cuda = run_with_grads(fn, cuda_inputs, 1)
    assert torch.equal(g, g_cuda.cpu())
    assert_close(cuda_out.cpu(), cpu_out, 1e-12, f"{case} output")
    for name in cpu_grads:
        assert_close(cuda_grads[name].cpu(), cpu_grads[name], 1e-12, f"{case} grad_{name}")


@needs_gpu
@pytest.mark.parametrize("case", list(POOL_CASES))
def test_pool_cuda_matches_cpu(case):
    ours, _ = POOL_CASES[case]
    x = torch.randn(*POOL_INPUT, dtype=torch.float64)
    cpu_out, cpu_grads, g = run_with_grads(ours, dict(input=x), 1)
    cuda_out, cuda_grads, g_cuda = run_with_grads(ours, dict(input=x.cuda()), 1)
    assert torch.equal(g, g_cuda.cpu())
    assert_close(cuda_out.cpu(), cpu_out, 1e-12, f"{case} output")
    assert_close(cuda_grads["input"].cpu(), cpu_grads["input"], 1e-12, f"{case} grad_input")


# ----------------------------------------------------------------------------- determinism

@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("case", ["split_k", "partial_chunks_two_n_tiles_stride2",
                                  "depthwise_multiplier2_strided_dilated",
                                  "depthwise_7x7_many_chunks"])
def test_conv2d_gradients_are_deterministic(case, dtype):
    inputs, options = conv_inputs(case, dtype=dtype)
    runs = [run_with_grads(lambda **a: F.conv2d(**a, **options), inputs, 1) for _ in range(3)]
    for out, grads, _ in runs[1:]:
        assert torch.equal(out, runs[0][0])
        for name in grads:
            assert torch.equal(grads[name], runs[0][1][name]), f"grad_{name} changed between runs"


@needs_gpu
@pytest.mark.parametrize("case", ["max_pool2d[3x3_s2_p1]", "max_pool2d[dilated]",
                                  "avg_pool2d[ceil_pad]", "adaptive_avg_pool2d[5x7]",
                                  "adaptive_max_pool2d[upsample]"])
def test_pool_gradients_are_deterministic(case):
    ours, _ = POOL_CASES[case]
    x = randn(8, 16, 33, 35)
    runs = [run_with_grads(ours, dict(input=x), 1)[1]["input"] for _ in range(3)]
    assert all(torch.equal(r, runs[0]) for r in runs[1:])


# ----------------------------------------------------------------------------- gradcheck

@needs_gpu
@pytest.mark.parametrize("case", ["dilated_asymmetric_grouped", "depthwise"])
def test_conv2d_gradcheck(case):
    torch.manual_seed(0)
    if case == "depthwise":
        shapes, options = ((2, 4, 6, 5), (8, 1, 3, 3)), dict(stride=2, padding=1, groups=4)
    else:
        shapes, options = ((2, 4, 7, 6), (6, 2, 3, 2)), dict(stride=(2, 1), padding=1,
                                                             dilation=(1, 2), groups=2)
    x = randn(*shapes[0], dtype=torch.float64).requires_grad_()
    w = randn(*shapes[1], dtype=torch.float64).requires_grad_()
    b = randn(shapes[1][0], dtype=torch.float64).requires_grad_()
    fn = lambda x, w, b: F.conv2d(x, w, b, **options)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


@needs_gpu
@pytest.mark.parametrize("case", ["max_pool2d[asymmetric_ceil]", "avg_pool2d[ceil_pad_exclude]",
                                  "avg_pool2d[divisor_override]", "adaptive_avg_pool2d[5x7]",
                                  "adaptive_max_pool2d[upsample]"])
def test_pool_gradcheck(case):
    ours, _ = POOL_CASES[case]
    x = randn(1, 2, 9, 11, dtype=torch.float64).requires_grad_()
    fn = lambda x: (lambda o: o[0] if isinstance(o, tuple) else o)(ours(x))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


# ----------------------------------------------------------------------------- 64-bit indexing
# Tensors of more than 2**31 elements, so that any int32 offset would wrap.
# The references are computed on pieces small enough for any kernel, and
# compared piece by piece to keep the memory in bounds.

def _free_gpu_gib():
    free, _ = torch.cuda.mem_get_info()
    return free / 2**30


def assert_close_in_pieces(ours, reference, tolerance, what, rows=2048):
    assert ours.shape == reference.shape, what
    max_diff = scale = 0.0
    for start in range(0, ours.shape[2], rows):
        a = ours[:, :, start:start + rows].float()
        b = reference[:, :, start:start + rows].float()
        assert torch.equal(a.isnan(), b.isnan()), f"{what}: NaN in different places"
        max_diff = max(max_diff, (a - b).abs().nan_to_num(0.0).max().item())
        scale = max(scale, b.abs().nan_to_num(0.0).max().item())
    err = max_diff / scale if scale > 0 else max_diff
    assert err <= tolerance, f"{what}: relative error {err:.3g} > {tolerance:g}"


LARGE = (2, 1, 32768, 32770)  # 2**31 + 131072 elements


@needs_gpu
@pytest.mark.slow
@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
def test_pool_past_int32_elements(op):
    if _free_gpu_gib() < 24:
        pytest.skip("needs 24 GiB of free GPU memory")
    _extension.set_poison_outputs(False)  # poisoning 4 GiB buffers only costs time (fixture restores)
    torch.manual_seed(0)
    x = torch.randn(LARGE, device="cuda", dtype=torch.float16)
    assert x.numel() > 2**31
    xr = x.detach().requires_grad_()
    out = getattr(F, op)(xr, 2)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, xr, g)
    del xr
    for n in range(LARGE[0]):  # one image each: under 2**31 elements for torch's kernels
        xt = x[n:n + 1].detach().requires_grad_()
        ref = getattr(TF, op)(xt, 2)
        (ref_grad,) = torch.autograd.grad(ref, xt, g[n:n + 1])
        assert_close_in_pieces(out[n:n + 1], ref, TOLERANCE[torch.float16], f"{op} output[{n}]")
        assert_close_in_pieces(grad[n:n + 1], ref_grad, TOLERANCE[torch.float16],
                               f"{op} grad_input[{n}]")
        del xt, ref, ref_grad


@needs_gpu
@pytest.mark.slow
def test_conv2d_past_int32_elements():
    """A 1x1, stride-16 convolution of a 2**31-element input: its reference
    is a small matrix product on the pixels the kernel reads."""
    if _free_gpu_gib() < 24:
        pytest.skip("needs 24 GiB of free GPU memory")
    _extension.set_poison_outputs(False)
    torch.manual_seed(0)
    x = torch.randn(1, 2, 32768, 32770, device="cuda", dtype=torch.float16)
    w = torch.randn(4, 2, 1, 1, device="cuda", dtype=torch.float16)
    assert x.numel() > 2**31
    xr, wr = x.detach().requires_grad_(), w.detach().requires_grad_()
    out = F.conv2d(xr, wr, stride=16)
    g = torch.randn_like(out)
    grad_x, grad_w = torch.autograd.grad(out, (xr, wr), g)
    del xr, wr

    sampled = x[:, :, ::16, ::16].float()                   # (1, 2, 2048, 2049)
    w2 = w.float().flatten(1)                                # (4, 2)
    ref = torch.einsum("kc,nchw->nkhw", w2, sampled)
    ref_x = torch.einsum("kc,nkhw->nchw", w2, g.float())
    ref_w = torch.einsum("nkhw,nchw->kc", g.float(), sampled).view_as(w)
    assert_close(out, ref, TOLERANCE[torch.float16], "output")
    assert_close(grad_w, ref_w, TOLERANCE[torch.float16], "grad_weight")
    assert_close(grad_x[:, :, ::16, ::16], ref_x, TOLERANCE[torch.float16], "grad_input (read pixels)")
    grad_x[:, :, ::16, ::16] = 0
    assert torch.count_nonzero(grad_x).item() == 0, "grad_input of pixels the conv never reads"


# ----------------------------------------------------------------------------- autocast

@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_conv2d_under_autocast_matches_torch(dtype):
    """Inside torch.autocast("cuda") pycnn's Conv2d runs in the region's dtype,
    as nn.Conv2d does, and the float32 parameters still get float32 gradients."""
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(8, 16, 3, padding=1).cuda()
    ours = pycnn.nn.Conv2d(8, 16, 3, padding=1).cuda()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 8, 12, 12, device="cuda", requires_grad=True)
    outs = {}
    for name, layer in (("torch", ref), ("pycnn", ours)):
        with torch.autocast("cuda", dtype=dtype):
            y = layer(x)
            # An activation the region already cast, with the weight still float32.
            y2 = layer(torch.relu(y[:, :8]))
        assert y.dtype == dtype and y2.dtype == dtype, name
        (y.float().square().sum() + y2.float().sum()).backward()
        outs[name] = (y.float(), y2.float(), x.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone())
        x.grad = None
    for what, a, b in zip(["output", "output of a cast activation", "grad_input", "grad_weight", "grad_bias"],
                          outs["pycnn"], outs["torch"]):
        assert a.dtype == b.dtype, what
        err = ((a - b).abs().max() / b.abs().max()).item()
        assert err < 4 * TOLERANCE[dtype], f"{what}: {err}"
    assert ours.weight.grad.dtype == torch.float32

