"""pycnn's operators as torch sees them: autograd formulas and fake kernels.

The compiled library registers the schemas (csrc/ops/<op>.cpp) and the CPU
and CUDA kernels.  This module adds, for every op, the fake kernel that
torch.compile traces with (output shapes and layouts only) and the autograd
formula, written with pycnn's own backward ops.  The backward ops have
autograd formulas too, so double backward works.

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


def _empty_like_layout(size, like, dtype=None):
    return torch.empty(size, dtype=dtype or like.dtype, device=like.device,
                       memory_format=_memory_format(like))


# ----------------------------------------------------------------------------- conv2d

@torch.library.register_fake("pycnn::conv2d")
def _conv2d_fake(input, weight, bias, stride=1, padding=0, dilation=1, groups=1):
    torch._check(input.dim() == 4 and weight.dim() == 4,
                 lambda: "pycnn.conv2d: input and weight must be 4-D")
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    n, _, h, w = input.shape
    out_h = conv_output_size(h, weight.shape[2], stride[0], padding[0], dilation[0])
    out_w = conv_output_size(w, weight.shape[3], stride[1], padding[1], dilation[1])
    return _empty_like_layout((n, weight.shape[0], out_h, out_w), input)


@torch.library.register_fake("pycnn::conv2d_input_backward")
def _conv2d_input_backward_fake(grad_output, weight, input_size, stride, padding, dilation, groups):
    return _empty_like_layout(input_size, grad_output)


@torch.library.register_fake("pycnn::conv2d_weight_backward")
def _conv2d_weight_backward_fake(grad_output, input, weight_size, stride, padding, dilation, groups):
    return grad_output.new_empty(weight_size)


@torch.library.register_fake("pycnn::conv2d_bias_backward")
def _conv2d_bias_backward_fake(grad_output):
    return grad_output.new_empty((grad_output.shape[1],))


def _conv2d_setup(ctx, inputs, output):
    input, weight, bias, stride, padding, dilation, groups = inputs
    ctx.conv_args = (stride, padding, dilation, groups)
    ctx.input_size = input.shape
    ctx.weight_size = weight.shape
    # Keep only what the requested gradients read.
    ctx.save_for_backward(input if ctx.needs_input_grad[1] else None,
                          weight if ctx.needs_input_grad[0] else None)


def _conv2d_backward(ctx, grad_output):
    input, weight = ctx.saved_tensors
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_input = ops.conv2d_input_backward(grad_output, weight, ctx.input_size, *ctx.conv_args)
    if ctx.needs_input_grad[1]:
        grad_weight = ops.conv2d_weight_backward(grad_output, input, ctx.weight_size, *ctx.conv_args)
    if ctx.needs_input_grad[2]:
        grad_bias = ops.conv2d_bias_backward(grad_output)
    return grad_input, grad_weight, grad_bias, None, None, None, None


torch.library.register_autograd("pycnn::conv2d", _conv2d_backward, setup_context=_conv2d_setup)


# conv2d is bilinear in (input, weight), so its backward ops are linear in
# each argument and their derivatives are conv2d and the other backward op.

def _input_backward_setup(ctx, inputs, output):
    grad_output, weight, input_size, *conv_args = inputs
    ctx.conv_args = conv_args
    ctx.weight_size = weight.shape
    ctx.save_for_backward(grad_output, weight)


def _input_backward_backward(ctx, grad_grad_input):
    grad_output, weight = ctx.saved_tensors
    gg_output = gg_weight = None
    if ctx.needs_input_grad[0]:
        gg_output = ops.conv2d(grad_grad_input, weight, None, *ctx.conv_args)
    if ctx.needs_input_grad[1]:
        gg_weight = ops.conv2d_weight_backward(grad_output, grad_grad_input, ctx.weight_size,
                                               *ctx.conv_args)
    return gg_output, gg_weight, None, None, None, None, None


torch.library.register_autograd("pycnn::conv2d_input_backward", _input_backward_backward,
                                setup_context=_input_backward_setup)


def _weight_backward_setup(ctx, inputs, output):
    grad_output, input, weight_size, *conv_args = inputs
    ctx.conv_args = conv_args
    ctx.input_size = input.shape
    ctx.save_for_backward(grad_output, input)


def _weight_backward_backward(ctx, grad_grad_weight):
    grad_output, input = ctx.saved_tensors
    gg_output = gg_input = None
    if ctx.needs_input_grad[0]:
        gg_output = ops.conv2d(input, grad_grad_weight, None, *ctx.conv_args)
    if ctx.needs_input_grad[1]:
        gg_input = ops.conv2d_input_backward(grad_output, grad_grad_weight, ctx.input_size,
                                             *ctx.conv_args)
    return gg_output, gg_input, None, None, None, None, None


torch.library.register_autograd("pycnn::conv2d_weight_backward", _weight_backward_backward,
                                setup_context=_weight_backward_setup)


def _bias_backward_setup(ctx, inputs, output):
    ctx.grad_output_size = inputs[0].shape


def _bias_backward_backward(ctx, grad_grad_bias):
    return grad_grad_bias.view(1, -1, 1, 1).expand(ctx.grad_output_size)


torch.library.register_autograd("pycnn::conv2d_bias_backward", _bias_backward_backward,
                                setup_context=_bias_backward_setup)


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
def _max_pool2d_fake(input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    size = _pool_output_shape(input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return _empty_like_layout(size, input), _empty_like_layout(size, input, torch.int64)


@torch.library.register_fake("pycnn::max_pool2d_backward")
def _max_pool2d_backward_fake(grad_output, indices, input_size, kernel_size, stride, padding,
                              dilation, ceil_mode):
    return _empty_like_layout(input_size, grad_output)


def _max_pool2d_setup(ctx, inputs, output):
    input, *pool_args = inputs
    ctx.pool_args = pool_args
    ctx.input_size = input.shape
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1])


def _max_pool2d_backward(ctx, grad_output, _grad_indices):
    (indices,) = ctx.saved_tensors
    return (ops.max_pool2d_backward(grad_output, indices, ctx.input_size, *ctx.pool_args),
            None, None, None, None, None)


torch.library.register_autograd("pycnn::max_pool2d_with_indices", _max_pool2d_backward,
                                setup_context=_max_pool2d_setup)


def _gather_at_indices(grad_grad_input, indices):
    """The adjoint of the max-pool scatter: reads each output's chosen input."""
    flat = grad_grad_input.flatten(2).gather(2, indices.flatten(2))
    return flat.view(indices.shape)


