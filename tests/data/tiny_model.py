"""A small model for CLI tests: `tests/data/tiny_model.py:build` (with inputs) and `:bare`."""

import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def build():
    return Tiny(), torch.randn(1, 3, 16, 16)


def bare():
    return Tiny()


def not_a_model():
    return 42
