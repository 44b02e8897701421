"""benchmarks/count_profile.py: its split of a count adds up to the count, names the per-count
phases, and leaves flopmeter's functions as they were (it wall-clocks them by wrapping)."""

import re
import sys
from pathlib import Path

import torch
from torch import nn

import flopmeter
from flopmeter import api
from flopmeter.trace import modules, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import count_profile  # noqa: E402


def _clocked_targets() -> dict:
    """Every function and context manager count_profile clocks, as it finds them now."""
    out = {}
    for module_name, qualname in count_profile.PER_COUNT + count_profile.PER_COUNT_CONTEXTS:
        owner, name = count_profile._located(module_name, qualname)
        out[name] = getattr(owner, name)
    return out


def test_the_split_adds_up_and_every_wrapped_function_is_put_back():
    before = _clocked_targets()
    assert before["shadow"] is run.shadow and before["build_report"] is api.build_report
    assert before["installed"] is modules.ModuleStack.installed
    model, x = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval(), torch.randn(1, 3, 8, 8)
    lines = count_profile.floors(model, (x,), 1)
    count = float(re.search(r"count ([\d.]+) ms", lines[0]).group(1))
    parts = [float(v) for v in re.findall(r"(-?[\d.]+)(?: \+|$)", lines[1].split("(ms):")[1])]
    assert len(parts) == 4 and abs(sum(parts) - count) <= 0.02          # four parts, rounded to 0.01 each
    phases = dict(re.findall(r"(\w+) ([\d.]+)", lines[2].split(":", 1)[1]))
    assert {"shadow", "build_report", "installed", "globals_kept", "_param_table"} <= set(phases)
    assert _clocked_targets() == before
    assert flopmeter.count(model, x).total.macs == 1 * 4 * 6 * 6 * 3 * 3 * 3 + 1 * 4 * 6 * 6 * 2     # conv + linear
