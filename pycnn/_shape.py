"""Output-shape arithmetic for the fake (meta) kernels.

These mirror csrc/shape.h, the definition the compiled kernels use; they
work on Python ints and on the symbolic sizes torch.compile traces with.
"""


def pair(value):
    """An int or a one/two-element sequence as a 2-tuple (schema int[2])."""
    if isinstance(value, (list, tuple)):
        return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])
    return (value, value)


def conv_output_size(size, kernel, stride, pad, dilation):
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(size, kernel, stride, pad, dilation, ceil_mode):
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out = out - 1
    return out
