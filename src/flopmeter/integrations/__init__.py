"""Training-loop integrations: MFU and HFU from flopmeter's traced training step.

- :mod:`.loop`: :class:`~.loop.MFUMeter` for a plain PyTorch loop (no extra dependency);
- :mod:`.lightning`: ``FlopmeterCallback``, a Lightning callback (``flopmeter[lightning]``);
- :mod:`.hf`: ``FlopmeterTrainerCallback``, a Hugging Face ``TrainerCallback`` (``flopmeter[hf]``).

Each module imports its library when imported itself, so ``import flopmeter`` needs neither.
"""
