"""Drop pycnn into an existing model: `pycnn.convert(model)`.

Every torch.nn Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and
AdaptiveMaxPool2d in the model becomes pycnn.nn's class of the same name.
pycnn.nn's classes subclass torch's and add no state, so a layer is converted
by changing its class: the module object stays, and with it its parameters
(the same Parameter objects), buffers, options, hooks, training mode, device,
dtype and requires_grad.  inplace=False converts a deep copy instead.

A layer pycnn cannot take is left as torch's and named in one
ConversionWarning, never changed silently:
  * a subclass of a torch layer other than pycnn's (its forward may differ
    from torch's, so swapping the arithmetic could change what it computes);
  * a lazy layer not yet initialised (LazyConv2d; run one forward first);
  * a TorchScript module (its compiled code calls torch's ops directly);
  * parameters or tensors in a dtype or on a device pycnn has no kernels for:
    float32/float64 on the CPU, also float16/bfloat16 on CUDA when pycnn was
    built with CUDA.  Pools have no parameters, so they go by the tensors of
    the nearest enclosing module that has any (a pool alone is converted).
A layer already pycnn's is skipped.  to_torch(model) is the inverse.

fuse_relu=True also fuses each Conv2d that an nn.ReLU follows in an
nn.Sequential (VGG's and AlexNet's feature stacks) into a Conv2dReLU, which
applies the ReLU in the convolution's kernel; the ReLU becomes a FusedReLU
(the identity), so that state_dict keys and indices stay as they were.  A
pair is left alone if either module has hooks (they would see other values)
or appears in the model more than once.
"""
import collections
import copy
import warnings

import torch
from torch import nn

from . import nn as pnn
from ._callable_module import make_callable
from ._extension import cuda_compiled

__all__ = ["convert", "to_torch", "ConversionWarning"]

PYCNN_LAYERS = {nn.Conv2d: pnn.Conv2d, nn.MaxPool2d: pnn.MaxPool2d, nn.AvgPool2d: pnn.AvgPool2d,
                nn.AdaptiveAvgPool2d: pnn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d: pnn.AdaptiveMaxPool2d}
TORCH_LAYERS = {ours: theirs for theirs, ours in PYCNN_LAYERS.items()}

CPU_DTYPES = (torch.float32, torch.float64)
CUDA_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class ConversionWarning(UserWarning):
    """Some layers of a model were left as torch's by pycnn.convert."""


def _unsupported_tensor(tensor):
    """Why pycnn's kernels cannot take `tensor`'s device and dtype, or None."""
    device, dtype = tensor.device.type, tensor.dtype
    if device == "meta":
        return None if dtype.is_floating_point else f"dtype {dtype}"
    if device == "cpu":
        return None if dtype in CPU_DTYPES else f"dtype {dtype} on the CPU (pycnn: float32, float64)"
    if device == "cuda":
        if not cuda_compiled():
            return "on CUDA, but this build of pycnn has no CUDA kernels"
        return None if dtype in CUDA_DTYPES else f"dtype {dtype} on CUDA"
    return f"device {tensor.device} (pycnn: cpu, cuda)"


def _floating_tensors(module):
    return [t for t in list(module.parameters()) + list(module.buffers())
            if (t.is_floating_point() or t.is_complex())
            and not isinstance(t, nn.parameter.UninitializedTensorMixin)]


def _surroundings_reason(ancestors):
    """For a layer without parameters: why the nearest enclosing module that
    holds floating-point tensors holds some pycnn cannot take, or None."""
    for ancestor in reversed(ancestors):
        tensors = _floating_tensors(ancestor)
        if tensors:
            reasons = [r for r in map(_unsupported_tensor, tensors) if r]
            return f"its enclosing module holds tensors of {reasons[0]}" if reasons else None
    return None


def _base_layer(module, table):
    """The torch (or pycnn) layer class `module` is an instance of, or None."""
    return next((base for base in table if isinstance(module, base)), None)


def _reason_left(module, ancestors):
    """Why `module` (an instance of a torch layer) cannot become pycnn's, or None."""
    cls = type(module)
    if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
        return "lazy layer not yet initialised (run one forward first)"
    if torch.nn.utils.parametrize.is_parametrized(module):
        # parametrize makes a class Parametrized<Layer> over the layer's class.
        if cls.__bases__ not in [(base,) for base in PYCNN_LAYERS]:
            return f"parametrized subclass {cls.__qualname__} of another class"
    elif cls not in PYCNN_LAYERS:
        base = _base_layer(module, PYCNN_LAYERS)
        return f"subclass {cls.__module__}.{cls.__qualname__} of torch.nn.{base.__name__} " \
               f"(its own code would be bypassed)"
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor):
        reason = _unsupported_tensor(weight)
        return f"weight of {reason}" if reason else None
    return _surroundings_reason(ancestors)


