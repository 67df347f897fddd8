"""Whole models for the benchmark: each built once with torch's layers, and
copied with pycnn's layers and the same weights.

Models come from pycnn.models when it has them (LeNet-5, AlexNet, VGG,
ResNet, SqueezeNet), otherwise from torchvision.models; pycnn.convert moves
a model onto pycnn's kernels and pycnn.convert.to_torch back, the paths
users take.
"""
import warnings

from .. import convert as convert_module
from .. import models as zoo


def torch_layers_model(name, num_classes=None):
    """The model `name` with torch's own conv and pooling layers."""
    options = {} if num_classes is None else {"num_classes": num_classes}
    if name in zoo.MODELS:
        model = zoo.get(name, **options)
    else:
        import torchvision
        try:
            model = torchvision.models.get_model(name, weights=None, **options)
        except ValueError as error:
            raise ValueError(f"pycnn bench: unknown model {name!r}: not in pycnn.models "
                             f"({', '.join(zoo.names())}) and torchvision says: {error}") from None
    return convert_module.to_torch(model)


def pycnn_layers_model(model):
    """A copy of `model`, same weights, with pycnn's layers in place of torch's."""
    with warnings.catch_warnings():
        # A layer convert declines stays torch's; the benchmark counts and reports those.
        warnings.simplefilter("ignore", convert_module.ConversionWarning)
        return convert_module.convert(model, inplace=False)


def torch_layers_left(model):
    """How many conv and pooling layers of `model` still compute with torch."""
    return sum(type(module) in convert_module.PYCNN_LAYERS for module in model.modules())


def input_shape(name, image_size=None):
    """(channels, height, width) of the model's input: the size it was designed
    for, or `image_size` square."""
    if name in zoo.MODELS:
        channels, height, width = zoo.spec(name).input_size
    else:
        size = 299 if name == "inception_v3" else 224
        channels, height, width = 3, size, size
    if image_size:
        height = width = image_size
    return (channels, height, width)

