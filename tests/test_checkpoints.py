"""Checkpoint files read by their headers alone: safetensors (files, sharded indexes), GGUF,
PyTorch state dicts, a folder with its config.json; hostile headers refused in one line.

Files are made here with the real writers (``safetensors.torch.save_file``, ``gguf.GGUFWriter``,
``torch.save``); large tensors are declared in a header and left as holes of a sparse file.
Expected numbers are the arithmetic in the comments."""

import json
import struct
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
import torch

from flopmeter.cli import main
from flopmeter.errors import InputError, MissingDependencyError
from flopmeter.frontends.checkpoint import (
    bytes_per_param,
    checkpoint_report,
    read_checkpoint,
)

gguf = pytest.importorskip("gguf")
safetensors_torch = pytest.importorskip("safetensors.torch")
Q = gguf.GGMLQuantizationType

HF_TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 64,
           "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "max_position_embeddings": 256, "torch_dtype": "bfloat16", "tie_word_embeddings": False}
# embed V·d + lm_head d·V + per layer (q, o: d·d; k, v: d·(d/2) with 2 of 4 heads; MLP 3·d·ff; 2 norms d) + norm d
HF_TINY_PARAMS = 2 * 100 * 64 + 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64) + 64


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *argv) -> str:
    """The one error line of a refused command (exit 2, an error and a hint, no traceback)."""
    code, out, err = cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 2, err
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: ") and "Traceback" not in err
    return lines[0]


def write_header(path, header: dict, data_bytes: int, length: int | None = None):
    """A safetensors file by hand: its header, then ``data_bytes`` of holes (a sparse file)."""
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw) if length is None else length) + raw)
        f.truncate(8 + len(raw) + data_bytes)
    return 8 + len(raw)


# -- safetensors --------------------------------------------------------------------------------

def test_a_safetensors_file_written_by_the_library(tmp_path):
    tensors = {"model.embed.weight": torch.zeros(10, 4, dtype=torch.bfloat16),
               "model.layers.0.proj.weight": torch.zeros(4, 4), "model.layers.0.proj.bias": torch.zeros(4),
               "model.layers.1.proj.weight": torch.zeros(4, 4, dtype=torch.float16)}
    safetensors_torch.save_file(tensors, tmp_path / "m.safetensors")
    ckpt = read_checkpoint(tmp_path / "m.safetensors")
    # params: 10·4 + 4·4 + 4 + 4·4 = 76; bytes: 40·2 (bf16) + 20·4 (f32) + 16·2 (f16) = 192
    assert ckpt.params == 10 * 4 + 4 * 4 + 4 + 4 * 4 == 76
    assert ckpt.nbytes == 40 * 2 + 20 * 4 + 16 * 2 == 192
    assert ckpt.by_format() == {"bfloat16": (40, 80), "float32": (20, 80), "float16": (16, 32)}
    assert ckpt.by_layer() == {"model.embed": (40, 80), "model.layers.0": (20, 80), "model.layers.1": (16, 32)}
    (n,) = struct.unpack("<Q", (tmp_path / "m.safetensors").read_bytes()[:8])
    assert ckpt.bytes_read == 8 + n                          # the length and the header, no data
    # the offsets point at the data: the library's own reader agrees on every tensor
    with safetensors_torch.safe_open(str(tmp_path / "m.safetensors"), "pt") as f:
        assert sorted(f.keys()) == sorted(t.name for t in ckpt.tensors)
        for t in ckpt.tensors:
            assert list(f.get_slice(t.name).get_shape()) == list(t.shape)
    assert sum(t.nbytes for t in ckpt.tensors) + 8 + n == (tmp_path / "m.safetensors").stat().st_size
    assert all(t.offset >= 8 + n for t in ckpt.tensors)


