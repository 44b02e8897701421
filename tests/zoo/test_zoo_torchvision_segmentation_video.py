"""torchvision segmentation and video models against their weights' published parameters
and GMACs."""

import pytest

import tv_zoo

pytestmark = pytest.mark.zoo

SEGMENTATION = tv_zoo.names(tv_zoo.tv.models.segmentation)
VIDEO = tv_zoo.names(tv_zoo.tv.models.video)


@pytest.mark.parametrize("name", SEGMENTATION)
def test_segmentation(name):
    # The published FCN and DeepLabV3 weights carry the auxiliary head (their builders set
    # aux_loss=True with weights), and it runs in eval too; LR-ASPP has none. Measured on a
    # 520×520 image (the weights' resize size); no ImageNet backbone weights are fetched.
    kwargs = dict(weights_backbone=None)
    if not name.startswith("lraspp"):
        kwargs["aux_loss"] = True
    model = tv_zoo.build(name, **kwargs)
    assert (getattr(model, "aux_classifier", None) is not None) == ("aux_loss" in kwargs)
    report = tv_zoo.count(model, input_shape=(1, 3, 520, 520))
    for weight in tv_zoo.weights(name):
        tv_zoo.assert_published(report, weight)


@pytest.mark.parametrize("name", VIDEO)
def test_video(name):
    # clips of 16 frames at the weights' crop size, as torchvision measured them
    # (the Kinetics-400 recipe's clip length; mvit's min_temporal_size)
    frames = 16
    reports = {}
    for weight in tv_zoo.weights(name):
        crop = tv_zoo.crop(weight)
        if crop not in reports:
            reports[crop] = tv_zoo.count(tv_zoo.build(name), input_shape=(1, 3, frames, crop, crop))
        tv_zoo.assert_published(reports[crop], weight)
