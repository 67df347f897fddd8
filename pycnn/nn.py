"""Drop-in layers: torch.nn's convolution and pooling modules on pycnn's kernels.

Each class subclasses its torch.nn counterpart and changes only where the
arithmetic happens, so constructor arguments, defaults, state_dict keys,
repr and isinstance checks (weight initialisation by type, for example) are
torch's own.
"""
import torch

from . import functional as F

__all__ = ["Conv2d", "Conv2dReLU", "FusedReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "AdaptiveMaxPool2d"]


class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d computed by pycnn.functional.conv2d (all padding modes)."""

    _conv = staticmethod(F.conv2d)

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            input = torch.nn.functional.pad(input, self._reversed_padding_repeated_twice,
                                            mode=self.padding_mode)
            return self._conv(input, weight, bias, self.stride, 0, self.dilation, self.groups)
        return self._conv(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class Conv2dReLU(Conv2d):
    """Conv2d followed by ReLU in one kernel (pycnn.functional.conv2d_relu):
    Conv2d's constructor, parameters and state_dict keys.  pycnn.convert(model,
    fuse_relu=True) makes these from a Conv2d and the nn.ReLU after it."""

    _conv = staticmethod(F.conv2d_relu)


class FusedReLU(torch.nn.ReLU):
    """Where an nn.ReLU stood whose work a Conv2dReLU before it now does: the
    identity.  It keeps the ReLU's options, so that pycnn.to_torch can put
    the ReLU back."""

    def forward(self, input):
        return input


class MaxPool2d(torch.nn.MaxPool2d):
    """torch.nn.MaxPool2d computed by pycnn.functional.max_pool2d."""

    def forward(self, input):
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool2d(torch.nn.AvgPool2d):
    """torch.nn.AvgPool2d computed by pycnn.functional.avg_pool2d."""

    def forward(self, input):
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool2d(torch.nn.AdaptiveAvgPool2d):
    """torch.nn.AdaptiveAvgPool2d computed by pycnn.functional.adaptive_avg_pool2d."""

    def forward(self, input):
        return F.adaptive_avg_pool2d(input, self.output_size)


class AdaptiveMaxPool2d(torch.nn.AdaptiveMaxPool2d):
    """torch.nn.AdaptiveMaxPool2d computed by pycnn.functional.adaptive_max_pool2d."""

    def forward(self, input):
        return F.adaptive_max_pool2d(input, self.output_size, self.return_indices)
