"""LeNet-5, as commonly taught and as in LeCun, Bottou, Bengio and Haffner,
"Gradient-based learning applied to document recognition", Proc. IEEE 1998.

Both take a 1x32x32 image and have the paper's layers under the paper's
names, so that `pycnn.summary(lenet5(), (1, 32, 32))` prints its table:

    C1      convolution 6@28x28, 5x5
    S2      subsampling 6@14x14, 2x2
    C3      convolution 16@10x10, 5x5
    S4      subsampling 16@5x5, 2x2
    C5      convolution 120@1x1, 5x5
    F6      fully connected, 84 units
    OUTPUT  one unit per class

lenet5() -- "as commonly taught" (PyTorch's own tutorial network, with C5 as
a 5x5 convolution): ReLU after C1, C3, C5 and F6 and 2x2 max pooling for
S2/S4, because that pair trains in a few epochs from the default
initialisation without the saturation of tanh and average pooling; every
convolution is fully connected and OUTPUT is a linear layer giving logits.
61,706 parameters.

lenet5(variant="classic") -- the 1998 network:
  * every unit up to F6 passes its weighted sum through the scaled tanh
    f(a) = 1.7159 tanh(2a/3) (the paper's section II-A and appendix A);
  * S2 and S4 are trainable subsampling: each map sums its 2x2 window,
    multiplies by a trainable coefficient and adds a trainable bias
    (2 parameters per map: S2 12, S4 32);
  * C3 connects each of its 16 maps to a subset of S2's 6 maps, the paper's
    Table I (C3_CONNECTIONS below): 1,516 parameters instead of 2,416;
  * OUTPUT is the paper's Euclidean RBF layer: y_i = sum_j (x_j - w_ij)^2 with
    fixed +-1 prototype vectors w_i, which have no trainable parameters.
    The paper drew them from 7x12 bitmaps of the characters, which are not
    published; here they are a fixed pseudo-random +-1 code (seed 0), which is
    equally far apart on average.  The module returns -y_i, so that larger is
    more likely, as with logits: argmax predicts, and cross_entropy on -y is
    the paper's MAP criterion (its equation 9) without the constant j.
  * weights start uniform in +-2.4 / fan-in, as in the paper.
Per-layer parameters: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164;
60,000 trainable parameters in all (the OUTPUT prototypes are a buffer).
"""
import torch
from torch import nn

from .. import nn as pnn

__all__ = ["lenet5", "LeNet5", "ClassicLeNet5", "C3_CONNECTIONS", "PartiallyConnectedConv2d",
           "TrainableSubsampling", "EuclideanRBF", "scaled_tanh"]

# Table I of the paper: C3 map k takes the S2 maps C3_CONNECTIONS[k].
C3_CONNECTIONS = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# f(a) = A tanh(S a): A = 1.7159 and S = 2/3 make f(1) = 1 and f(-1) = -1
# and the second derivative largest at +-1 (the paper's appendix A).
SQUASH_AMPLITUDE = 1.7159
SQUASH_SLOPE = 2.0 / 3.0


def scaled_tanh(a):
    return SQUASH_AMPLITUDE * torch.tanh(SQUASH_SLOPE * a)


