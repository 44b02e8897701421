"""torchvision detection models: what of the published numbers is comparable, and checks of it.

A detector's forward has a fixed-shape dense part (backbone, FPN, the RPN's or the
single-stage head's convolutions) and a data-dependent part: non-maximum suppression keeps
a number of boxes that depends on the weights and the image, and two-stage models run their
box head on every proposal kept (P ≤ 1000) and their mask/keypoint head on every detection
(D ≤ 100). On fake tensors the data-dependent ops cannot run (`aten.nonzero` has no known
output size), so the dense part is counted module by module, on the image size the model's
own transform produces for a square image, and the heads per RoI:

- parameters: exact for all 12 (the published models use FrozenBatchNorm2d in the backbone
  where their builders do, i.e. its scale and shift are buffers, not parameters);
- single-stage models (RetinaNet, FCOS, SSD, SSDlite): the published MACs are the dense part
  alone (box decoding, top-k and NMS do no MACs) — checked within `_ops` rounding;
- two-stage models (Faster/Mask/Keypoint R-CNN): published = dense + P·(box head per RoI)
  + D·(mask or keypoint head per RoI), for the P and D that torchvision's measurement saw.
  These are read off the published numbers (they are not predictable from the architecture:
  keypointrcnn's two weights publish 133.924 and 137.42 for one architecture) and the test
  checks that such whole numbers exist and are within the model's limits.
"""

import pytest
import torch
from torch import nn

import tv_zoo

pytestmark = pytest.mark.zoo

DETECTION = tv_zoo.names(tv_zoo.tv.models.detection)

# builders that switch the backbone to FrozenBatchNorm2d when weights are loaded
FROZEN_BN = {"fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn",
             "fcos_resnet50_fpn", "keypointrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "retinanet_resnet50_fpn"}

# (weights, proposals P through the box head, detections D through the mask/keypoint head)
TWO_STAGE = {
    "fasterrcnn_resnet50_fpn": [("COCO_V1", 1000, 0)],
    "fasterrcnn_resnet50_fpn_v2": [("COCO_V1", 1000, 0)],
    "maskrcnn_resnet50_fpn": [("COCO_V1", 1000, 0)],
    "maskrcnn_resnet50_fpn_v2": [("COCO_V1", 1000, 100)],
    "keypointrcnn_resnet50_fpn": [("COCO_LEGACY", 1000, 0), ("COCO_V1", 1000, 1)],
    "fasterrcnn_mobilenet_v3_large_fpn": [("COCO_V1", 0, 0)],
    "fasterrcnn_mobilenet_v3_large_320_fpn": [("COCO_V1", 0, 0)],
}


def _frozen_bn(module: nn.Module) -> None:
    from torchvision.ops.misc import FrozenBatchNorm2d

    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            with torch.device("meta"):
                setattr(module, name, FrozenBatchNorm2d(child.num_features, child.eps))
        else:
            _frozen_bn(child)


def _build(name: str):
    model = tv_zoo.build(name, weights_backbone=None)
    if name in FROZEN_BN:
        _frozen_bn(model.backbone.body)
    return model


def _meta(*shape):
    return torch.empty(shape, device="meta")


def dense_macs(model) -> int:
    """Backbone + FPN on the transformed square image, then the RPN or detection head."""
    t = model.transform
    size = t.fixed_size or (t.min_size[-1], t.min_size[-1])      # eval resizes to the last min_size
    backbone = tv_zoo.count(model.backbone, input_shape=(1, 3, *size))
    head = model.rpn.head if hasattr(model, "rpn") else model.head
    features = [_meta(*f.shape) for f in backbone.root.outputs]
    return backbone.macs + tv_zoo.count(head, features).macs


def per_roi_macs(head: nn.Module, predictor: nn.Module, channels: int, size: int) -> int:
    """MACs of a RoI head and its predictor for one RoI of channels × size × size."""
    first = tv_zoo.count(head, _meta(1, channels, size, size))
    return first.macs + tv_zoo.count(predictor, _meta(*first.root.outputs[0].shape)).macs


@pytest.mark.parametrize("name", DETECTION)
def test_params_exact(name):
    model = _build(name)
    for weight in tv_zoo.weights(name):
        assert sum(p.numel() for p in model.parameters()) == weight.meta["num_params"]


@pytest.mark.parametrize("name", [n for n in DETECTION if n not in TWO_STAGE])
def test_single_stage_macs_are_the_dense_part(name):
    model = _build(name)
    for weight in tv_zoo.weights(name):
        assert abs(dense_macs(model) - weight.meta["_ops"] * 1e9) <= tv_zoo.ROUNDING


@pytest.mark.parametrize("name", sorted(TWO_STAGE))
def test_two_stage_macs_are_dense_plus_whole_rois(name):
    model = _build(name)
    heads = model.roi_heads
    channels = model.backbone.out_channels
    box = per_roi_macs(heads.box_head, heads.box_predictor, channels, heads.box_roi_pool.output_size[0])
    second = next(((getattr(heads, f"{k}_head"), getattr(heads, f"{k}_predictor"), getattr(heads, f"{k}_roi_pool"))
                   for k in ("mask", "keypoint") if getattr(heads, f"{k}_head", None) is not None), None)
    per_detection = per_roi_macs(second[0], second[1], channels, second[2].output_size[0]) if second else 0
    dense = dense_macs(model)
    published = {w.name: w.meta["_ops"] * 1e9 for w in tv_zoo.weights(name)}
    assert {w for w, _, _ in TWO_STAGE[name]} == set(published)
    for weight, proposals, detections in TWO_STAGE[name]:
        assert proposals <= model.rpn.post_nms_top_n() and detections <= heads.detections_per_img
        assert detections == 0 or second is not None
        total = dense + proposals * box + detections * per_detection
        assert abs(total - published[weight]) <= tv_zoo.ROUNDING, (weight, total / 1e9)
