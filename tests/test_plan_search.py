"""``flopmeter plan --search``: every configuration of a small cluster planned for a tiny Llama,
ranked by predicted step time, the rejected ones with their reasons; a configuration finished from
a trace made for another (ZeRO 0/1/2 share one) equals its own fresh plan."""

import json

import pytest

transformers = pytest.importorskip("transformers")

from flopmeter.analyses.parallel import plan
from flopmeter.analyses.parallel.search import _refusal, configurations, search
from flopmeter.cli import main
from flopmeter.devices import get_device
from flopmeter.errors import OptionsError

# a one-layer Llama: 4 heads of 12 over 48, 2 key/value heads, MLP 96, vocabulary 96
H, HEADS, KV, I, V = 48, 4, 2, 96, 96
S = 8


def tiny():
    config = transformers.LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=1,
                                      num_attention_heads=HEADS, num_key_value_heads=KV, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(config)


@pytest.fixture(scope="module")
def fresh():
    """Plans of two configurations of 3 H100s, each from its own trace."""
    return {zero: plan(tiny, cluster="3xH100", tp=1, zero=zero, batch=1, seq_len=S) for zero in (0, 1)}


@pytest.fixture(scope="module")
def searched(fresh):
    # usable memory 1 byte below ZeRO-0's peak: ZeRO-0 must be rejected as not fitting, ZeRO-1 must fit
    total = int(get_device("H100").memory)
    reserve = total - (fresh[0].memory.peak - 1)
    assert fresh[1].memory.peak < fresh[0].memory.peak - 1
    return search(tiny, cluster="3xH100", batches=(1,), seq_len=S, reserve=reserve)


def test_the_search_enumerates_the_cluster_and_shares_traces_between_zero_stages(searched):
    # 3 GPUs: tp 1 (dp 3) and tp 3 (dp 1); tp 1 has no SP: 1 × 2 recompute × 4 stages = 8; tp 3: 2 SP × 2 × 4 = 16
    assert len(searched.candidates) == 8 + 16 and not searched.interrupted
    # tp 3 divides no head count of 4: only tp 1 is traced, once per recompute for ZeRO 0–2 and once for FSDP2
    assert searched.traces == 2 * 2
    planned = [c for c in searched.candidates if c.traced]
    assert len(planned) == 8 and sum(c.reused for c in planned) == 8 - 4
    assert all(c.config.stage in (1, 2) for c in planned if c.reused)


def test_a_configuration_finished_from_a_shared_trace_equals_its_own_fresh_plan(searched, fresh):
    c = next(c for c in searched.candidates if c.config.stage == 1 and c.config.recompute == "none")
    assert c.reused
    p = fresh[1]
    assert c.step_s == p.step_s and c.no_overlap_s == p.time.no_overlap and c.peak == p.memory.peak
    assert c.by_kind == p.memory.by_kind and c.mfu == p.mfu and c.comm_s == p.time.comm


def test_the_ranking_is_the_fitting_configurations_by_step_time_and_rejections_say_why(searched, fresh):
    ranked = searched.ranked
    assert ranked and all(c.fits and c.peak <= c.usable for c in ranked)
    assert [c.step_s for c in ranked] == sorted(c.step_s for c in ranked)
    assert {c.config.stage for c in ranked} == {1, 2, 3}           # ZeRO-0 does not fit (the fixture's reserve)
    zero0 = [c for c in searched.candidates if c.config.stage == 0 and c.config.tp == 1]
    usable = fresh[0].memory.peak - 1                     # the fixture's usable memory
    for c in zero0:
        assert c.traced and not c.fits and c.peak > usable and c.reason.startswith("does not fit: peak ")
        assert c.reason == (f"does not fit: peak {c.peak / 2**30:.2f} GiB per rank in {c.peak_phase} "
                            f"({c.peak_module or 'root'}) > usable {usable / 2**30:.2f} GiB "
                            f"(by {(c.peak - usable) / 2**30:.2f} GiB)")
    assert next(c for c in zero0 if c.config.recompute == "none").peak == fresh[0].memory.peak
    tp3 = [c for c in searched.candidates if c.config.tp == 3]
    assert len(tp3) == 16 and all(c.reason == "tp 3 does not divide the model's attention heads (4)" for c in tp3)
    assert all(not c.traced for c in tp3)
    assert len(searched.rejected) == 16 + len(zero0)


def test_zero_without_data_parallelism_and_a_head_count_tp_does_not_divide_are_refused_before_tracing():
    model = tiny()
    reasons = {(c.tp, c.stage, c.sp): _refusal(c, model, True) for c in configurations("4xH100", batches=(1,))}
    # the head counts are checked first: 4 heads divide by 4, 2 key/value heads do not
    assert reasons[(4, 1, False)] == reasons[(4, 0, True)] == "tp 4 does not divide the model's key/value heads (2)"
    assert reasons[(2, 3, True)] is None and reasons[(1, 0, False)] is None
    reasons = {(c.tp, c.stage): _refusal(c, model, True) for c in configurations("2xH100", batches=(1,))}
    assert reasons[(2, 3)] == "ZeRO stage 3 shards over data parallelism, and dp is 1" and reasons[(2, 0)] is None
    assert _refusal(configurations("2xH100", batches=(1,))[-1], model, False).startswith("no built-in tensor-parallel")
    with pytest.raises(OptionsError, match="search chooses tp itself"):
        search(tiny, cluster="2xH100", tp=2)
    with pytest.raises(OptionsError, match="micro-batches"):
        search(tiny, cluster="2xH100", batches=(0,))


def test_an_interrupted_search_keeps_what_it_found():
    starts = []

    def progress(done, total, what):
        if what.startswith("tracing"):
            starts.append(done)
            if len(starts) == 2:                           # Ctrl-C as the second trace starts
                raise KeyboardInterrupt

    r = search(tiny, cluster="3xH100", batches=(1,), seq_len=S, progress=progress)
    assert r.interrupted and r.traces == 1
    assert sorted(c.config.stage for c in r.ranked) == [0, 1, 2] and all(c.config.recompute == "none" for c in r.ranked)
    assert len(r.done) == 16 + 3                           # the refused tp 3 and the first trace's three stages
    import torch.distributed as dist
    assert not dist.is_initialized()


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    config = tiny().config.to_dict()
    config.update(torch_dtype="float32", architectures=["LlamaForCausalLM"])
    (folder / "config.json").write_text(json.dumps(config))
    return f"hf:{folder}"


def test_the_command_line_search_ranks_and_rejects(capsys, tiny_config):
    argv = ["plan", tiny_config, "--cluster", "3xH100", "--search", "--batches", "1", "--seq-len", str(S),
            "--top", "2", "--format", "json"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["configurations"] == 24 and d["traces"] == 4 and len(d["ranked"]) == 2
    assert d["ranked"][0]["step_s"] <= d["ranked"][1]["step_s"] and len(d["rejected"]) == 16
    assert {r["reason"] for r in d["rejected"]} == {"tp 3 does not divide the model's attention heads (4)"}
    for bad, error in ((["--tp", "2"], "--search chooses --tp itself"),
                       (["--fsdp", "--batch", "2"], "--search chooses --fsdp, --batch itself")):
        assert main(["plan", tiny_config, "--search", *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0] == f"error: {error}" and err[1].startswith("hint: ")
    assert main(["plan", tiny_config, "--batches", "1,2"]) == 2
    assert "--batches is the list of micro-batches --search tries" in capsys.readouterr().err
