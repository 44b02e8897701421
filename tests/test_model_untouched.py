"""The model is left exactly as found: state, modes, hooks, attributes, globals — also when
its forward raises, and in train mode where BatchNorm would update running statistics."""

import pytest
import torch

import flopmeter
from flopmeter import ModelForwardError, Options

import models
from guards import assert_unchanged, snapshot


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_train_mode_batchnorm_and_dropout_untouched(mode):
    model = models.TrainModeBN().train()
    model.conv.register_forward_hook(lambda m, i, o: None)     # a user's own hook stays, alone
    x = torch.randn(2, 3, 10, 10)
    before = snapshot(model)
    r = flopmeter.count(model, x, options=Options(mode=mode))
    assert_unchanged(model, before)
    assert model.bn.num_batches_tracked.item() == 0
    # training BatchNorm computes batch statistics: more than inference's scale and shift
    n = 2 * 8 * 8 * 8
    # stats, normalise, affine; + 1 for BatchNorm's own num_batches_tracked += 1
    assert r.module("bn").total.elementwise == 4 * n + 2 * n + 2 * n + 1
    assert r.module("drop").total.elementwise == 2 * n                  # mask and scale


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_forward_that_raises_leaves_model_untouched(mode):
    model = models.Raises().train()
    x = torch.randn(3, 4)
    before = snapshot(model)
    with pytest.raises(ModelForwardError) as info:
        flopmeter.count(model, x, options=Options(mode=mode))
    assert info.value.module == ""          # raised in the root's own code, after bn returned
    assert "deliberate failure" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert_unchanged(model, before)


def test_wrong_input_shape_names_module_op_and_shapes():
    model = models.small_cnn()
    x = torch.randn(1, 3, 28, 28)                                # 3 channels into Conv2d(1, 16)
    before = snapshot(model)
    with pytest.raises(ModelForwardError) as info:
        flopmeter.count(model, x)
    err = info.value
    assert err.module == "0" and err.op == "aten.convolution"
    assert [t.shape for t in err.shapes[:2]] == [(1, 3, 28, 28), (16, 1, 3, 3)]
    assert "'0' (Conv2d)" in str(err) and err.hint
    assert_unchanged(model, before)


def test_eval_model_stays_eval_and_grad_mode_restored():
    model = models.small_cnn().eval()
    x = torch.randn(1, 1, 28, 28)
    before = snapshot(model)
    with torch.enable_grad():
        flopmeter.count(model, x)
        assert torch.is_grad_enabled()
    assert_unchanged(model, before)


def test_meta_device_model_counts_like_a_real_one():
    with torch.device("meta"):
        meta = models.UNet()
    real = models.UNet()
    before = snapshot(meta)
    r_meta = flopmeter.count(meta, input_shape=(1, 1, 64, 64))
    r_real = flopmeter.count(real, input_shape=(1, 1, 64, 64))
    assert r_meta.total == r_real.total and r_meta.params == r_real.params
    assert r_meta.device == "cpu"
    assert_unchanged(meta, before)
    with pytest.raises(flopmeter.InputError, match="meta device"):
        flopmeter.count(meta, input_shape=(1, 1, 64, 64), options=Options(mode="real"))


def test_python_error_in_a_child_names_that_child():
    class Child(torch.nn.Module):
        def forward(self, x):
            if x.shape[-1] != 5:
                raise ValueError(f"expected 5 features, got {x.shape[-1]}")
            return x

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sequential(torch.nn.ReLU(), Child()))
    x = torch.randn(2, 4)
    before = snapshot(model)
    with pytest.raises(ModelForwardError) as info:
        flopmeter.count(model, x)
    assert info.value.module == "1.1" and info.value.op is None
    assert "'1.1' (Child): ValueError: expected 5 features, got 4" in str(info.value)
    assert_unchanged(model, before)


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_tensors_cached_by_the_forward_do_not_stay_on_the_model(mode):
    model = models.CachesInForward()
    x = torch.randn(2, 4)
    before = snapshot(model)
    flopmeter.count(model, x, options=Options(mode=mode))
    assert_unchanged(model, before)
    assert model.cache == {}
    out = model(x)                                   # a later real forward computes real values
    assert type(out) is torch.Tensor and torch.equal(out, x + model.bias * 2)


def test_fakes_are_made_once_per_model_and_remade_when_it_changes():
    import gc
    import weakref

    from flopmeter.trace import fakes

    model = torch.nn.Linear(4, 3)
    before = snapshot(model)
    assert flopmeter.count(model, input_shape=(2, 4)).macs == 2 * 4 * 3
    made = fakes._CACHE[model]
    flopmeter.count(model, input_shape=(2, 4))
    assert fakes._CACHE[model] is made                         # reused, nothing attached to the model
    assert_unchanged(model, before)
    model.weight = torch.nn.Parameter(torch.randn(5, 4))       # a new tensor of another shape
    model.bias = torch.nn.Parameter(torch.randn(5))
    assert flopmeter.count(model, input_shape=(2, 4)).macs == 2 * 4 * 5
    model.half()                                                # same shapes, another dtype
    assert flopmeter.count(model, input_shape=(2, 4)).params.bytes_by_dtype == {"float16": (5 * 4 + 5) * 2}
    assert fakes._CACHE[model][1] is not made[1]
    entries, alive = len(fakes._CACHE), weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None                                     # the cache does not keep the model alive
    assert len(fakes._CACHE) < entries                         # and its entry goes with it


def test_threads_counting_one_model_at_once_each_get_the_whole_count():
    from concurrent.futures import ThreadPoolExecutor

    model = models.small_cnn()
    # conv 1→16 and 16→32 (3×3, padding 1) on 28×28, then Linear 32·28·28 → 10
    macs = 16 * 28 * 28 * 1 * 9 + 32 * 28 * 28 * 16 * 9 + 32 * 28 * 28 * 10
    before = snapshot(model)
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda _: flopmeter.count(model, input_shape=(1, 1, 28, 28)), range(16)))
    assert [r.macs for r in reports] == [macs] * 16
    assert len({len(r.ops) for r in reports}) == 1
    assert_unchanged(model, before)
