"""The classic CNNs on pycnn's layers.

Convolutions and pools are pycnn.nn's; everything else (Linear, BatchNorm2d,
ReLU, Dropout) is torch's.  Every model except LeNet-5 has torchvision's
state_dict keys and shapes, so torchvision's weights load into it with
load_state_dict(strict=True) and give the same outputs.

    model = pycnn.models.resnet18(num_classes=10)
    model = pycnn.models.get("vgg16_bn", num_classes=100)
    pycnn.models.names()        # every model of the registry
"""
import dataclasses
from typing import Callable, Optional, Tuple

from .alexnet import AlexNet, alexnet
from .lenet import ClassicLeNet5, LeNet5, lenet5
from .resnet import ResNet, resnet18, resnet34, resnet50, resnet101, resnet152
from .squeezenet import SqueezeNet, squeezenet1_0, squeezenet1_1
from .vgg import VGG, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn

__all__ = ["ModelSpec", "MODELS", "names", "get", "spec",
           "lenet5", "alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
           "vgg19", "vgg19_bn", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
           "squeezenet1_0", "squeezenet1_1",
           "LeNet5", "ClassicLeNet5", "AlexNet", "VGG", "ResNet", "SqueezeNet"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model of the zoo.

    input_size: the (C, H, W) it was designed for (summary's default).
    check_size: the smallest convenient (C, H, W) that still exercises every
      layer on a non-degenerate map -- what `verify` runs, to stay quick on a
      CPU; the adaptive pools before the classifiers make it valid.
    torchvision: the name of the same model in torchvision.models, or None.
    """
    name: str
    build: Callable
    input_size: Tuple[int, int, int]
    check_size: Tuple[int, int, int]
    torchvision: Optional[str]
    num_classes: int = 1000


def _lenet5_classic(num_classes=10):
    return lenet5(num_classes, variant="classic")


# check_size is the smallest input at which the deepest maps are still more
# than a point: VGG's fifth pool reaches 1x1 at 32x32 (its last convolutions
# see 2x2); ResNet's layer4 is 2x2 from 33x33 (17, 9, 5, 3, 2 on the way: odd
# sizes exercise the padding at every edge), so batch norm's statistics there
# are not over one value per image; AlexNet's last pool needs 63x63.
_SPECS = [
    ModelSpec("lenet5", lenet5, (1, 32, 32), (1, 32, 32), None, 10),
    ModelSpec("lenet5_classic", _lenet5_classic, (1, 32, 32), (1, 32, 32), None, 10),
    ModelSpec("alexnet", alexnet, (3, 224, 224), (3, 63, 63), "alexnet"),
    *[ModelSpec(name, builder, (3, 224, 224), (3, 32, 32), name)
      for name, builder in [("vgg11", vgg11), ("vgg11_bn", vgg11_bn), ("vgg13", vgg13),
                            ("vgg13_bn", vgg13_bn), ("vgg16", vgg16), ("vgg16_bn", vgg16_bn),
                            ("vgg19", vgg19), ("vgg19_bn", vgg19_bn)]],
    *[ModelSpec(name, builder, (3, 224, 224), (3, 33, 33), name)
      for name, builder in [("resnet18", resnet18), ("resnet34", resnet34), ("resnet50", resnet50),
                            ("resnet101", resnet101), ("resnet152", resnet152)]],
    ModelSpec("squeezenet1_0", squeezenet1_0, (3, 224, 224), (3, 64, 64), "squeezenet1_0"),
    ModelSpec("squeezenet1_1", squeezenet1_1, (3, 224, 224), (3, 64, 64), "squeezenet1_1"),
]
MODELS = {s.name: s for s in _SPECS}


def names():
    """Every model name of the registry, in a stable order (small to large families)."""
    return list(MODELS)


def spec(name) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"pycnn.models: unknown model {name!r}; choose from {', '.join(MODELS)}") from None


def get(name, **kwargs):
    """Builds the model `name` with pycnn's layers; kwargs go to its constructor
    (num_classes=..., dropout=..., ...)."""
    return spec(name).build(**kwargs)
