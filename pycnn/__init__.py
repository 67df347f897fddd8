"""pycnn: convolution and pooling kernels of our own as PyTorch operators.

    import pycnn
    y = pycnn.functional.conv2d(x, w, padding=1)     # torch.nn.functional's signature
    layer = pycnn.nn.Conv2d(3, 64, 3, padding=1)     # torch.nn's constructor and state_dict
    model = pycnn.models.resnet18()                  # torchvision's architectures and keys
    model = pycnn.convert(torchvision_model)         # any model onto pycnn's kernels
    print(pycnn.summary(model, (3, 224, 224)))       # layer-by-layer shapes, parameters, MACs
    report = pycnn.verify("resnet18")                # compare with torchvision, layer by layer
"""
import importlib

from ._extension import (backends, cpu_isa, cuda_compiled, output_cache_info, release_output_cache,
                         set_cpu_isa, set_tf32, tf32, tf32_enabled, tf32_mode)
from . import ops, functional, nn

__version__ = "0.1.0"

# Loaded on first use, so that `import pycnn` stays light (no torchvision, no models).
_LAZY = ("models", "convert", "summary", "verify")

__all__ = ["backends", "cpu_isa", "cuda_compiled", "output_cache_info", "release_output_cache",
           "set_cpu_isa", "set_tf32", "tf32", "tf32_enabled", "tf32_mode", "ops", "functional", "nn",
           *_LAZY, "__version__"]


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pycnn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
