"""Every torchvision classification model exported to ONNX (PyTorch's default dynamo exporter,
``optimize=False``, in a temporary directory) counted from the file: parameters and MACs
exactly the PyTorch count's. Models that do not export are listed in ``NO_EXPORT`` with why."""

import gc
import warnings

import pytest
import torch

import flopmeter
import tv_zoo

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
from onnx_models import export  # noqa: E402

pytestmark = pytest.mark.zoo

# name → why torch.onnx.export(dynamo=True) fails on it (measured with torch 2.14, onnxscript 0.7:
# none of the 76 models tried failed; vit_h_14, vit_l_16, vit_l_32 and regnet_y_128gf were not tried)
NO_EXPORT: dict[str, str] = {}

# parameters an eval-mode forward never reads are not in the exported graph: the file has
# only what runs (inception_v3's auxiliary classifier runs in training mode only)
UNUSED_IN_EVAL = {"inception_v3": "AuxLogits"}


def float_buffers(model) -> int:
    """Elements of floating-point buffers other than BatchNorm statistics (swin_v2's
    relative_coords_table): ONNX has no buffers, so they are initializers like the weights."""
    return sum(b.numel() for m in model.modules() if not isinstance(m, torch.nn.modules.batchnorm._NormBase)
               for b in m.buffers(recurse=False) if b.is_floating_point())


def _input(name: str) -> int:
    return tv_zoo.crop(tv_zoo.weights(name)[0]) if name.startswith("vit_") else 224


@pytest.mark.parametrize("name", tv_zoo.names(tv_zoo.tv.models))
def test_onnx_export_counts_like_pytorch(name, tmp_path):
    if name in NO_EXPORT:
        pytest.xfail(NO_EXPORT[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        size = _input(name)
        kwargs = {"image_size": size} if name.startswith("vit_") else {}
        if name == "googlenet":
            kwargs = dict(aux_logits=False, init_weights=False)
        model = tv_zoo.tv.models.get_model(name, weights=None, **kwargs).eval()
    x = torch.randn(1, 3, size, size)
    expected = flopmeter.count(model, x)
    unused = sum(p.numel() for p in model.get_submodule(UNUSED_IN_EVAL[name]).parameters()) \
        if name in UNUSED_IN_EVAL else 0
    unused -= float_buffers(model)
    path = export(model, (x,), tmp_path / f"{name}.onnx")
    del model
    gc.collect()
    report = flopmeter.count_onnx(path)
    assert report.unsupported == {}
    assert (report.params.count, report.macs) == (expected.params.count - unused, expected.macs)
