"""A small model for CLI tests: `tests/data/tiny_model.py:build` (with inputs), `:bare` (without),
`:in_training` (a model left in training mode, which the CLI refuses) and `:two_batches` (own
inputs whose first dimensions disagree, so --batch cannot tell which one is the batch)."""

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
    return Tiny().eval(), torch.randn(1, 3, 16, 16)


def bare():
    return Tiny().eval()


def in_training():
    return Tiny(), torch.randn(1, 3, 16, 16)


class Pair(nn.Module):
    def forward(self, a, b):
        return a.sum() + b.sum()


def two_batches():
    return Pair().eval(), (torch.randn(2, 3), torch.randn(5, 3))


def not_a_model():
    return 42


class Sorts(nn.Module):
    def forward(self, x):
        return torch.kthvalue(x, 2).values


def unsupported():
    """aten.kthvalue has no cost formula: listed as unsupported, an error under --strict."""
    return Sorts().eval(), torch.randn(4, 4)
