"""pycnn: convolution and pooling kernels of our own as PyTorch operators.

    import pycnn
    y = pycnn.functional.conv2d(x, w, padding=1)     # torch.nn.functional's signature
    layer = pycnn.nn.Conv2d(3, 64, 3, padding=1)     # torch.nn's constructor and state_dict
"""
from ._extension import backends, cpu_isa, cuda_compiled, set_cpu_isa
from . import ops, functional, nn

__version__ = "0.1.0"

__all__ = ["backends", "cpu_isa", "cuda_compiled", "set_cpu_isa", "ops", "functional", "nn",
           "__version__"]