def test_a_sparse_file_declaring_large_tensors_and_a_tied_name(tmp_path):
    V, d = 128_256, 16_384
    embed = 2 * V * d                                                 # bf16: 2 bytes a weight
    norm = 4 * d                                                      # f32
    header = {"embed.weight": {"dtype": "BF16", "shape": [V, d], "data_offsets": [0, embed]},
              "lm_head.weight": {"dtype": "BF16", "shape": [V, d], "data_offsets": [0, embed]},   # the same bytes
              "norm.weight": {"dtype": "F32", "shape": [d], "data_offsets": [embed, embed + norm]},
              "__metadata__": {"format": "pt"}}
    head = write_header(tmp_path / "big.safetensors", header, embed + norm)
    ckpt = read_checkpoint(tmp_path / "big.safetensors")
    assert ckpt.params == V * d + d                                   # the tied embedding once
    assert ckpt.nbytes == embed + norm == 4_202_758_144
    assert ckpt.tensor("lm_head.weight") is ckpt.tensor("embed.weight")
    assert [t.aliases for t in ckpt.tensors] == [("lm_head.weight",), ()]
    assert ckpt.bytes_read == head and ckpt.metadata == {"format": "pt"}
    report = checkpoint_report(ckpt)
    assert report.params.count == V * d + d and report.params.bytes_by_dtype == {"bfloat16": embed, "float32": norm}


# -- GGUF ---------------------------------------------------------------------------------------

