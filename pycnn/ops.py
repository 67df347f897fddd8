"""pycnn's operators as torch sees them: the compiled library and the fake kernels.

The compiled library registers the schemas (csrc/ops/<op>.cpp), the CPU and
CUDA kernels, and the autograd formulas (csrc/ops/autograd/: C++, because a
Python formula costs more per call than a small layer's kernel).  The
backward ops have autograd formulas too, so double backward works.  This
module adds, for every op, the fake kernel that torch.compile traces with
(output shapes and layouts only).

Call the ops through pycnn.functional, which accepts torch's argument forms;
torch.ops.pycnn.<op> takes the schema's normalised arguments.
"""
import torch

from . import _extension  # noqa: F401  (loads the compiled library)
from ._shape import conv_output_size, pair, pool_output_size

ops = torch.ops.pycnn


def _memory_format(t):
    """The layout outputs take: the rule of is_channels_last in csrc/ops/common.cpp."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _check_same_dtype_and_device(op, first_name, first, **others):
    """check_same_dtype_and_device of csrc/ops/common.cpp, for the fake kernels:
    on meta tensors no compiled kernel runs to check them (a meta input with a
    CPU weight reaches only the fake kernel)."""
    for name, other in others.items():
        if other is None:
            continue
        torch._check(other.dtype == first.dtype, lambda: (
            f"{op}: {first_name} (dtype {first.dtype}) and {name} (dtype {other.dtype}) must have "
            f"the same dtype"))
        torch._check(other.device == first.device, lambda: (
            f"{op}: {first_name} (on {first.device}) and {name} (on {other.device}) must be on "
            f"the same device"))


def _check_same_device(op, first_name, first, name, other):
    torch._check(other.device == first.device, lambda: (
        f"{op}: {name} (on {other.device}) and {first_name} (on {first.device}) must be on the "
        f"same device"))


def _empty_like_layout(size, like, dtype=None):
    return torch.empty(size, dtype=dtype or like.dtype, device=like.device,
                       memory_format=_memory_format(like))


# ----------------------------------------------------------------------------- conv2d

# The fake kernels repeat the schema's defaults: the dispatcher leaves out of
# the call every trailing argument equal to its default.

def _conv2d_output(op, input, weight, bias, stride, padding, dilation):
    torch._check(input.dim() == 4 and weight.dim() == 4,
                 lambda: f"{op}: input and weight must be 4-D")
    _check_same_dtype_and_device(op, "input", input, weight=weight, bias=bias)
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    n, _, h, w = input.shape
    out_h = conv_output_size(h, weight.shape[2], stride[0], padding[0], dilation[0])
    out_w = conv_output_size(w, weight.shape[3], stride[1], padding[1], dilation[1])
    return _empty_like_layout((n, weight.shape[0], out_h, out_w), input)


@torch.library.register_fake("pycnn::conv2d")
def _conv2d_fake(input, weight, bias, stride=(1,), padding=(0,), dilation=(1,), groups=1):
    return _conv2d_output("pycnn.conv2d", input, weight, bias, stride, padding, dilation)


@torch.library.register_fake("pycnn::conv2d_relu")
def _conv2d_relu_fake(input, weight, bias, stride=(1,), padding=(0,), dilation=(1,), groups=1):
    return _conv2d_output("pycnn.conv2d_relu", input, weight, bias, stride, padding, dilation)


@torch.library.register_fake("pycnn::conv2d_input_backward")
def _conv2d_input_backward_fake(grad_output, weight, input_size, stride, padding, dilation, groups):
    _check_same_dtype_and_device("pycnn.conv2d_input_backward", "grad_output", grad_output,
                                 weight=weight)
    return _empty_like_layout(input_size, grad_output)


@torch.library.register_fake("pycnn::conv2d_weight_backward")
def _conv2d_weight_backward_fake(grad_output, input, weight_size, stride, padding, dilation, groups):
    _check_same_dtype_and_device("pycnn.conv2d_weight_backward", "grad_output", grad_output,
                                 input=input)
    return grad_output.new_empty(weight_size)


@torch.library.register_fake("pycnn::conv2d_bias_backward")
def _conv2d_bias_backward_fake(grad_output):
    return grad_output.new_empty((grad_output.shape[1],))


# ----------------------------------------------------------------------------- max_pool2d

def _pool_output_shape(input_size, kernel_size, stride, padding, dilation, ceil_mode):
    kernel = pair(kernel_size)
    stride = kernel if len(stride) == 0 else pair(stride)
    padding, dilation = pair(padding), pair(dilation)
    n, c, h, w = input_size
    return (n, c,
            pool_output_size(h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode),
            pool_output_size(w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode))


@torch.library.register_fake("pycnn::max_pool2d_with_indices")
def _max_pool2d_fake(input, kernel_size, stride=(), padding=(0,), dilation=(1,), ceil_mode=False):
    size = _pool_output_shape(input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return _empty_like_layout(size, input), _empty_like_layout(size, input, torch.int64)


@torch.library.register_fake("pycnn::max_pool2d")
def _max_pool2d_values_fake(input, kernel_size, stride=(), padding=(0,), dilation=(1,), ceil_mode=False):
    size = _pool_output_shape(input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return _empty_like_layout(size, input)


@torch.library.register_fake("pycnn::max_pool2d_backward")
def _max_pool2d_backward_fake(grad_output, indices, input_size, kernel_size, stride, padding,
                              dilation, ceil_mode):
    _check_same_device("pycnn.max_pool2d_backward", "grad_output", grad_output, "indices", indices)
    return _empty_like_layout(input_size, grad_output)


# ----------------------------------------------------------------------------- avg_pool2d

@torch.library.register_fake("pycnn::avg_pool2d")
def _avg_pool2d_fake(input, kernel_size, stride=(), padding=(0,), ceil_mode=False,
                     count_include_pad=True, divisor_override=None):
    size = _pool_output_shape(input.shape, kernel_size, stride, padding, 1, ceil_mode)
    return _empty_like_layout(size, input)


@torch.library.register_fake("pycnn::avg_pool2d_backward")
def _avg_pool2d_backward_fake(grad_output, input_size, kernel_size, stride, padding, ceil_mode,
                              count_include_pad, divisor_override):
    return _empty_like_layout(input_size, grad_output)


# ----------------------------------------------------------------------------- adaptive pools

def _adaptive_output_shape(input, output_size):
    return (input.shape[0], input.shape[1]) + pair(output_size)


@torch.library.register_fake("pycnn::adaptive_avg_pool2d")
def _adaptive_avg_pool2d_fake(input, output_size):
    return _empty_like_layout(_adaptive_output_shape(input, output_size), input)


@torch.library.register_fake("pycnn::adaptive_avg_pool2d_backward")
def _adaptive_avg_pool2d_backward_fake(grad_output, input_size):
    return _empty_like_layout(input_size, grad_output)


@torch.library.register_fake("pycnn::adaptive_max_pool2d")
def _adaptive_max_pool2d_fake(input, output_size):
    size = _adaptive_output_shape(input, output_size)
    return _empty_like_layout(size, input), _empty_like_layout(size, input, torch.int64)


@torch.library.register_fake("pycnn::adaptive_max_pool2d_backward")
def _adaptive_max_pool2d_backward_fake(grad_output, indices, input_size):
    _check_same_device("pycnn.adaptive_max_pool2d_backward", "grad_output", grad_output,
                       "indices", indices)
    return _empty_like_layout(input_size, grad_output)
