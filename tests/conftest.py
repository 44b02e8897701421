import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))   # tests/models.py, tests/guards.py, tests/oracle.py

# Property tests: a fixed, reproducible draw by default; FLOPMETER_HYPOTHESIS=thorough explores more.
settings.register_profile("default", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("FLOPMETER_HYPOTHESIS", "default"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
