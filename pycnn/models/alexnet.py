"""AlexNet (Krizhevsky, Sutskever and Hinton 2012), in the one-GPU form of
Krizhevsky's "One weird trick" (2014): 64-192-384-256-256 filters, the form
torchvision ships, whose state_dict this model shares key for key.

An adaptive average pool to 6x6 before the classifier lets inputs smaller
than 224x224 through (down to 63x63).  61,100,840 parameters for 1000 classes.
"""
import torch
from torch import nn

from .. import nn as pnn

__all__ = ["AlexNet", "alexnet"]


class AlexNet(nn.Module):
    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            pnn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            pnn.MaxPool2d(kernel_size=3, stride=2),
            pnn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            pnn.MaxPool2d(kernel_size=3, stride=2),
            pnn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            pnn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            pnn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            pnn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = pnn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def alexnet(num_classes=1000, dropout=0.5):
    return AlexNet(num_classes, dropout)
