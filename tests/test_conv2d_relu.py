"""pycnn.functional.conv2d_relu and pycnn.nn.Conv2dReLU: relu(conv2d(...))
with the ReLU applied in the convolution's epilogue, on every CPU path (the
narrow kernel for few output channels, the blocked GEMM, the direct kernel
for depthwise layers), against torch and against pycnn's own unfused pair."""
import pytest
import torch
import torch.nn.functional as TF
from torch.autograd import gradcheck, gradgradcheck

import pycnn.nn as pnn
from pycnn import functional as F
from checks import channels_last, compare_with_torch

# (options, input shape, weight shape): each reaches one CPU path.
PATHS = {
    "narrow": (dict(padding=1), (2, 3, 11, 13), (4, 3, 3, 3)),             # <= 8 output channels, NCHW
    "gemm": (dict(padding=1), (2, 8, 9, 10), (24, 8, 3, 3)),
    "gemm_strided_groups": (dict(stride=2, groups=2), (2, 8, 9, 10), (12, 4, 3, 3)),
    "direct_depthwise": (dict(padding=2, groups=6), (2, 6, 8, 9), (6, 1, 5, 5)),
}


def inputs(x_shape, w_shape, bias=True, grad=True):
    return dict(input=torch.randn(*x_shape, dtype=torch.float64, requires_grad=grad),
                weight=torch.randn(*w_shape, dtype=torch.float64, requires_grad=grad),
                bias=torch.randn(w_shape[0], dtype=torch.float64, requires_grad=grad) if bias else None)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("path", list(PATHS))
def test_matches_torch_in_float64(path, bias, layout):
    """Output and every gradient against torch's relu(conv2d) in float64
    (far from any rounding that could flip an output's sign)."""
    options, x_shape, w_shape = PATHS[path]
    prepare = channels_last if layout == "channels_last" else (lambda x: x)
    compare_with_torch(lambda input, weight, bias: F.conv2d_relu(prepare(input), weight, bias, **options),
                       lambda input, weight, bias: torch.relu(TF.conv2d(prepare(input), weight, bias, **options)),
                       inputs(x_shape, w_shape, bias), torch.float64, what=f"conv2d_relu {path}",
                       check_layout=("output",))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("path", list(PATHS))
def test_is_bitwise_the_unfused_pair(path, layout, dtype):
    """The fused op gives bitwise what torch.relu(pycnn conv2d) gives, output
    and gradients: the ReLU commutes with the store, and the gradient is
    ReLU's mask then conv2d's own backward ops.  (Against torch in float32 a
    pre-activation within rounding of zero could take either side.)"""
    options, x_shape, w_shape = PATHS[path]
    values = inputs(x_shape, w_shape)
    prepare = channels_last if layout == "channels_last" else (lambda x: x)

    def run(fn):
        leaves = [v.detach().to(dtype).requires_grad_() for v in values.values()]
        out = fn(prepare(leaves[0]), *leaves[1:], **options)
        grad = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(dtype)
        return [out.detach()] + list(torch.autograd.grad(out, leaves, grad))

    fused = run(F.conv2d_relu)
    unfused = run(lambda *a, **o: torch.relu(F.conv2d(*a, **o)))
    assert (unfused[0] == 0).float().mean() > 0.2, "too few negative pre-activations to test the mask"
    for name, a, b in zip(["output", "grad_input", "grad_weight", "grad_bias"], fused, unfused):
        assert torch.equal(a, b), f"{path} {layout} {dtype}: {name} differs from relu(conv2d)"


@pytest.mark.parametrize("path", list(PATHS))
def test_nan_stays_nan_and_inf_follows_the_sign(path):
    """torch.relu keeps NaN and maps -inf to 0; so does the epilogue."""
    options, x_shape, w_shape = PATHS[path]
    x = torch.randn(*x_shape)
    w = torch.randn(*w_shape)
    x[0, 0, 1, 1] = float("nan")
    x[1, -1, 2, 3] = float("inf")
    ours = F.conv2d_relu(x, w, None, **options)
    expected = torch.relu(F.conv2d(x, w, None, **options))
    assert ours.isnan().any() and torch.equal(ours.isnan(), expected.isnan())
    finite = ~expected.isnan()
    assert torch.equal(ours[finite], expected[finite])


@pytest.mark.parametrize("path", list(PATHS))
def test_gradcheck(path):
    options, x_shape, w_shape = PATHS[path]
    # Small shapes of the same kinds: gradcheck's cost grows with every element.
    x_shape = (1, x_shape[1], 5, 6)
    args = tuple(v for v in inputs(x_shape, w_shape).values())
    fn = lambda x, w, b: F.conv2d_relu(x, w, b, **options)  # noqa: E731
    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)


def test_errors_name_the_op():
    x, w = torch.randn(1, 3, 5, 5), torch.randn(4, 2, 3, 3)
    with pytest.raises(RuntimeError, match=r"pycnn\.conv2d_relu: weight of shape \[4, 2, 3, 3\]"):
        F.conv2d_relu(x, w)
    with pytest.raises(ValueError, match=r"pycnn\.conv2d_relu: stride"):
        F.conv2d_relu(x, torch.randn(4, 3, 3, 3), stride=0)
    with pytest.raises(ValueError, match=r"pycnn\.conv2d_relu: padding must be"):
        F.conv2d_relu(x, torch.randn(4, 3, 3, 3), padding="full")


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_layer_is_conv2d_then_relu_with_conv2ds_state(padding_mode):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 6, 3, padding=1, padding_mode=padding_mode).double()
    fused = pnn.Conv2dReLU(3, 6, 3, padding=1, padding_mode=padding_mode).double()
    fused.load_state_dict(conv.state_dict())
    assert list(fused.state_dict()) == ["weight", "bias"] and isinstance(fused, torch.nn.Conv2d)
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    torch.testing.assert_close(fused(x), torch.relu(conv(x)), rtol=1e-12, atol=1e-12)
    assert (conv(x) < 0).any()
