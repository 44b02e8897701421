"""A folder with a Hugging Face ``config.json`` and its checkpoint (``./Llama-3-8B/``): the
model is built from the config (the ``hf:`` front end, on the meta device) in the checkpoint's
main floating-point dtype, counted as ``hf:`` models are, and its report then carries each
parameter's stored format and bytes and where checkpoint and config disagree
(:func:`.report.with_checkpoint`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..base import InputRequest, Resolved, refuse
from . import checkpoint_files, read_checkpoint
from .report import dominant_dtype, with_checkpoint


def has_config(spec: str) -> bool:
    """A folder holding a config.json beside checkpoint files."""
    path = Path(spec).expanduser()
    try:
        return path.is_dir() and (path / "config.json").is_file() and bool(checkpoint_files(path))
    except OSError:
        return False


def folder_model(spec: str, req: InputRequest) -> Resolved:
    from ..hf import hf_model
    folder = Path(spec).expanduser()
    ckpt = read_checkpoint(folder)
    dtype = dominant_dtype(ckpt)
    if req.dtype is not None:
        raise refuse("--dtype", f"does not apply to {folder.name}: its checkpoint fixes the tensors' dtypes "
                     f"({str(dtype).removeprefix('torch.') if dtype else 'none of them floating point'})",
                     hint=f"count the config alone in another dtype: flopmeter hf:{spec} --dtype …")
    resolved = hf_model(str(folder), replace(req, dtype=dtype) if dtype is not None else req)
    try:
        config = json.loads((folder / "config.json").read_bytes())     # read (and checked) by hf_model already
    except ValueError:
        config = {}
    config = config if isinstance(config, dict) else {}
    model = resolved.model
    notes = [n for n in resolved.notes if "the config's torch_dtype" not in n]
    if dtype is not None:
        notes.append(f"{folder.name}: counted in {str(dtype).removeprefix('torch.')}, the checkpoint's main dtype; "
                     "parameters at the formats and bytes the checkpoint stores")

    def finish(report):
        return with_checkpoint(report, ckpt, model, config)
    return replace(resolved, name=spec, notes=notes, finish=finish)


__all__ = ["folder_model", "has_config"]
