"""Small models for the sweep tests: `tests/data/sweep_models.py:NAME`.

Each builder appends its name to the file named by FLOPMETER_TEST_BUILD_LOG (when set), so a
test can tell which rows a sweep built, and sleeps FLOPMETER_TEST_BUILD_SLEEP seconds (when
set), so a test can interrupt a sweep between rows. A builder named in FLOPMETER_TEST_GATED
(comma-separated) waits, up to a minute, until the file FLOPMETER_TEST_BUILD_GATE exists: a test
that never makes it interrupts the sweep while exactly the other rows are done, however slow the
machine. ``dies`` and ``segfault`` end the process that builds them (only ever run in a worker)."""

import os
import time

import torch
from torch import nn


def _built(name: str) -> None:
    log = os.environ.get("FLOPMETER_TEST_BUILD_LOG")
    if log:
        with open(log, "a") as f:
            f.write(name + "\n")
    time.sleep(float(os.environ.get("FLOPMETER_TEST_BUILD_SLEEP", "0")))
    gate = os.environ.get("FLOPMETER_TEST_BUILD_GATE")
    if gate and name in os.environ.get("FLOPMETER_TEST_GATED", "").split(","):
        deadline = time.monotonic() + 60
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)


def _cnn(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, 10)).eval()


def tiny_a():
    _built("tiny_a")
    return _cnn(4), torch.randn(2, 3, 16, 16)


def tiny_b():
    _built("tiny_b")
    return _cnn(8), torch.randn(2, 3, 16, 16)


def tiny_c():
    _built("tiny_c")
    return _cnn(16), torch.randn(2, 3, 16, 16)


def tiny_d():
    _built("tiny_d")
    return _cnn(32), torch.randn(2, 3, 16, 16)


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 5)

    def forward(self, x):
        return self.fc(x)          # the inputs below have 16 features, not 5


def broken():
    _built("broken")
    return Broken().eval(), torch.randn(2, 16)


def dies():
    """A build that ends its process at once (as the out-of-memory killer would), exit status 3."""
    _built("dies")
    os._exit(3)


def segfault():
    """A build that crashes its process with SIGSEGV (a read of address 0)."""
    import ctypes

    _built("segfault")
    ctypes.string_at(0)
