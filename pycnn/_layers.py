"""What counts as one layer of a model, for pycnn.summary and pycnn.verify.

A layer is a module without children, or a module whose class sets
`pycnn_layer = True`: a composite that is one layer in its paper (LeNet-5's
partially connected C3 is three grouped convolutions inside).  Both tools
walk a model the same way, so that verify's per-layer rows are summary's rows.
"""
import torch


def is_layer(module: torch.nn.Module) -> bool:
    return getattr(module, "pycnn_layer", False) or next(module.children(), None) is None


def named_layers(model: torch.nn.Module, prefix: str = ""):
    """(qualified name, module) of every layer of `model`, in registration
    order, each module once, not descending into a layer."""
    seen = set()

    def walk(module, name):
        if id(module) in seen:
            return
        seen.add(id(module))
        if is_layer(module):
            yield name, module
            return
        for child_name, child in module.named_children():
            yield from walk(child, f"{name}.{child_name}" if name else child_name)

    yield from walk(model, prefix)


def runs_on_pycnn(module: torch.nn.Module) -> bool:
    """Whether the module, or a module inside it, is one of pycnn.nn's layers
    (or a subclass of one): whether pycnn's kernels compute part of it."""
    return any(any(c.__module__ == "pycnn.nn" for c in type(m).__mro__) for m in module.modules())