def _swap_class(module, table):
    """Changes module's layer class through the table, keeping a parametrization's class on top."""
    cls = type(module)
    if torch.nn.utils.parametrize.is_parametrized(module) and cls not in table:
        base = cls.__bases__[0]
        members = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
        module.__class__ = type(f"Parametrized{table[base].__name__}", (table[base],), members)
    else:
        module.__class__ = table[cls]


def _is_script_layer(module):
    return isinstance(module, torch.jit.ScriptModule) and \
        getattr(module, "original_name", None) in {c.__name__ for c in PYCNN_LAYERS}


def _walk(module, name="", ancestors=(), seen=None):
    """(name, module, its ancestors outermost first) for every module, once each."""
    seen = set() if seen is None else seen
    if id(module) in seen:
        return
    seen.add(id(module))
    yield name, module, ancestors
    for child_name, child in module.named_children():
        yield from _walk(child, f"{name}.{child_name}" if name else child_name,
                         ancestors + (module,), seen)


def _has_hooks(module):
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks)


def _sequential_pairs(model):
    """(module, the module after it) in every nn.Sequential of the model."""
    for container in model.modules():
        if isinstance(container, nn.Sequential):
            children = list(container.children())
            yield from zip(children, children[1:])


def _fuse_relus(model):
    uses = collections.Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    for conv, relu in _sequential_pairs(model):
        if (type(conv) is pnn.Conv2d and type(relu) is nn.ReLU and uses[id(conv)] == 1
                and uses[id(relu)] == 1 and not _has_hooks(conv) and not _has_hooks(relu)):
            conv.__class__ = pnn.Conv2dReLU
            relu.__class__ = pnn.FusedReLU


def convert(model: nn.Module, inplace: bool = True, fuse_relu: bool = False) -> nn.Module:
    """`model` with its convolution and pooling layers on pycnn's kernels.

    inplace=True (default) converts `model` itself and returns it;
    inplace=False returns a converted deep copy and leaves `model` as it was.
    fuse_relu=True: each Conv2d followed by an nn.ReLU in an nn.Sequential
    becomes a Conv2dReLU (see the module's docstring).  Layers pycnn cannot
    take are left as they are and listed in a ConversionWarning.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"pycnn.convert: model must be a torch.nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    left = []
    for name, module, ancestors in _walk(model):
        if _is_script_layer(module):
            left.append((name, module.original_name, "TorchScript module (compiled code)"))
            continue
        if _base_layer(module, TORCH_LAYERS) is not None or _base_layer(module, PYCNN_LAYERS) is None:
            continue
        reason = _reason_left(module, ancestors)
        if reason:
            left.append((name, type(module).__name__, reason))
        else:
            _swap_class(module, PYCNN_LAYERS)
    if fuse_relu:
        _fuse_relus(model)
    if left:
        listing = "; ".join(f"{name or '(the model)'} ({kind}): {why}" for name, kind, why in left)
        warnings.warn(f"pycnn.convert left {len(left)} layer(s) as torch's: {listing}",
                      ConversionWarning, stacklevel=2)
    return model


def to_torch(model: nn.Module, inplace: bool = True) -> nn.Module:
    """The inverse of convert: every pycnn.nn layer (or subclass of one) back
    to its torch.nn class, which computes the same thing with torch's kernels.
    A Conv2dReLU with its FusedReLU after it becomes Conv2d and ReLU again; one
    without (torch has no single layer for both) stays, named in a
    ConversionWarning."""
    if not inplace:
        model = copy.deepcopy(model)
    unfused = set()
    for conv, relu in _sequential_pairs(model):
        if isinstance(conv, pnn.Conv2dReLU) and type(relu) is pnn.FusedReLU:
            relu.__class__ = nn.ReLU
            unfused.add(id(conv))
    left = []
    for name, module in model.named_modules():
        if isinstance(module, pnn.Conv2dReLU) and id(module) not in unfused:
            left.append(name or "(the model)")
            continue
        base = _base_layer(module, TORCH_LAYERS)
        if base is None:
            continue
        if torch.nn.utils.parametrize.is_parametrized(module) and type(module).__bases__ == (base,):
            _swap_class(module, TORCH_LAYERS)
        else:
            module.__class__ = TORCH_LAYERS[base]
    if left:
        warnings.warn(f"pycnn.to_torch left {len(left)} Conv2dReLU layer(s) as pycnn's (no FusedReLU "
                      f"after them to turn back into an nn.ReLU): {', '.join(left)}",
                      ConversionWarning, stacklevel=2)
    return model


make_callable(__name__, convert)
