"""torch.nn.functional's convolution and pooling, computed by pycnn's kernels.

Same signatures, defaults and results as torch.nn.functional: unbatched
(C, H, W) inputs, ints or pairs for every window option, padding='same' and
'valid', return_indices, and None entries in an adaptive output_size.
conv2d_relu is pycnn's own: relu(conv2d(...)) with the ReLU fused into the
convolution's kernels.
"""
from numbers import Integral

import torch

from ._extension import _C
from .ops import ops

__all__ = ["conv2d", "conv2d_relu", "max_pool2d", "max_pool2d_with_indices", "avg_pool2d",
           "adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"]


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool) or isinstance(value, torch.SymInt)


def _pair(value, op, name):
    """An int or a pair of ints as a 2-tuple; anything else is a ValueError naming `name`."""
    # Plain ints first: the Integral checks below cost about a microsecond a
    # call, which a small pooling call notices.
    if type(value) is int:
        return (value, value)
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value
    if _is_int(value):
        return (int(value), int(value)) if isinstance(value, Integral) else (value, value)
    if isinstance(value, (tuple, list, torch.Size)) and len(value) in (1, 2) and all(map(_is_int, value)):
        return (value[0], value[-1])
    raise ValueError(f"pycnn.{op}: {name} must be an int or a pair of ints, got {name}={value!r}")


def _check_tensor(input, op):
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"pycnn.{op}: input must be a Tensor, got {type(input).__name__}")
    if input.dim() not in (3, 4):
        raise ValueError(f"pycnn.{op}: expected input to be 3-D (C, H, W) or 4-D (N, C, H, W), "
                         f"got a {input.dim()}-D tensor of shape {list(input.shape)}")


def _direct(input):
    """Whether a pooling call may skip torch.ops for pycnn._C's direct entry
    points (the same dispatcher call without torch.ops' per-call schema
    matching, a few microseconds that small pools notice).  Tensor
    subclasses, torch-function modes and torch.compile's tracing take
    torch.ops, which honours them; dispatch modes (fake tensors, FLOP
    counters) see both paths alike."""
    return (type(input) is torch.Tensor and not _torch_function_mode_enabled()
            and not _is_compiling())


_torch_function_mode_enabled = torch._C._is_torch_function_mode_enabled
_is_compiling = torch.compiler.is_compiling


def _call(name, *args):
    """pycnn's operator `name` on args: through pycnn._C where _direct allows
    and its entry point accepts the arguments, else through torch.ops.pycnn."""
    if _direct(args[0]):
        result = getattr(_C, name)(*args)
        if result is not NotImplemented:
            return result
    return getattr(ops, name)(*args)


def _batched(input):
    """(input as 4-D, whether a batch dimension was added)."""
    return (input.unsqueeze(0), True) if input.dim() == 3 else (input, False)


def _unbatched(output, added):
    return output.squeeze(0) if added else output