def _index_backward_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _index_backward_backward(ctx, grad_grad_input):
    (indices,) = ctx.saved_tensors
    return (_gather_at_indices(grad_grad_input, indices),) + (None,) * (len(ctx.needs_input_grad) - 1)


torch.library.register_autograd("pycnn::max_pool2d_backward", _index_backward_backward,
                                setup_context=_index_backward_setup)


# ----------------------------------------------------------------------------- avg_pool2d

@torch.library.register_fake("pycnn::avg_pool2d")
def _avg_pool2d_fake(input, kernel_size, stride=(), padding=0, ceil_mode=False,
                     count_include_pad=True, divisor_override=None):
    size = _pool_output_shape(input.shape, kernel_size, stride, padding, 1, ceil_mode)
    return _empty_like_layout(size, input)


@torch.library.register_fake("pycnn::avg_pool2d_backward")
def _avg_pool2d_backward_fake(grad_output, input_size, kernel_size, stride, padding, ceil_mode,
                              count_include_pad, divisor_override):
    return _empty_like_layout(input_size, grad_output)


def _avg_pool2d_setup(ctx, inputs, output):
    input, *pool_args = inputs
    ctx.pool_args = pool_args
    ctx.input_size = input.shape


def _avg_pool2d_backward(ctx, grad_output):
    return (ops.avg_pool2d_backward(grad_output, ctx.input_size, *ctx.pool_args),) + (None,) * 6


torch.library.register_autograd("pycnn::avg_pool2d", _avg_pool2d_backward,
                                setup_context=_avg_pool2d_setup)


def _avg_backward_setup(ctx, inputs, output):
    ctx.pool_args = inputs[2:]


def _avg_backward_backward(ctx, grad_grad_input):
    return (ops.avg_pool2d(grad_grad_input, *ctx.pool_args),) + (None,) * 7


torch.library.register_autograd("pycnn::avg_pool2d_backward", _avg_backward_backward,
                                setup_context=_avg_backward_setup)


# ----------------------------------------------------------------------------- adaptive pools

def _adaptive_output_shape(input, output_size):
    return (input.shape[0], input.shape[1]) + pair(output_size)


@torch.library.register_fake("pycnn::adaptive_avg_pool2d")
def _adaptive_avg_pool2d_fake(input, output_size):
    return _empty_like_layout(_adaptive_output_shape(input, output_size), input)


@torch.library.register_fake("pycnn::adaptive_avg_pool2d_backward")
def _adaptive_avg_pool2d_backward_fake(grad_output, input_size):
    return _empty_like_layout(input_size, grad_output)


def _adaptive_avg_setup(ctx, inputs, output):
    ctx.input_size = inputs[0].shape


def _adaptive_avg_backward(ctx, grad_output):
    return ops.adaptive_avg_pool2d_backward(grad_output, ctx.input_size), None


torch.library.register_autograd("pycnn::adaptive_avg_pool2d", _adaptive_avg_backward,
                                setup_context=_adaptive_avg_setup)


def _adaptive_avg_backward_setup(ctx, inputs, output):
    ctx.output_size = inputs[0].shape[2:]


def _adaptive_avg_backward_backward(ctx, grad_grad_input):
    return ops.adaptive_avg_pool2d(grad_grad_input, ctx.output_size), None


torch.library.register_autograd("pycnn::adaptive_avg_pool2d_backward",
                                _adaptive_avg_backward_backward,
                                setup_context=_adaptive_avg_backward_setup)


@torch.library.register_fake("pycnn::adaptive_max_pool2d")
def _adaptive_max_pool2d_fake(input, output_size):
    size = _adaptive_output_shape(input, output_size)
    return _empty_like_layout(size, input), _empty_like_layout(size, input, torch.int64)


@torch.library.register_fake("pycnn::adaptive_max_pool2d_backward")
def _adaptive_max_pool2d_backward_fake(grad_output, indices, input_size):
    return _empty_like_layout(input_size, grad_output)


def _adaptive_max_setup(ctx, inputs, output):
    ctx.input_size = inputs[0].shape
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1])


def _adaptive_max_backward(ctx, grad_output, _grad_indices):
    (indices,) = ctx.saved_tensors
    return ops.adaptive_max_pool2d_backward(grad_output, indices, ctx.input_size), None


torch.library.register_autograd("pycnn::adaptive_max_pool2d", _adaptive_max_backward,
                                setup_context=_adaptive_max_setup)
torch.library.register_autograd("pycnn::adaptive_max_pool2d_backward", _index_backward_backward,
                                setup_context=_index_backward_setup)