class LeNet5(nn.Module):
    """LeNet-5 as commonly taught: ReLU and 2x2 max pooling; see the module docstring."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.C1 = pnn.Conv2d(in_channels, 6, 5)
        self.S2 = pnn.MaxPool2d(2)
        self.C3 = pnn.Conv2d(6, 16, 5)
        self.S4 = pnn.MaxPool2d(2)
        self.C5 = pnn.Conv2d(16, 120, 5)
        self.F6 = nn.Linear(120, 84)
        self.OUTPUT = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.S2(torch.relu(self.C1(x)))
        x = self.S4(torch.relu(self.C3(x)))
        x = torch.relu(self.C5(x)).flatten(1)
        return self.OUTPUT(torch.relu(self.F6(x)))


class PartiallyConnectedConv2d(nn.Module):
    """A convolution whose output map k sees only the input maps connections[k].

    Output maps with the same number of inputs form one grouped convolution
    over the gathered input maps (for LeNet-5's C3: 6 maps of 3 inputs, 9 of
    4, 1 of 6), so the parameters are exactly those of the connections made.
    """
    pycnn_layer = True

    def __init__(self, in_channels, connections, kernel_size, stride=1, padding=0):
        super().__init__()
        connections = [tuple(c) for c in connections]
        for k, inputs in enumerate(connections):
            if not inputs or len(set(inputs)) != len(inputs) or not all(0 <= c < in_channels for c in inputs):
                raise ValueError(f"PartiallyConnectedConv2d: connections[{k}]={inputs} must be distinct "
                                 f"input maps in [0, {in_channels})")
        self.in_channels, self.out_channels = in_channels, len(connections)
        self.connections = tuple(connections)
        self.convs = nn.ModuleList()
        fan_ins = sorted({len(c) for c in connections}, key=[len(c) for c in connections].index)
        order = []
        for group, fan_in in enumerate(fan_ins):
            maps = [k for k, c in enumerate(connections) if len(c) == fan_in]
            order += maps
            self.register_buffer(f"gather_{group}", torch.tensor([c for k in maps for c in connections[k]]),
                                 persistent=False)
            self.convs.append(pnn.Conv2d(fan_in * len(maps), len(maps), kernel_size, stride, padding,
                                         groups=len(maps)))
        # Groups concatenate in fan-in order; put the maps back in table order when that differs.
        inverse = [order.index(k) for k in range(len(connections))]
        self.register_buffer("output_order", torch.tensor(inverse) if inverse != sorted(inverse) else None,
                             persistent=False)
        first = self.convs[0]
        self.kernel_size, self.stride, self.padding = first.kernel_size, first.stride, first.padding

    def forward(self, x):
        outputs = [conv(x.index_select(1, getattr(self, f"gather_{g}"))) for g, conv in enumerate(self.convs)]
        y = torch.cat(outputs, 1)
        return y if self.output_order is None else y.index_select(1, self.output_order)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, " \
               f"connections={len(self.connections)} maps"


class TrainableSubsampling(nn.Module):
    """LeNet-5's S2/S4: per map, (sum of a 2x2 window) * coefficient + bias,
    through the scaled tanh.  The window sum is pycnn's avg_pool2d with
    divisor_override=1."""
    pycnn_layer = True

    def __init__(self, channels, kernel_size=2):
        super().__init__()
        self.channels = channels
        self.window_sum = pnn.AvgPool2d(kernel_size, divisor_override=1)
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        self.kernel_size, self.stride, self.padding = (self.window_sum.kernel_size, self.window_sum.stride,
                                                       self.window_sum.padding)
        self.reset_parameters()

    def reset_parameters(self):
        # The coefficient multiplies one sum of kernel_size**2 inputs: that is its fan-in.
        bound = 2.4 / (self.window_sum.kernel_size ** 2)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        s = self.window_sum(x)
        return scaled_tanh(s * self.weight.view(-1, 1, 1) + self.bias.view(-1, 1, 1))

    def multiply_adds(self, input, output):
        return output.numel()

    def extra_repr(self):
        return f"{self.channels}, kernel_size={self.kernel_size}"


def _random_signs(rows, columns, seed=0):
    """A fixed +-1 matrix, the same on every machine: drawn on the CPU, then
    placed on the default device in the default dtype."""
    generator = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (rows, columns), generator=generator, device="cpu")
    return (bits * 2 - 1).to(torch.empty(0).device, torch.get_default_dtype())


class EuclideanRBF(nn.Module):
    """The paper's OUTPUT layer: -sum_j (x_j - w_ij)^2 for fixed +-1 prototypes w_i."""

    def __init__(self, in_features, num_classes, seed=0):
        super().__init__()
        self.in_features, self.num_classes = in_features, num_classes
        self.register_buffer("prototypes", _random_signs(num_classes, in_features, seed))

    def forward(self, x):
        return -(x.unsqueeze(-2) - self.prototypes).square().sum(-1)

    def multiply_adds(self, input, output):
        return output.numel() * self.in_features

    def extra_repr(self):
        return f"in_features={self.in_features}, num_classes={self.num_classes}"


class ClassicLeNet5(nn.Module):
    """LeNet-5 of LeCun et al. 1998; see the module docstring."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.C1 = pnn.Conv2d(in_channels, 6, 5)
        self.S2 = TrainableSubsampling(6)
        self.C3 = PartiallyConnectedConv2d(6, C3_CONNECTIONS, 5)
        self.S4 = TrainableSubsampling(16)
        self.C5 = pnn.Conv2d(16, 120, 5)
        self.F6 = nn.Linear(120, 84)
        self.OUTPUT = EuclideanRBF(84, num_classes)
        self.reset_parameters()

    def reset_parameters(self):
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                bound = 2.4 / fan_in
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.uniform_(module.bias, -bound, bound)
            elif isinstance(module, TrainableSubsampling):
                module.reset_parameters()

    def forward(self, x):
        x = self.S2(scaled_tanh(self.C1(x)))
        x = self.S4(scaled_tanh(self.C3(x)))
        x = scaled_tanh(self.C5(x)).flatten(1)
        return self.OUTPUT(scaled_tanh(self.F6(x)))


def lenet5(num_classes=10, variant="modern", in_channels=1):
    """LeNet-5 for 32x32 inputs.  variant='modern' (default): as commonly
    taught, ReLU and max pooling; variant='classic': LeCun et al. 1998."""
    if variant == "modern":
        return LeNet5(num_classes, in_channels)
    if variant == "classic":
        return ClassicLeNet5(num_classes, in_channels)
    raise ValueError(f"lenet5: variant must be 'modern' or 'classic', got variant={variant!r}")