def _same_padding(op, weight, dilation, stride):
    """torch's padding='same': (symmetric padding, extra right/bottom padding)."""
    if stride != (1, 1):
        raise ValueError(f"pycnn.{op}: padding='same' is not supported for strided "
                         f"convolutions, got stride={stride}")
    total = [dilation[i] * (weight.shape[2 + i] - 1) for i in range(2)]
    left = tuple(t // 2 for t in total)
    extra = tuple(t - 2 * l for t, l in zip(total, left))
    return left, extra


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d with pycnn's kernels."""
    return _conv2d("conv2d", input, weight, bias, stride, padding, dilation, groups)


def conv2d_relu(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """relu(conv2d(...)) in one kernel: the ReLU is applied to each output as
    it is stored (the epilogue), so the pre-activation is never written.  Same
    arguments as conv2d; the gradient is ReLU's then conv2d's."""
    return _conv2d("conv2d_relu", input, weight, bias, stride, padding, dilation, groups)


def _conv2d(op, input, weight, bias, stride, padding, dilation, groups):
    _check_tensor(input, op)
    stride = _pair(stride, op, "stride")
    dilation = _pair(dilation, op, "dilation")
    if not _is_int(groups):
        raise ValueError(f"pycnn.{op}: groups must be an int, got groups={groups!r}")
    input, added = _batched(input)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if weight.dim() != 4:
                raise ValueError(f"pycnn.{op}: expected weight to be 4-D, got shape {list(weight.shape)}")
            padding, extra = _same_padding(op, weight, dilation, stride)
            if any(extra):
                # An odd total padding puts the extra row/column at the end, as torch does.
                input = torch.nn.functional.pad(input, (0, extra[1], 0, extra[0]))
        else:
            raise ValueError(f"pycnn.{op}: padding must be 'same', 'valid', an int or a pair "
                             f"of ints, got padding={padding!r}")
    else:
        padding = _pair(padding, op, "padding")
    return _unbatched(getattr(ops, op)(input, weight, bias, stride, padding, dilation, groups), added)


def _pool_options(op, kernel_size, stride, padding, dilation=1):
    kernel_size = _pair(kernel_size, op, "kernel_size")
    stride = kernel_size if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) \
        else _pair(stride, op, "stride")
    return kernel_size, stride, _pair(padding, op, "padding"), _pair(dilation, op, "dilation")


def max_pool2d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode=False, return_indices=True):
    """(output, indices) of torch.nn.functional.max_pool2d_with_indices."""
    _check_tensor(input, "max_pool2d")
    kernel_size, stride, padding, dilation = _pool_options("max_pool2d", kernel_size, stride,
                                                           padding, dilation)
    input, added = _batched(input)
    output, indices = _call("max_pool2d_with_indices", input, kernel_size, stride, padding,
                            dilation, bool(ceil_mode))
    return _unbatched(output, added), _unbatched(indices, added)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """torch.nn.functional.max_pool2d with pycnn's kernels."""
    if return_indices:
        return max_pool2d_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode)
    _check_tensor(input, "max_pool2d")
    kernel_size, stride, padding, dilation = _pool_options("max_pool2d", kernel_size, stride,
                                                           padding, dilation)
    input, added = _batched(input)
    # The values alone: without a graph to record, no indices are written.
    return _unbatched(_call("max_pool2d", input, kernel_size, stride, padding, dilation,
                            bool(ceil_mode)), added)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """torch.nn.functional.avg_pool2d with pycnn's kernels."""
    _check_tensor(input, "avg_pool2d")
    kernel_size, stride, padding, _ = _pool_options("avg_pool2d", kernel_size, stride, padding)
    if divisor_override is not None and not _is_int(divisor_override):
        raise ValueError(f"pycnn.avg_pool2d: divisor_override must be an int or None, "
                         f"got divisor_override={divisor_override!r}")
    input, added = _batched(input)
    output = _call("avg_pool2d", input, kernel_size, stride, padding,
                   bool(ceil_mode), bool(count_include_pad), divisor_override)
    return _unbatched(output, added)


def _adaptive_size(input, output_size, op):
    """output_size as a pair; None keeps that input dimension, as in torch."""
    if isinstance(output_size, (tuple, list, torch.Size)) and len(output_size) == 2:
        size = tuple(input.shape[-2 + i] if s is None else s for i, s in enumerate(output_size))
    else:
        size = output_size
    return _pair(size, op, "output_size")


def adaptive_avg_pool2d(input, output_size):
    """torch.nn.functional.adaptive_avg_pool2d with pycnn's kernels."""
    _check_tensor(input, "adaptive_avg_pool2d")
    size = _adaptive_size(input, output_size, "adaptive_avg_pool2d")
    input, added = _batched(input)
    return _unbatched(_call("adaptive_avg_pool2d", input, size), added)


def adaptive_max_pool2d_with_indices(input, output_size, return_indices=True):
    """(output, indices) of torch.nn.functional.adaptive_max_pool2d_with_indices."""
    _check_tensor(input, "adaptive_max_pool2d")
    size = _adaptive_size(input, output_size, "adaptive_max_pool2d")
    input, added = _batched(input)
    output, indices = _call("adaptive_max_pool2d", input, size)
    return _unbatched(output, added), _unbatched(indices, added)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """torch.nn.functional.adaptive_max_pool2d with pycnn's kernels."""
    output, indices = adaptive_max_pool2d_with_indices(input, output_size)
    return (output, indices) if return_indices else output
