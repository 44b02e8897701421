"""Analyses built on counts: sizing switches (LoRA, QLoRA, checkpointing) applied to a copy of
the model, and the assumptions every sizing answer states."""
