"""Analyses: pure functions of traced programs (reports), each answering one question.

- :mod:`.serving`: serving sizing as vLLM does it — weights per rank, the profile run's
  activation peak, the KV budget, blocks and concurrency, TTFT, TPOT and tokens/s.
- :mod:`.switches`: sizing switches (LoRA, QLoRA, checkpointing) applied to a copy of the model.
- :mod:`.assumptions`: what every sizing answer assumes, as one record.
"""
