"""A sample of timm architectures, one or two per family: every op costed (none unsupported),
and fake mode equal to real mode op by op, at the input size of each model's pretrained config."""

import warnings

import pytest
import torch

import flopmeter
from compare import assert_same, assert_same_compute

pytestmark = pytest.mark.zoo
timm = pytest.importorskip("timm")

SAMPLE = [
    # convolutional
    "resnet50", "resnetv2_50", "resnest14d", "res2net50_14w_8s", "dpn48b", "cspresnet50", "dla34", "vgg11",
    "regnetx_002", "regnety_002", "efficientnet_b0", "tf_efficientnetv2_b0", "mobilenetv3_small_100",
    "mobilenetv4_conv_small", "ghostnet_100", "rexnet_100", "fbnetc_100", "hgnetv2_b0", "mobileone_s0",
    "repvit_m0_9", "ese_vovnet19b_dw", "selecsls42b", "hrnet_w18_small", "nf_resnet26", "convnext_atto",
    "convnextv2_atto", "inception_next_atto", "rdnet_tiny", "starnet_s1", "mambaout_femto",
    # attention and hybrids
    "vit_tiny_patch16_224", "deit_tiny_patch16_224", "deit3_small_patch16_224", "eva02_tiny_patch14_224",
    "swin_tiny_patch4_window7_224", "swinv2_tiny_window8_256", "coatnet_nano_rw_224", "maxvit_nano_rw_256",
    "levit_128s", "cait_xxs24_224", "xcit_nano_12_p16_224", "crossvit_tiny_240", "pvt_v2_b0", "twins_svt_small",
    "tiny_vit_5m_224", "efficientformer_l1", "efficientvit_b0", "mobilevit_xxs", "fastvit_t8", "edgenext_xx_small",
    "coat_lite_tiny", "convit_tiny", "pit_ti_224", "gcvit_xxtiny", "davit_tiny", "hiera_tiny_224",
    "focalnet_tiny_srf", "halonet26t", "botnet26t_256", "lambda_resnet26t", "volo_d1_224", "nest_tiny",
    # MLPs, pooling and recurrent mixers
    "mixer_s32_224", "gmlp_ti16_224", "resmlp_12_224", "poolformer_s12", "sequencer2d_s",
]

# Where fake and real runs take different stride-dependent paths, the arithmetic is equal but the
# ops that move data are not: PyTorch's meta convolution keeps a channels-last input's layout,
# while the CPU kernel returns a contiguous result for it. What follows then differs with the
# strides: `F.linear` on a non-contiguous input is mm + add instead of addmm (same MACs and
# adds), `.contiguous()` copies or not, and in-place restrides (free) come in another order.
STRIDE_DEPENDENT = {"pvt_v2_b0", "twins_svt_small", "davit_tiny"}


@pytest.mark.parametrize("name", SAMPLE)
def test_all_ops_costed_and_fake_equals_real(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = timm.create_model(name, pretrained=False).eval()     # real (random) weights for real mode
    shape = (1, *model.pretrained_cfg["input_size"])
    x = torch.randn(shape)
    fake = flopmeter.count(model, x, options=flopmeter.Options(strict=True))
    real = flopmeter.count(model, x, options=flopmeter.Options(mode="real", strict=True))
    if name in STRIDE_DEPENDENT:
        assert_same_compute(fake, real)
    else:
        assert_same(fake, real)
    assert fake.macs > 0


def test_sample_spans_at_least_30_architectures():
    assert len(set(SAMPLE)) == len(SAMPLE) >= 30
    assert STRIDE_DEPENDENT <= set(SAMPLE)
