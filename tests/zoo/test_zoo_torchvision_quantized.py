"""torchvision's quantized classification models, statically quantized here (fused, observed on
one random batch, converted; no weights downloaded), against the GMACs and parameters
torchvision publishes in their quantized weights' metadata: every quantized op costed, all
MACs in uint8×int8. The published parameter count is the float model's; fusing folds each
BatchNorm (a weight and a bias per channel) into its convolution's bias (one per channel),
so the quantized model has one parameter fewer per BatchNorm channel. Its weights live in
packed-parameter objects (``flopmeter/trace/packed.py``)."""

import warnings

import pytest
import torch
import torch.ao.quantization as tq
from torch import nn
from torchvision.models import get_model, get_model_weights, list_models
from torchvision.models import quantization as tvq

import flopmeter
from flopmeter import Options

pytestmark = pytest.mark.zoo

# the two ResNeXt-101s (15–16 GMACs in int8 on a CPU) are left out to keep the suite short
NAMES = [n for n in list_models(tvq) if "resnext101" not in n]


# as published: googlenet without its auxiliary heads (its builder drops them with weights)
BUILD = {"quantized_googlenet": dict(init_weights=False, aux_logits=False),
         "quantized_inception_v3": dict(init_weights=False)}


def _quantized(name: str, crop: int):
    model = get_model(name, weights=None, quantize=False, **BUILD.get(name, {})).eval()
    folded = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    model.fuse_model()
    model.qconfig = tq.get_default_qconfig("fbgemm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = tq.prepare(model)
        prepared(torch.randn(1, 3, crop, crop))
        return tq.convert(prepared), folded


@pytest.mark.parametrize("name", NAMES)
def test_quantized_models_have_the_published_macs(name):
    weight = list(get_model_weights(name))[0]
    crop = weight.transforms().crop_size[0]
    model, folded = _quantized(name, crop)
    r = flopmeter.count(model, torch.randn(1, 3, crop, crop), options=Options(mode="real"))
    assert r.unsupported == {}
    assert round(r.macs / 1e9, 3) == weight.meta["_ops"]
    assert list(r.macs_by_precision()) == ["uint8×int8"]
    assert r.params.count == weight.meta["num_params"] - folded
