"""Whole models for the benchmark: each built once with torch's layers, and
copied with pycnn's layers and the same weights.

Models come from pycnn.models when it has them, otherwise from
torchvision.models (LeNet-5, which torchvision lacks, is defined here).
"""
import copy
import importlib
import warnings

import torch

from .. import nn as pycnn_nn

# torch layer class -> pycnn layer class.  pycnn's layers subclass torch's
# and add no state, so a module changes sides by changing its class.
_TO_PYCNN = {
    torch.nn.Conv2d: pycnn_nn.Conv2d,
    torch.nn.MaxPool2d: pycnn_nn.MaxPool2d,
    torch.nn.AvgPool2d: pycnn_nn.AvgPool2d,
    torch.nn.AdaptiveAvgPool2d: pycnn_nn.AdaptiveAvgPool2d,
    torch.nn.AdaptiveMaxPool2d: pycnn_nn.AdaptiveMaxPool2d,
}
_TO_TORCH = {ours: theirs for theirs, ours in _TO_PYCNN.items()}


class LeNet5(torch.nn.Module):
    """LeNet-5 as pycnn.models builds it (ReLU, 2×2 max pooling, C5 as a 5×5
    convolution), for trees without pycnn.models."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.C1 = torch.nn.Conv2d(in_channels, 6, 5)
        self.S2 = torch.nn.MaxPool2d(2)
        self.C3 = torch.nn.Conv2d(6, 16, 5)
        self.S4 = torch.nn.MaxPool2d(2)
        self.C5 = torch.nn.Conv2d(16, 120, 5)
        self.F6 = torch.nn.Linear(120, 84)
        self.OUTPUT = torch.nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.S2(torch.relu(self.C1(x)))
        x = self.S4(torch.relu(self.C3(x)))
        x = torch.relu(self.C5(x)).flatten(1)
        return self.OUTPUT(torch.relu(self.F6(x)))


def _zoo():
    try:
        return importlib.import_module("pycnn.models")
    except ImportError:
        return None


def _swap_layers(model, mapping):
    for module in model.modules():
        target = mapping.get(type(module))
        if target is not None:
            module.__class__ = target
    return model


def torch_layers_model(name, num_classes=None):
    """The model `name` with torch's own conv and pooling layers."""
    options = {} if num_classes is None else {"num_classes": num_classes}
    zoo = _zoo()
    builder = getattr(zoo, name, None) if zoo is not None else None
    if builder is not None:
        model = builder(**options)
    elif name in ("lenet5", "lenet"):
        model = LeNet5(**options)
    else:
        import torchvision
        try:
            model = torchvision.models.get_model(name, weights=None, **options)
        except ValueError as error:
            raise ValueError(f"pycnn bench: unknown model {name!r}: not in pycnn.models and "
                             f"torchvision says: {error}") from None
    return _swap_layers(model, _TO_TORCH)


def pycnn_layers_model(model):
    """A copy of `model`, same weights, with pycnn's layers in place of torch's
    (through pycnn.convert where the tree has it: the path users take)."""
    try:
        from .. import convert
    except ImportError:
        return _swap_layers(copy.deepcopy(model), _TO_PYCNN)
    with warnings.catch_warnings():
        # A layer convert declines stays torch's; the benchmark counts and reports those.
        warnings.simplefilter("ignore")
        return convert(model, inplace=False)


def torch_layers_left(model):
    """How many conv and pooling layers of `model` still compute with torch."""
    return sum(type(module) in _TO_PYCNN for module in model.modules())


def input_shape(name, image_size=None):
    """(channels, height, width) of the model's input: the size it was designed
    for, or `image_size` square."""
    zoo = _zoo()
    if zoo is not None and name in getattr(zoo, "MODELS", {}):
        channels, height, width = zoo.spec(name).input_size
    elif name in ("lenet5", "lenet"):
        channels, height, width = 1, 32, 32
    else:
        size = 299 if name == "inception_v3" else 224
        channels, height, width = 3, size, size
    if image_size:
        height = width = image_size
    return (channels, height, width)


def num_classes(model):
    """Classes of a classifier: the width of its last linear or conv layer."""
    last = None
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            last = module.out_features
        elif isinstance(module, torch.nn.Conv2d):
            last = module.out_channels
    return last
