"""Whole models for the benchmark: each built once with torch's layers, and
copied with pycnn's layers and the same weights.

Models come from pycnn.models when it has them, otherwise from
torchvision.models (LeNet-5, which torchvision lacks, is defined here).
"""
import copy
import importlib

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
    """LeNet-5 (LeCun et al., 1998) on 1×32×32 images: convolutions C1 and C3,
    average-pooling subsampling S2 and S4, then three fully connected layers."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 6, 5), torch.nn.Tanh(), torch.nn.AvgPool2d(2),
            torch.nn.Conv2d(6, 16, 5), torch.nn.Tanh(), torch.nn.AvgPool2d(2))
        self.classifier = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(16 * 5 * 5, 120), torch.nn.Tanh(),
            torch.nn.Linear(120, 84), torch.nn.Tanh(), torch.nn.Linear(84, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


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
    """A copy of `model`, same weights, with pycnn's layers in place of torch's."""
    try:
        from .. import convert
    except ImportError:
        return _swap_layers(copy.deepcopy(model), _TO_PYCNN)
    return convert(model, inplace=False)


def input_shape(name, image_size=None):
    """(channels, height, width) of the model's input."""
    if name in ("lenet5", "lenet"):
        return (1, image_size or 32, image_size or 32)
    size = image_size or (299 if name == "inception_v3" else 224)
    return (3, size, size)


def num_classes(model):
    """Classes of a classifier: the width of its last linear or conv layer."""
    last = None
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            last = module.out_features
        elif isinstance(module, torch.nn.Conv2d):
            last = module.out_channels
    return last