def test_quant_block_layouts_are_the_gguf_packages_and_match_the_arithmetic():
    sizes = gguf.GGML_QUANT_SIZES
    assert sizes[Q.Q4_0] == (32, 2 + 32 // 2)                 # fp16 scale + 16 bytes of nibbles = 18
    assert sizes[Q.Q4_1] == (32, 2 + 2 + 32 // 2)             # scale, min, nibbles = 20
    assert sizes[Q.Q5_0] == (32, 2 + 4 + 32 // 2)             # scale, 32 high bits, nibbles = 22
    assert sizes[Q.Q5_1] == (32, 2 + 2 + 4 + 32 // 2)         # = 24
    assert sizes[Q.Q8_0] == (32, 2 + 32)                      # scale + 32 int8 = 34
    assert sizes[Q.Q2_K] == (256, 256 // 16 + 256 // 4 + 2 + 2)           # scales, 2-bit quants, d, dmin = 84
    assert sizes[Q.Q3_K] == (256, 256 // 8 + 256 // 4 + 12 + 2)           # hmask, quants, scales, d = 110
    assert sizes[Q.Q4_K] == (256, 2 + 2 + 12 + 256 // 2)                  # d, dmin, scales, nibbles = 144
    assert sizes[Q.Q5_K] == (256, 2 + 2 + 12 + 256 // 8 + 256 // 2)       # = 176
    assert sizes[Q.Q6_K] == (256, 256 // 2 + 256 // 4 + 256 // 16 + 2)   # ql, qh, scales, d = 210
    assert sizes[Q.Q8_K] == (256, 4 + 256 + 2 * 256 // 16)                # f32 d, int8 quants, sums = 292
    assert bytes_per_param("Q4_0") == Fraction(18, 32) and bytes_per_param("Q4_K") == Fraction(144, 256)
    assert bytes_per_param("BF16") == 2 and bytes_per_param("F8_E4M3") == 1 and bytes_per_param("F4") == Fraction(1, 2)
    assert float(bytes_per_param("Q6_K")) * 8 == 6.5625                   # 210·8/256 bits a weight


def write_gguf(path, tensors=(), declared=()):
    """A GGUF file: ``tensors`` (name, array, raw type or None) with data, ``declared`` (name, numpy
    shape, type) as infos only, their data a hole."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_token_list([f"tok{i}" for i in range(50)])         # an array of strings in the metadata
    for name, array, raw in tensors:
        w.add_tensor(name, array, raw_dtype=raw)
    for name, shape, qtype in declared:
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        nbytes = int(np.prod(shape)) // block * size
        w.add_tensor_info(name, gguf.quant_shape_to_byte_shape(shape, qtype) if block > 1 else shape,
                          np.dtype(np.uint8) if block > 1 else np.dtype(np.float32), nbytes, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    if declared:
        w.write_ti_data_to_file()
        w.close()
        start = -(-path.stat().st_size // 32) * 32                  # the data, aligned to 32 bytes
        total = start + sum(int(np.prod(s)) // gguf.GGML_QUANT_SIZES[q][0] * gguf.GGML_QUANT_SIZES[q][1]
                            for _, s, q in declared)
        with open(path, "r+b") as f:
            f.truncate(total)
    else:
        w.write_tensors_to_file()
        w.close()


def test_a_gguf_file_with_quantized_tensors(tmp_path):
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    write_gguf(tmp_path / "m.gguf", [
        ("token_embd.weight", np.zeros((10, 64), dtype=np.float16), None),
        ("blk.0.attn_q.weight", gguf.quants.quantize(x, Q.Q8_0), Q.Q8_0),
        ("blk.1.attn_q.weight", gguf.quants.quantize(x, Q.Q4_0), Q.Q4_0),
        ("output_norm.weight", np.zeros(64, dtype=np.float32), None)])
    ckpt = read_checkpoint(tmp_path / "m.gguf")
    t = {e.name: e for e in ckpt.tensors}
    assert t["token_embd.weight"].shape == (10, 64) and t["token_embd.weight"].nbytes == 10 * 64 * 2
    # 8 rows of 64 weights = 16 blocks of 32: Q8_0 16·34 bytes, Q4_0 16·18 bytes
    assert t["blk.0.attn_q.weight"].nbytes == 8 * 64 // 32 * 34 == 544 and t["blk.0.attn_q.weight"].dtype == "Q8_0"
    assert t["blk.1.attn_q.weight"].nbytes == 8 * 64 // 32 * 18 == 288 and t["blk.1.attn_q.weight"].dtype == "Q4_0"
    assert ckpt.params == 10 * 64 + 2 * 8 * 64 + 64
    assert ckpt.by_format() == {"float16": (640, 1280), "Q8_0": (512, 544), "Q4_0": (512, 288), "float32": (64, 256)}
    assert ckpt.by_layer()["blk.0"] == (512, 544) and ckpt.metadata["llama.block_count"] == 2
    # the gguf package's own reader (it maps the whole file) agrees on every byte count and offset
    reader = gguf.GGUFReader(str(tmp_path / "m.gguf"))
    for rt in reader.tensors:
        assert (t[rt.name].nbytes, t[rt.name].offset) == (int(rt.n_bytes), int(rt.data_offset))
        assert t[rt.name].shape == tuple(int(s) for s in reversed(rt.shape))       # GGUF lists innermost first


def test_a_sparse_gguf_of_large_k_quant_tensors(tmp_path):
    d, ff = 4096, 14336
    write_gguf(tmp_path / "big.gguf", declared=[("blk.0.ffn_up.weight", (ff, d), Q.Q4_K),
                                                ("blk.0.ffn_down.weight", (d, ff), Q.Q6_K),
                                                ("token_embd.weight", (128_256, d), Q.F32)])
    ckpt = read_checkpoint(tmp_path / "big.gguf")
    assert ckpt.by_format() == {"Q4_K": (ff * d, ff * d // 256 * 144),      # 4.5 bits a weight
                                "Q6_K": (d * ff, d * ff // 256 * 210),      # 6.5625 bits a weight
                                "float32": (128_256 * d, 4 * 128_256 * d)}
    assert ckpt.bytes_read < 2**16 + 2**12                   # the header in chunks of 64 KiB, no data
    assert ckpt.file_bytes > 2 * 10**9


# -- sharded checkpoints and folders ------------------------------------------------------------

def tiny_llama(config=HF_TINY):
    import transformers
    cfg = transformers.AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
    return {k: torch.zeros(v.shape, dtype=torch.bfloat16) for k, v in model.state_dict().items()}


def save_sharded(folder, tensors: dict, shards: int = 2, config=HF_TINY):
    folder.mkdir(exist_ok=True)
    names = sorted(tensors)
    weight_map = {}
    for i in range(shards):
        part = {n: tensors[n] for n in names[i::shards]}
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        safetensors_torch.save_file(part, folder / file)
        weight_map |= dict.fromkeys(part, file)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_sharded_index(tmp_path, capsys):
    folder = save_sharded(tmp_path / "ck", tiny_llama(), config=None)
    ckpt = read_checkpoint(folder / "model.safetensors.index.json")
    assert len(ckpt.files) == 2 and ckpt.params == HF_TINY_PARAMS and ckpt.nbytes == 2 * HF_TINY_PARAMS
    assert read_checkpoint(folder).params == HF_TINY_PARAMS              # the folder: its index
    code, out, _err = cli(capsys, folder, "--format", "json")
    d = json.loads(out)
    assert code == 0 and d["mode"] == "checkpoint" and d["params"]["count"] == HF_TINY_PARAMS
    assert d["params"]["bytes_by_dtype"] == {"bfloat16": 2 * HF_TINY_PARAMS}
    assert d["checkpoint"]["by_layer"]["model.layers.1"]["params"] == 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64


def test_a_folder_with_its_config_is_counted_from_the_config_with_the_stored_dtypes(tmp_path, capsys):
    tensors = tiny_llama()
    tensors["model.norm.weight"] = torch.zeros(64)                        # float32 in the checkpoint
    folder = save_sharded(tmp_path / "llama", tensors)
    code, out, err = cli(capsys, folder, "--seq-len", "8", "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert d["mode"] == "fake" and d["totals"]["macs"] > 0                # counted from the config
    assert d["params"]["count"] == HF_TINY_PARAMS
    assert d["params"]["bytes_by_dtype"] == {"bfloat16": 2 * (HF_TINY_PARAMS - 64), "float32": 4 * 64}
    assert d["checkpoint"]["comparison"]["agrees"] is True
    code, out, err = cli(capsys, folder, "--seq-len", "8", "--format", "md")
    assert "- **checkpoint vs config**: they agree" in out


def test_disagreements_between_checkpoint_and_config(tmp_path, capsys):
    config = {**HF_TINY, "tie_word_embeddings": True}
    tensors = tiny_llama({**HF_TINY, "tie_word_embeddings": False})       # lm_head stored beside the embedding
    del tensors["model.layers.0.mlp.gate_proj.weight"]
    tensors["model.layers.1.mlp.up_proj.weight"] = torch.zeros(128, 32, dtype=torch.bfloat16)
    tensors["vision.patch.weight"] = torch.zeros(3, 3, dtype=torch.bfloat16)
    folder = save_sharded(tmp_path / "bad", tensors, config=config)
    code, out, err = cli(capsys, folder, "--seq-len", "8", "--format", "json")
    assert code == 0, err
    c = json.loads(out)["checkpoint"]["comparison"]
    assert c["agrees"] is False
    assert c["missing"] == ["model.layers.0.mlp.gate_proj.weight"]
    assert c["extra"] == ["vision.patch.weight"]
    assert c["shape_mismatches"] == [{"name": "model.layers.1.mlp.up_proj.weight", "checkpoint": [128, 32],
                                      "model": [128, 64]}]
    assert c["tied_stored_twice"] == [{"names": ["lm_head.weight", "model.embed_tokens.weight"],
                                       "extra_bytes": 2 * 100 * 64}]            # one V·d bf16 copy too many
    code, out, err = cli(capsys, folder, "--seq-len", "8", "--format", "md")
    for line in ("- **missing in checkpoint**: 1 tensor(s): model.layers.0.mlp.gate_proj.weight",
                 "- **not in the model**: 1 tensor(s): vision.patch.weight",
                 "- **tied, stored twice**: lm_head.weight = model.embed_tokens.weight"):
        assert line in out


# -- PyTorch files ------------------------------------------------------------------------------

def test_a_pytorch_state_dict_is_read_on_meta_with_weights_only(tmp_path, capsys):
    emb = torch.zeros(10, 4)
    torch.save({"embed.weight": emb, "head.weight": emb, "norm": torch.zeros(4, dtype=torch.bfloat16)},
               tmp_path / "pytorch_model.bin")
    ckpt = read_checkpoint(tmp_path / "pytorch_model.bin")
    assert ckpt.params == 10 * 4 + 4 and ckpt.nbytes == 40 * 4 + 4 * 2              # the shared tensor once
    assert [t.aliases for t in ckpt.tensors if t.name == "embed.weight"] == [("head.weight",)]
    torch.save({"w": torch.zeros(2, 3)}, tmp_path / "sd.pt")
    code, out, err = cli(capsys, tmp_path / "sd.pt", "--format", "json")
    assert code == 0 and json.loads(out)["params"]["count"] == 6, err


class Payload:
    pass


def test_pytorch_files_that_need_more_than_weights_only_are_refused(tmp_path, capsys):
    torch.save({"w": torch.zeros(2), "x": Payload()}, tmp_path / "evil.bin")
    assert "never unpickles" in refused(capsys, tmp_path / "evil.bin")
    torch.save({"w": torch.zeros(2)}, tmp_path / "old.bin", _use_new_zipfile_serialization=False)
    assert "legacy (non-zip) format" in refused(capsys, tmp_path / "old.bin")


# -- hostile headers ----------------------------------------------------------------------------

F32x4 = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}


def hostile_safetensors(tmp_path):
    cases = {
        "beyond": ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, 8, None,
                   "past the 8 bytes of data"),
        "overlap": ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                     "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, 24, None, "overlap"),
        "huge": ({"a": F32x4}, 16, 2**62, "more than safetensors allows"),
        "length": ({"a": F32x4}, 16, 10**6, "past the end of the"),
        "dtype": ({"a": {"dtype": "F31", "shape": [4], "data_offsets": [0, 16]}}, 16, None, "does not define"),
        "shape": ({"a": {"dtype": "F32", "shape": [4, -1], "data_offsets": [0, 16]}}, 16, None, "not a list of sizes"),
        "bytes": ({"a": {"dtype": "F32", "shape": [5], "data_offsets": [0, 16]}}, 16, None,
                  "20 bytes, but its data_offsets span 16 bytes"),
    }
    out = {}
    for name, (header, data, length, message) in cases.items():
        write_header(tmp_path / f"{name}.safetensors", header, data, length)
        out[name] = (tmp_path / f"{name}.safetensors", message)
    (tmp_path / "notjson.safetensors").write_bytes(struct.pack("<Q", 5) + b"{nope" + bytes(8))
    out["notjson"] = (tmp_path / "notjson.safetensors", "the header is not JSON")
    return out


@pytest.mark.parametrize("case", ["beyond", "overlap", "huge", "length", "dtype", "shape", "bytes", "notjson"])
def test_hostile_safetensors_headers_are_refused_in_one_line(tmp_path, capsys, case):
    path, message = hostile_safetensors(tmp_path)[case]
    assert message in refused(capsys, path)
    tracemalloc.start()
    with pytest.raises(InputError):
        read_checkpoint(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20                              # nothing allocated beyond the (tiny) header


def test_hostile_gguf_headers_are_refused_in_one_line(tmp_path, capsys):
    write_gguf(tmp_path / "ok.gguf", [("w", np.zeros((4, 32), dtype=np.float32), None)])
    raw = bytearray((tmp_path / "ok.gguf").read_bytes())
    infos = raw.index(b"\x01\x00\x00\x00\x00\x00\x00\x00w")        # the tensor info: name length 1, "w"
    type_at = infos + 9 + 4 + 2 * 8                                 # after the name, n_dims and two dims
    unknown = bytearray(raw)
    unknown[type_at:type_at + 4] = struct.pack("<I", 99)
    (tmp_path / "unknown.gguf").write_bytes(unknown)
    assert "unknown GGUF tensor type 99 for tensor 'w'" in refused(capsys, tmp_path / "unknown.gguf")
    beyond = bytearray(raw)
    beyond[type_at + 4:type_at + 12] = struct.pack("<Q", 2**40)      # the data offset
    (tmp_path / "beyond.gguf").write_bytes(beyond)
    assert "ends past the end of the" in refused(capsys, tmp_path / "beyond.gguf")
    counts = bytearray(raw)
    counts[8:16] = struct.pack("<Q", 2**60)                         # the tensor count
    (tmp_path / "counts.gguf").write_bytes(counts)
    assert "more than its" in refused(capsys, tmp_path / "counts.gguf")
    (tmp_path / "magic.gguf").write_bytes(b"GGML" + bytes(20))
    assert "not the GGUF magic" in refused(capsys, tmp_path / "magic.gguf")


def test_an_index_naming_missing_shards_or_tensors_is_refused(tmp_path, capsys):
    folder = save_sharded(tmp_path / "ck", tiny_llama(), config=None)
    (folder / "model-00002-of-00002.safetensors").unlink()
    assert "names 1 shard(s) that are not in" in refused(capsys, folder / "model.safetensors.index.json")
    folder = save_sharded(tmp_path / "ck2", tiny_llama(), config=None)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.ghost.weight"] = "model-00001-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert "holds 'model.ghost.weight'" in refused(capsys, folder)
    index["weight_map"]["model.ghost.weight"] = "../elsewhere.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert "not a file beside the index" in refused(capsys, folder)


def test_a_missing_gguf_package_names_the_extra(tmp_path, capsys, monkeypatch):
    import sys
    write_gguf(tmp_path / "m.gguf", [("w", np.zeros((4, 32), dtype=np.float32), None)])
    monkeypatch.setitem(sys.modules, "gguf", None)                     # import gguf raises ImportError
    with pytest.raises(MissingDependencyError) as info:
        read_checkpoint(tmp_path / "m.gguf")
    assert info.value.hint == "pip install 'flopmeter[checkpoints]'"
    code, _out, err = cli(capsys, tmp_path / "m.gguf")
    assert code == 2 and "'gguf'" in err and "pip install 'flopmeter[checkpoints]'" in err


# -- the CLI's views and refusals ---------------------------------------------------------------

def test_views_and_formats(tmp_path, capsys):
    safetensors_torch.save_file({"model.layers.0.w": torch.zeros(4, 8, dtype=torch.bfloat16),
                                 "model.layers.1.w": torch.zeros(4, 8)}, tmp_path / "m.safetensors")
    spec = tmp_path / "m.safetensors"
    code, out, _ = cli(capsys, spec, "--format", "csv")
    rows = out.strip().splitlines()
    assert rows[0] == "path,depth,params,bytes,formats,share"
    assert "model.layers.0,3,32,64,bfloat16,0.333333" in rows                # 4·8 bf16 = 64 of 192 bytes
    code, out, _ = cli(capsys, spec, "--view", "tensors", "--format", "md", "--raw")
    assert "| model.layers.1.w | 4×8 | float32 | 32 | 128 | m.safetensors |" in out
    code, out, _ = cli(capsys, spec)
    assert code == 0 and "no tensor data read" in out
    assert "--view ops does not apply to m.safetensors" in refused(capsys, spec, "--ops")
    assert "--input does not apply to m.safetensors" in refused(capsys, spec, "--input", "1x8")
    assert "--format html does not apply" in refused(capsys, spec, "--format", "html")
    assert "--view tensors lists a checkpoint's tensors" in refused(capsys, "hf:gpt2", "--view", "tensors")


def test_quantization_tensors_are_folded_into_the_weight_they_quantize(tmp_path, capsys):
    config = {**HF_TINY, "quantization_config": {"quant_method": "fp8", "weight_block_size": [32, 32]}}
    tensors = tiny_llama()
    q = "model.layers.0.mlp.up_proj"                                          # a 128×64 weight
    tensors[f"{q}.weight"] = torch.zeros(128, 64, dtype=torch.float8_e4m3fn)
    tensors[f"{q}.weight_scale_inv"] = torch.zeros(128 // 32, 64 // 32)       # one f32 scale a 32×32 block
    folder = save_sharded(tmp_path / "fp8", tensors, config=config)
    code, out, err = cli(capsys, folder, "--seq-len", "8", "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    c = d["checkpoint"]["comparison"]
    assert c["agrees"] is True and c["quantized"] == {f"{q}.weight": [f"{q}.weight_scale_inv"]}
    # the up projection: 128·64 fp8 bytes + 4·2 f32 scales; every other parameter bf16
    assert d["params"]["bytes_by_dtype"] == {"float8_e4m3fn": 128 * 64 + 4 * 2 * 4,
                                             "bfloat16": 2 * (HF_TINY_PARAMS - 128 * 64)}
