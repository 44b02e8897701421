"""The table of docs/mfu.md: flopmeter's training-step FLOPs per token (per sample for a vision
model) against 6·N·T and nanoGPT's ``estimate_mfu`` formula, ``6·N + 12·L·H·Q·T`` per token
(N: parameters without the position embedding, L layers, H heads of size Q, T the sequence
length). Every model is built from its config on the meta device (fake tensors, no weights);
the step is forward, loss (the model's cross-entropy; the sum of the logits for the vision
model), backward and AdamW, under the ``dot`` convention (2 × MACs, AdamW adds none).

    python benchmarks/mfu_table.py          # writes benchmarks/results/mfu_table.md
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

import flopmeter

OUT = Path(__file__).with_name("results") / "mfu_table.md"
T = 1024


def nanogpt_per_token(n: int, layers: int, heads: int, head_dim: int, t: int) -> int:
    """nanoGPT ``GPT.estimate_mfu``: flops_per_token = 6·N + 12·L·H·Q·T."""
    return 6 * n + 12 * layers * heads * head_dim * t


def lm_row(name: str, model, layers: int, heads: int, head_dim: int, non_embedding: int, note: str) -> dict:
    ids = torch.zeros(1, T, dtype=torch.long, device="meta")
    step = flopmeter.training_flops(model, {"input_ids": ids, "labels": ids}, optimizer="adamw")
    n_all = sum(p.numel() for p in model.parameters())
    return {"model": name, "unit": "token", "per": T, "step": step, "n": n_all, "n_6": non_embedding,
            "nanogpt": nanogpt_per_token(non_embedding, layers, heads, head_dim, T), "note": note}


def gpt2_124m() -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config()                  # 124M: 12 layers, 12 heads, 768 wide, vocabulary 50257
    with torch.device("meta"):
        model = GPT2LMHeadModel(cfg)
    non_embedding = sum(p.numel() for p in model.parameters()) - model.transformer.wpe.weight.numel()
    not_matmul = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 1)
    attention = 12 * cfg.n_layer * cfg.n_embd * T
    return lm_row("GPT-2 124M (T=1024)", model, cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, non_embedding,
                  f"6·N·T leaves out attention ({attention:,} per token: 12·L·T·d); nanoGPT's N also holds the "
                  f"biases and LayerNorm weights ({not_matmul:,}, so {6 * not_matmul:,} per token), which are no "
                  "matrix product; its attention term is exact here (the trace ran attention as two bmm, whose "
                  "backward is 4 products)")


def llama_gqa() -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(hidden_size=512, intermediate_size=1408, num_hidden_layers=8, num_attention_heads=8,
                      num_key_value_heads=2, vocab_size=32000, max_position_embeddings=2048)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    n_all = sum(p.numel() for p in model.parameters())
    embedding = model.model.embed_tokens.weight.numel()
    return lm_row("Llama, GQA 8 q / 2 kv heads, 512 wide, 8 layers (T=1024)", model, cfg.num_hidden_layers,
                  cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads, n_all,
                  f"N holds the untied input embedding ({embedding:,}: a lookup, no FLOPs) and the RMSNorm "
                  "weights, counted by both formulas as matrix products; attention ran the CPU flash kernel, whose "
                  "backward recomputes the scores (5 products, 2.5× its forward, not 2×); GQA's narrower k/v "
                  "projections are in N")


def resnet18_frozen() -> dict:
    import torchvision
    with torch.device("meta"):
        model = torchvision.models.resnet18()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.fc.parameters():
        p.requires_grad_(True)
    step = flopmeter.training_flops(model, torch.zeros(1, 3, 224, 224, device="meta"), optimizer="adamw",
                                    loss="sum")
    n_all = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"model": "resnet18, frozen but fc (224×224)", "unit": "sample", "per": 1, "step": step, "n": n_all,
            "n_6": n_all, "n_train": n_train, "nanogpt": None,
            "note": "6·N assumes each weight is used once per sample; a convolution uses it at every output "
                    "position. Backward is fc's weight gradient only (2·512·1000): the frozen layers compute no "
                    "weight gradient and nothing before fc needs an input gradient; nanoGPT's formula is for "
                    "transformers"}


def fmt(v) -> str:
    return "—" if v is None else f"{v:,.0f}" if isinstance(v, (int, float)) and v == int(v) else f"{v:,.1f}"


def table(rows: list[dict]) -> str:
    head = ("| model | unit | flopmeter forward | flopmeter backward | flopmeter step | 6·N | nanoGPT | "
            "step ÷ 6·N | step ÷ nanoGPT | why they differ |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    lines = [head]
    for r in rows:
        s, per = r["step"], r["per"]
        six = 6 * r["n_6"]
        step = s.model_flops / per
        nano = r["nanogpt"]
        lines.append(f"| {r['model']} | per {r['unit']} | {fmt(s.forward / per)} | {fmt(s.backward / per)} | "
                     f"{fmt(step)} | {fmt(six)} | {fmt(nano)} | {step / six:.3f} | "
                     f"{'—' if nano is None else f'{step / nano:.3f}'} | {r['note']} |")
    notes = [f"- {r['model']}: N = {r['n']:,} parameters; 6·N uses {r['n_6']:,}"
             + (f"; trainable {r['n_train']:,} (6·N_trainable = {6 * r['n_train']:,})" if "n_train" in r else "")
             for r in rows]
    return ("FLOPs under the `dot` convention (2 × MACs) of one training step (forward, loss, backward, AdamW; "
            "no recomputation), divided by the tokens (samples) of the batch; written by "
            "`python benchmarks/mfu_table.py` with torch " + torch.__version__ + ".\n\n"
            + "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n")


def main() -> None:
    warnings.filterwarnings("ignore")
    from transformers.utils import logging
    logging.set_verbosity_error()
    rows = [gpt2_124m(), llama_gqa(), resnet18_frozen()]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(table(rows))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
