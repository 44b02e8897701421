"""Fake mode (default) and real mode give identical counts, op by op."""

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter import Options

import models
from compare import assert_same


def _both(model, *args, **kwargs):
    fake = flopmeter.count(model, *args, **kwargs)
    real = flopmeter.count(model, *args, **kwargs, options=Options(mode="real"))
    return fake, real


x8 = torch.randn(3, 8)
CATALOGUE = {
    "mlp": (models.mlp, (torch.randn(1, 10),), {}),
    "small_cnn": (models.small_cnn, (torch.randn(1, 1, 28, 28),), {}),
    "self_attention": (models.SelfAttention, (torch.randn(1, 10, 256),) * 3, {}),
    "keras_cnn": (models.KerasCNN, (torch.randn(1, 3, 32, 32),), {}),
    "unet_bn": (lambda: models.UNet(bn=True), (torch.randn(1, 1, 32, 32),), {}),
    "tied": (models.TiedWeights, (torch.randint(0, 50, (2, 5)),), {}),
    "called_twice": (models.CalledTwice, (x8,), {}),
    "shared": (models.SharedModule, (torch.randn(2, 4),), {}),
    "functional": (models.FunctionalOnly, (torch.randn(2, 6, 16), True), {}),
    "keyword": (models.KeywordInputs, (torch.randn(4, 6),), {"kwargs": {"scale": torch.randn(4, 3)}}),
    "dict": (models.DictInOut, ({"a": torch.randn(2, 5), "b": torch.randn(2, 3)},), {}),
    "no_params": (models.NoParameters, (x8,), {}),
    "train_bn": (lambda: models.TrainModeBN().train(), (torch.randn(2, 3, 10, 10),), {}),
    "mha": (lambda: nn.MultiheadAttention(32, 4, batch_first=True).eval(), (torch.randn(2, 5, 32),) * 3, {}),
    "encoder_layer": (lambda: nn.TransformerEncoderLayer(32, 4, 64, batch_first=True).eval(),
                      (torch.randn(2, 5, 32),), {}),
}


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_catalogue_fake_equals_real(name):
    factory, args, kwargs = CATALOGUE[name]
    assert_same(*_both(factory(), *args, **kwargs))


@pytest.mark.parametrize("name", ["resnet18", "vit_b_16"])
def test_torchvision_fake_equals_real(name):
    tv = pytest.importorskip("torchvision")
    model = tv.models.get_model(name).eval()
    fake, real = _both(model, torch.randn(1, 3, 224, 224))
    assert_same(fake, real)
    assert fake.macs > 1e9
