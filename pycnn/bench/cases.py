"""What the benchmark measures: one case per layer shape or training step.

A case knows its shape, how much work one pass does (floating-point
operations for a convolution, bytes moved for a pooling), and how to build
the pycnn and torch calls on shared tensors.  The default set holds the
classic networks' layers; `quick_cases` tiny stand-ins for smoke tests;
`model_cases` every convolution and pooling shape of a model.
"""
import dataclasses

import torch
import torch.nn.functional as TF

from .. import functional as F
from .._shape import conv_output_size, pool_output_size

CONV_PASSES = ("forward", "backward", "both")
# Passes of a convolution each pass makes: backward computes grad_input and
# grad_weight, each as much arithmetic as the forward pass.
CONV_PASS_COUNT = {"forward": 1, "backward": 2, "both": 3}
POOL_OPS = ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d")
INDEX_BYTES = 8  # pooling indices are int64


def _dims(*values):
    return "×".join(str(v) for v in values)


def _pair_text(prefix, value, default):
    if tuple(value) == default:
        return ""
    return f" {prefix}{value[0]}" if value[0] == value[1] else f" {prefix}{value[0]},{value[1]}"


@dataclasses.dataclass(frozen=True)
class ConvCase:
    """A conv2d layer: input (batch, in_channels, height, width), weight
    (out_channels, in_channels/groups, *kernel)."""
    name: str
    model: str
    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    bias: bool = True
    large: bool = False  # one of the large layers held to a share of the peak
    count: int = 1       # layers of the model with this shape
    relu: bool = False   # pycnn's conv2d_relu against torch's conv2d then an in-place ReLU

    group = "conv"
    passes = CONV_PASSES

    @property
    def op(self):
        return "conv2d_relu" if self.relu else "conv2d"

    @property
    def output_size(self):
        return tuple(conv_output_size((self.height, self.width)[i], self.kernel[i], self.stride[i],
                                      self.padding[i], self.dilation[i]) for i in range(2))

    def flops(self, pass_):
        """2·N·K·Ho·Wo·(C/groups)·R·S per convolution, times the passes."""
        out_h, out_w = self.output_size
        one = (2 * self.batch * self.out_channels * out_h * out_w
               * (self.in_channels // self.groups) * self.kernel[0] * self.kernel[1])
        return one * CONV_PASS_COUNT[pass_]

    def work(self, pass_, dtype, inference=False):
        return self.flops(pass_)

    def shape_text(self):
        return (f"{_dims(self.batch, self.in_channels, self.height, self.width)} → "
                f"{self.out_channels} {_dims(*self.kernel)}"
                + _pair_text("s", self.stride, (1, 1)) + _pair_text("p", self.padding, (0, 0))
                + _pair_text("d", self.dilation, (1, 1))
                + (f" g{self.groups}" if self.groups != 1 else ""))

    def make(self, device, dtype, channels_last):
        """(leaf tensors, pycnn function, torch function) on shared inputs."""
        def randn(*shape):
            t = torch.randn(*shape, device=device, dtype=dtype)
            if channels_last and t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            return t.requires_grad_()

        leaves = [randn(self.batch, self.in_channels, self.height, self.width),
                  randn(self.out_channels, self.in_channels // self.groups, *self.kernel)]
        if self.bias:
            leaves.append(randn(self.out_channels))
        options = dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                       groups=self.groups)

        if self.relu:
            def ours(x, w, b=None):
                return F.conv2d_relu(x, w, b, **options)

            def theirs(x, w, b=None):  # as nn.Conv2d, nn.ReLU(inplace=True)
                return TF.relu(TF.conv2d(x, w, b, **options), inplace=True)
        else:
            def ours(x, w, b=None):
                return F.conv2d(x, w, b, **options)

            def theirs(x, w, b=None):
                return TF.conv2d(x, w, b, **options)
        return leaves, ours, theirs

    def to_dict(self):
        return dict(dataclasses.asdict(self), op=self.op, shape=self.shape_text(),
                    output_size=list(self.output_size))


def with_relu(case):
    """The conv2d_relu twin of a ConvCase: the same layer with its ReLU fused."""
    return dataclasses.replace(case, name=f"{case.name} + ReLU", relu=True)


@dataclasses.dataclass(frozen=True)
class PoolCase:
    """A pooling layer on an input (batch, channels, height, width)."""
    name: str
    model: str
    op: str
    batch: int
    channels: int
    height: int
    width: int
    kernel: tuple = None
    stride: tuple = None
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int = None
    output: tuple = None  # adaptive pools' output_size
    count: int = 1

    group = "pool"
    passes = ("forward", "backward", "both")

    def __post_init__(self):
        if self.op not in POOL_OPS:
            raise ValueError(f"PoolCase: op must be one of {POOL_OPS}, got op={self.op!r}")

    @property
    def adaptive(self):
        return self.op.startswith("adaptive")

    @property
    def with_indices(self):
        return self.op in ("max_pool2d", "adaptive_max_pool2d")

    @property
    def output_size(self):
        if self.adaptive:
            return tuple(self.output)
        stride = self.stride or self.kernel
        return tuple(pool_output_size((self.height, self.width)[i], self.kernel[i], stride[i],
                                      self.padding[i], self.dilation[i], self.ceil_mode)
                     for i in range(2))

    def input_elements(self):
        return self.batch * self.channels * self.height * self.width

    def output_elements(self):
        return self.batch * self.channels * self.output_size[0] * self.output_size[1]

    def bytes_moved(self, pass_, itemsize, inference=False):
        """Bytes read + written: input, output and the indices a max pool
        writes forward; grad_output, the indices and grad_input backward.
        Under no_grad max_pool2d writes no indices (in torch and pycnn
        alike); adaptive_max_pool2d always does."""
        forward = (self.input_elements() + self.output_elements()) * itemsize
        backward = (self.output_elements() + self.input_elements()) * itemsize
        if self.with_indices:
            if not (inference and self.op == "max_pool2d"):
                forward += self.output_elements() * INDEX_BYTES
            backward += self.output_elements() * INDEX_BYTES
        return {"forward": forward, "backward": backward, "both": forward + backward}[pass_]

    def work(self, pass_, dtype, inference=False):
        return self.bytes_moved(pass_, torch.empty((), dtype=dtype).element_size(), inference)

    def shape_text(self):
        dims = _dims(self.batch, self.channels, self.height, self.width)
        if self.adaptive:
            return f"{dims} → {_dims(*self.output)}"
        stride = self.stride or self.kernel
        return (f"{dims} {_dims(*self.kernel)}" + _pair_text("s", stride, tuple(self.kernel))
                + _pair_text("p", self.padding, (0, 0)) + _pair_text("d", self.dilation, (1, 1))
                + (" ceil" if self.ceil_mode else "")
                + (f" ÷{self.divisor_override}" if self.divisor_override else ""))

    def _functions(self):
        op = self.op
        if op == "max_pool2d":
            options = dict(kernel_size=self.kernel, stride=self.stride or self.kernel,
                           padding=self.padding, dilation=self.dilation, ceil_mode=self.ceil_mode)
            return (lambda x: F.max_pool2d(x, **options)), (lambda x: TF.max_pool2d(x, **options))
        if op == "avg_pool2d":
            options = dict(kernel_size=self.kernel, stride=self.stride or self.kernel,
                           padding=self.padding, ceil_mode=self.ceil_mode,
                           count_include_pad=self.count_include_pad,
                           divisor_override=self.divisor_override)
            return (lambda x: F.avg_pool2d(x, **options)), (lambda x: TF.avg_pool2d(x, **options))
        size = tuple(self.output)
        ours, theirs = getattr(F, op), getattr(TF, op)
        return (lambda x: ours(x, size)), (lambda x: theirs(x, size))

    def make(self, device, dtype, channels_last):
        x = torch.randn(self.batch, self.channels, self.height, self.width, device=device, dtype=dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ours, theirs = self._functions()
        return [x.requires_grad_()], ours, theirs

    def to_dict(self):
        return dict(dataclasses.asdict(self), shape=self.shape_text(), group=self.group,
                    output_size=list(self.output_size))


@dataclasses.dataclass(frozen=True)
class TrainCase:
    """One optimisation step (forward, loss, backward, SGD step) of a whole
    model on a fixed batch: the model with torch's layers against the same
    model, same weights, with pycnn's."""
    name: str
    model: str
    batch: int
    image: tuple  # (channels, height, width)
    classes: int
    amp: str = None            # autocast dtype on CUDA ("float16"), None for none
    channels_last: bool = False

    group = "train"
    passes = ("step",)

    def work(self, pass_, dtype, inference=False):
        return self.batch  # images per step

    def shape_text(self):
        text = f"batch {self.batch} × {_dims(*self.image)}"
        if self.amp:
            text += f", AMP {self.amp}"
        if self.channels_last:
            text += ", channels_last"
        return text

    def to_dict(self):
        return dict(dataclasses.asdict(self), shape=self.shape_text(), group=self.group)


def _conv(name, model, n, c, h, w, k, r, stride=1, padding=0, bias=True, large=False):
    return ConvCase(name, model, n, c, h, w, k, (r, r), (stride, stride), (padding, padding),
                    bias=bias, large=large)


def _pool(name, model, op, n, c, h, w, kernel=None, stride=None, padding=0, output=None):
    pair = (lambda v: None if v is None else (v, v))
    return PoolCase(name, model, op, n, c, h, w, kernel=pair(kernel), stride=pair(stride),
                    padding=(padding, padding), output=pair(output))


def _default_layers(gpu):
    """The layers of LeNet-5, AlexNet, VGG-16 and ResNet-18/34/50.  The CPU
    batches are the issue's; on a GPU the batches grow so that each kernel
    fills the card."""
    def b(cpu, cuda):
        return cuda if gpu else cpu
    lenet, alex, vgg, resnet = b(64, 1024), b(8, 128), b(8, 64), b(8, 64)
    convs = [
        _conv("LeNet-5 C1", "LeNet-5", lenet, 1, 32, 32, 6, 5),
        _conv("LeNet-5 C3", "LeNet-5", lenet, 6, 14, 14, 16, 5),
        _conv("AlexNet conv1", "AlexNet", alex, 3, 224, 224, 64, 11, stride=4, padding=2),
        _conv("AlexNet conv2", "AlexNet", alex, 64, 27, 27, 192, 5, padding=2, large=True),
        _conv("VGG-16 conv1_2", "VGG-16", b(2, 32), 64, 224, 224, 64, 3, padding=1),
        _conv("VGG-16 conv3_2", "VGG-16", vgg, 256, 56, 56, 256, 3, padding=1, large=True),
        _conv("VGG-16 conv5", "VGG-16", vgg, 512, 14, 14, 512, 3, padding=1, large=True),
        _conv("ResNet stem", "ResNet", resnet, 3, 224, 224, 64, 7, stride=2, padding=3, bias=False),
        _conv("ResNet layer1", "ResNet", resnet, 64, 56, 56, 64, 3, padding=1, bias=False, large=True),
        _conv("ResNet layer3", "ResNet", resnet, 256, 14, 14, 256, 3, padding=1, bias=False,
              large=True),
        _conv("ResNet-50 1×1 bottleneck", "ResNet-50", resnet, 256, 56, 56, 64, 1, bias=False),
    ]
    pools = [
        _pool("LeNet-5 S2", "LeNet-5", "max_pool2d", lenet, 6, 28, 28, 2),
        _pool("LeNet-5 S4", "LeNet-5", "max_pool2d", lenet, 16, 10, 10, 2),
        # The 1998 network subsamples by averaging (pycnn.models' classic variant).
        _pool("LeNet-5 classic S2", "LeNet-5", "avg_pool2d", lenet, 6, 28, 28, 2),
        _pool("LeNet-5 classic S4", "LeNet-5", "avg_pool2d", lenet, 16, 10, 10, 2),
        _pool("AlexNet pool1", "AlexNet", "max_pool2d", alex, 64, 55, 55, 3, 2),
        _pool("AlexNet pool2", "AlexNet", "max_pool2d", alex, 192, 27, 27, 3, 2),
        _pool("AlexNet pool5", "AlexNet", "max_pool2d", alex, 256, 13, 13, 3, 2),
        _pool("AlexNet avgpool", "AlexNet", "adaptive_avg_pool2d", alex, 256, 6, 6, output=6),
        _pool("VGG-16 pool1", "VGG-16", "max_pool2d", vgg, 64, 224, 224, 2),
        _pool("VGG-16 pool2", "VGG-16", "max_pool2d", vgg, 128, 112, 112, 2),
        _pool("VGG-16 pool3", "VGG-16", "max_pool2d", vgg, 256, 56, 56, 2),
        _pool("VGG-16 pool5", "VGG-16", "max_pool2d", vgg, 512, 14, 14, 2),
        _pool("VGG-16 avgpool", "VGG-16", "adaptive_avg_pool2d", vgg, 512, 7, 7, output=7),
        _pool("ResNet stem pool", "ResNet", "max_pool2d", resnet, 64, 112, 112, 3, 2, padding=1),
        _pool("ResNet-18 avgpool", "ResNet-18", "adaptive_avg_pool2d", resnet, 512, 7, 7, output=1),
        _pool("ResNet-50 avgpool", "ResNet-50", "adaptive_avg_pool2d", resnet, 2048, 7, 7, output=1),
        # None of these models uses adaptive max pooling; its global form on
        # ResNet-50's last features covers the op.
        _pool("global max pool", "ResNet-50", "adaptive_max_pool2d", resnet, 2048, 7, 7, output=1),
    ]
    return convs, pools


def _default_training(gpu):
    if not gpu:
        return [TrainCase("LeNet-5 train step", "lenet5", 256, (1, 32, 32), 10),
                TrainCase("ResNet-18 train step", "resnet18", 8, (3, 224, 224), 1000)]
    return [TrainCase("LeNet-5 train step", "lenet5", 1024, (1, 32, 32), 10),
            TrainCase("ResNet-18 train step", "resnet18", 64, (3, 224, 224), 1000),
            TrainCase("ResNet-50 AMP train step", "resnet50", 64, (3, 224, 224), 1000,
                      amp="float16", channels_last=True),
            TrainCase("VGG-16 train step", "vgg16", 32, (3, 224, 224), 1000)]


def default_cases(device="cpu"):
    gpu = torch.device(device).type == "cuda"
    convs, pools = _default_layers(gpu)
    return convs + pools + _default_training(gpu)


def quick_cases():
    """Tiny shapes of every op and a small training step, for smoke tests."""
    return [
        _conv("tiny conv 3×3", "quick", 2, 4, 12, 12, 8, 3, padding=1),
        _conv("tiny conv 5×5 s2", "quick", 2, 3, 16, 16, 4, 5, stride=2, padding=2, bias=False),
        _conv("tiny conv 1×1", "quick", 2, 8, 8, 8, 4, 1),
        _pool("tiny max pool", "quick", "max_pool2d", 2, 4, 12, 12, 3, 2, padding=1),
        _pool("tiny avg pool", "quick", "avg_pool2d", 2, 4, 12, 12, 2),
        _pool("tiny adaptive avg", "quick", "adaptive_avg_pool2d", 2, 8, 4, 4, output=1),
        _pool("tiny adaptive max", "quick", "adaptive_max_pool2d", 2, 8, 4, 4, output=1),
        TrainCase("LeNet-5 train step", "lenet5", 4, (1, 32, 32), 10),
    ]


def _same_padding(module):
    return tuple(module.dilation[i] * (module.kernel_size[i] - 1) // 2 for i in range(2))


def _as_pair(value):
    if value is None:
        return None
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _layer_case(model_name, module_name, module, input_shape):
    """The case of one conv or pooling module seen with `input_shape`, or None."""
    n, c, h, w = input_shape
    name = f"{model_name} {module_name}"
    if isinstance(module, torch.nn.Conv2d):
        if isinstance(module.padding, str):
            padding = (0, 0) if module.padding == "valid" else _same_padding(module)
        else:
            padding = tuple(module.padding)
        return ConvCase(name, model_name, n, c, h, w, module.out_channels, tuple(module.kernel_size),
                        tuple(module.stride), padding, tuple(module.dilation), module.groups,
                        bias=module.bias is not None)
    if isinstance(module, torch.nn.MaxPool2d):
        kernel = _as_pair(module.kernel_size)
        return PoolCase(name, model_name, "max_pool2d", n, c, h, w, kernel=kernel,
                        stride=_as_pair(module.stride) or kernel, padding=_as_pair(module.padding),
                        dilation=_as_pair(module.dilation), ceil_mode=module.ceil_mode)
    if isinstance(module, torch.nn.AvgPool2d):
        kernel = _as_pair(module.kernel_size)
        return PoolCase(name, model_name, "avg_pool2d", n, c, h, w, kernel=kernel,
                        stride=_as_pair(module.stride) or kernel, padding=_as_pair(module.padding),
                        ceil_mode=module.ceil_mode, count_include_pad=module.count_include_pad,
                        divisor_override=module.divisor_override)
    if isinstance(module, (torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveMaxPool2d)):
        size = _as_pair(module.output_size)
        size = tuple(dim if s is None else s for s, dim in zip(size, (h, w)))
        op = "adaptive_avg_pool2d" if isinstance(module, torch.nn.AdaptiveAvgPool2d) else "adaptive_max_pool2d"
        return PoolCase(name, model_name, op, n, c, h, w, output=size)
    return None


def _shape_key(case):
    """Everything but the name: two layers with equal keys run the same kernel."""
    fields = dataclasses.asdict(case)
    fields.pop("name")
    fields.pop("count")
    return type(case).__name__, tuple(sorted(fields.items()))


def model_cases(name, batch=8, image_size=None, train=True):
    """Every distinct conv2d and pooling shape of a model (conv and pooling
    modules seen by forward hooks during one forward pass), named after the
    first layer with that shape and counting the layers that share it; then
    the model's training step."""
    from . import models
    model = models.torch_layers_model(name)
    image = models.input_shape(name, image_size)
    seen = {}
    order = []

    def hook(module_name):
        def record(module, inputs, output):
            case = _layer_case(name, module_name, module, tuple(inputs[0].shape))
            if case is None:
                return
            key = _shape_key(case)
            if key in seen:
                seen[key] = dataclasses.replace(seen[key], count=seen[key].count + 1)
            else:
                seen[key] = case
                order.append(key)
        return record

    handles = [module.register_forward_hook(hook(module_name))
               for module_name, module in model.named_modules()
               if isinstance(module, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d,
                                      torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveMaxPool2d))]
    try:
        model.eval()
        with torch.no_grad():
            classes = model(torch.randn(batch, *image)).shape[1]
    finally:
        for handle in handles:
            handle.remove()
    cases = [seen[key] for key in order]
    convs = [c for c in cases if isinstance(c, ConvCase)]
    pools = [c for c in cases if isinstance(c, PoolCase)]
    steps = [TrainCase(f"{name} train step", name, batch, image, classes)] if train else []
    return convs + pools + steps
