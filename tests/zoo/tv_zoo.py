"""Shared helpers for the torchvision zoo checks: weights metadata without downloading."""

from __future__ import annotations

import warnings

import pytest

import flopmeter
from flopmeter.frontends.base import build_on_meta

tv = pytest.importorskip("torchvision")

ROUNDING = 0.0005e9        # `_ops` is GMACs rounded to 3 decimals


def build(name: str, **kwargs):
    """A torchvision model without weights (meta device where its constructor allows)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # googlenet/inception init notices
        return build_on_meta(lambda: tv.models.get_model(name, weights=None, **kwargs)).eval()


def names(module) -> list[str]:
    return tv.models.list_models(module=module)


def weights(name: str) -> list:
    return list(tv.models.get_model_weights(name))


def crop(weight) -> int:
    size = weight.transforms.keywords["crop_size"]
    return size[0] if isinstance(size, (list, tuple)) else size


def count(model, *args, **kwargs) -> flopmeter.Report:
    report = flopmeter.count(model, *args, **kwargs, options=flopmeter.Options(strict=True))
    assert report.unsupported == {}
    return report


def assert_published(report: flopmeter.Report, weight, macs: int | None = None) -> None:
    """Parameters exactly as published; MACs within the rounding of `_ops`."""
    macs = report.macs if macs is None else macs
    assert report.params.count == weight.meta["num_params"], weight
    assert abs(macs - weight.meta["_ops"] * 1e9) <= ROUNDING, (weight, macs / 1e9, weight.meta["_ops"])
