"""VGG (Simonyan and Zisserman 2015), configurations A, B, D and E (VGG-11,
-13, -16, -19), plain or with batch normalisation after every convolution,
with torchvision's state_dict keys.

features: 3x3 convolutions (padding 1, with bias even when batch norm follows,
as torchvision keeps it) and 2x2 max pools; an adaptive average pool to 7x7
(so inputs from 32x32 up work); a 4096-4096 classifier with dropout.
VGG-16: 138,357,544 parameters for 1000 classes.
"""
import torch
from torch import nn

from .. import nn as pnn

__all__ = ["VGG", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]

POOL = "M"
# Output channels of each 3x3 convolution, POOL for a 2x2 max pool (the paper's Table 1).
CONFIGS = {
    11: [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    13: [64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    16: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL],
    19: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL,
         512, 512, 512, 512, POOL],
}


def make_features(config, batch_norm):
    layers, channels = [], 3
    for item in config:
        if item == POOL:
            layers.append(pnn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(pnn.Conv2d(channels, item, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(item))
        layers.append(nn.ReLU(inplace=True))
        channels = item
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = features
        self.avgpool = pnn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        self.reset_parameters()

    def reset_parameters(self):
        # He initialisation for the ReLU convolutions; small normal weights for the classifier.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _vgg(depth, batch_norm, num_classes, dropout):
    return VGG(make_features(CONFIGS[depth], batch_norm), num_classes, dropout)


def vgg11(num_classes=1000, dropout=0.5):
    return _vgg(11, False, num_classes, dropout)


def vgg11_bn(num_classes=1000, dropout=0.5):
    return _vgg(11, True, num_classes, dropout)


def vgg13(num_classes=1000, dropout=0.5):
    return _vgg(13, False, num_classes, dropout)


def vgg13_bn(num_classes=1000, dropout=0.5):
    return _vgg(13, True, num_classes, dropout)


def vgg16(num_classes=1000, dropout=0.5):
    return _vgg(16, False, num_classes, dropout)


def vgg16_bn(num_classes=1000, dropout=0.5):
    return _vgg(16, True, num_classes, dropout)


def vgg19(num_classes=1000, dropout=0.5):
    return _vgg(19, False, num_classes, dropout)


def vgg19_bn(num_classes=1000, dropout=0.5):
    return _vgg(19, True, num_classes, dropout)
