"""Every torchvision classification model, at the crop size of each of its weights, against
the parameters and GMACs torchvision publishes in the weights' metadata."""

import pytest

import tv_zoo

pytestmark = pytest.mark.zoo

# How the published models differ from `get_model(name, weights=None)`, and why:
BUILD = {
    # googlenet's builder drops the two auxiliary heads after loading weights (aux_logits
    # defaults to False with weights, True without); inception_v3 keeps its AuxLogits head
    # in the published count, which its builder's default matches.
    "googlenet": dict(aux_logits=False, init_weights=False),
}


def _build(name: str, crop: int):
    kwargs = dict(BUILD.get(name, {}))
    if name.startswith("vit_"):
        kwargs["image_size"] = crop    # ViT's position embedding is sized for the crop (SWAG weights)
    return tv_zoo.build(name, **kwargs)


@pytest.mark.parametrize("name", tv_zoo.names(tv_zoo.tv.models))
def test_published_params_and_macs(name):
    reports = {}
    for weight in tv_zoo.weights(name):
        crop = tv_zoo.crop(weight)
        if crop not in reports:
            reports[crop] = tv_zoo.count(_build(name, crop), input_shape=(1, 3, crop, crop))
        tv_zoo.assert_published(reports[crop], weight)


def test_the_zoo_has_at_least_80_classification_models():
    assert len(tv_zoo.names(tv_zoo.tv.models)) >= 80       # 80 in torchvision 0.29
