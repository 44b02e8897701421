"""A model whose module name and class name are HTML/JS payloads (escaping tests)."""

import torch
from torch import nn

PAYLOAD = "<script>alert(1)</script>"
TYPE_PAYLOAD = '<img src=x onerror="alert(2)">'


def hostile_model() -> nn.Module:
    evil_type = type(TYPE_PAYLOAD, (nn.Linear,), {})
    model = nn.Sequential()
    model.add_module("layer1", nn.Sequential(nn.Linear(8, 8), nn.ReLU()))
    model.add_module(PAYLOAD, evil_type(8, 4))
    return model


def hostile_input() -> torch.Tensor:
    return torch.randn(2, 8)
