"""What do the run's safety checks cost? The fake-mode dtype check on every op
(``trace/dtypes.py``) and the snapshot/restore of global torch state around the forward
(``trace/globals.py``), each switched off in turn (replaced by a no-op), on
``flopmeter.count(resnet50, 1x3x224x224)`` in fake mode.

Variants run interleaved in every repeat so that load drift hits all alike; the table gives
the minimum and the median per variant and the ratio of medians to "both off".

    python benchmarks/hardening_overhead.py            # 15 repeats
    python benchmarks/hardening_overhead.py --repeat 30
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

import flopmeter
import flopmeter.trace.recorder as recorder
import flopmeter.trace.run as run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    import torchvision

    model = torchvision.models.resnet50()
    x = torch.randn(1, 3, 224, 224)
    check, kept = recorder.check_dtypes, run.globals_kept
    variants = {"both on (as shipped)": (check, kept), "no dtype check": (lambda *a: None, kept),
                "no globals kept": (check, contextlib.nullcontext),
                "both off": (lambda *a: None, contextlib.nullcontext)}
    times: dict[str, list[float]] = {k: [] for k in variants}
    try:
        flopmeter.count(model, x)
        for _ in range(args.repeat):
            for name, (c, g) in variants.items():
                recorder.check_dtypes, run.globals_kept = c, g
                t = time.perf_counter()
                flopmeter.count(model, x)
                times[name].append(time.perf_counter() - t)
    finally:
        recorder.check_dtypes, run.globals_kept = check, kept
    base = statistics.median(times["both off"])
    print(f"resnet50, fake count, {args.repeat} interleaved repeats, torch {torch.__version__}")
    print(f"{'variant':22s} {'min ms':>8s} {'median ms':>10s} {'median ratio':>13s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:22s} {min(ts) * 1e3:8.1f} {med * 1e3:10.1f} {med / base:13.3f}")


if __name__ == "__main__":
    main()
