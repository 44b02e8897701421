"""``flopmeter bench`` and ``flopmeter sweep``: rows written as they finish, a failing model in its
row, interruption (SIGINT) and ``--resume`` without re-running finished rows, ``--jobs 2``."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flopmeter.bench.survey import Case, SurveyOptions, count_row, expand
from flopmeter.bench.sweep import RowWriter, expand_specs, pending, read_rows
from flopmeter.cli import main

DATA = Path(__file__).parent / "data"
SRC = Path(__file__).parent.parent / "src"
MODELS = [f"{DATA / 'sweep_models.py'}:{name}" for name in ("tiny_a", "tiny_b", "tiny_c", "tiny_d")]
BROKEN = f"{DATA / 'sweep_models.py'}:broken"


def macs(width: int, size: int = 16, n: int = 2) -> int:
    """Conv2d(3, width, 3, padding=1) N·C_out·H·W·C_in·K·K + Linear(width, 10) N·I·O."""
    return n * width * size * size * 3 * 3 * 3 + n * width * 10


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(SRC), **extra)
    env.pop("FLOPMETER_TEST_BUILD_SLEEP", None)
    env.update(extra)
    return env


def test_count_row_and_failing_model_in_its_row():
    ok = count_row(Case(MODELS[0], (8, 8), None), SurveyOptions())
    assert ok["error"] is None and ok["macs"] == macs(4, size=8) and ok["params"] == 4 * 3 * 9 + 4 + 4 * 10 + 10
    bad = count_row(Case(BROKEN), SurveyOptions())
    assert bad["macs"] is None and "ModelForwardError" in bad["error"] and "fc" in bad["error"]


def test_sweep_writes_every_row_and_reports_the_failure(tmp_path, capsys):
    out = tmp_path / "rows.csv"
    rc = main(["sweep", *MODELS[:2], BROKEN, "--input-size", "8,16", "-o", str(out), "--format", "json"])
    assert rc == 0
    rows = read_rows(out, "csv")
    assert len(rows) == 6                                  # 3 models × 2 sizes, the failing one included
    failed = [r for r in rows if r["error"]]
    assert len(failed) == 2 and all(r["model"] == BROKEN for r in failed)
    by = {(r["model"], r["size"]): int(r["macs"]) for r in rows if not r["error"]}
    assert by[(MODELS[0], "8")] == macs(4, 8) and by[(MODELS[1], "16")] == macs(8, 16)
    final = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in final] == sorted(r["model"] for r in final)     # the final table is sorted


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_interrupt_then_resume_does_not_rerun_finished_rows(tmp_path):
    """Ctrl-C (SIGINT) a sweep after two rows; --resume runs only the rest. Each builder logs its
    name when it is built, so the log shows which rows each run built; the last two wait for a
    file that is never made, so the first run is interrupted with exactly two rows done."""
    out, log = tmp_path / "rows.jsonl", tmp_path / "built.log"
    cmd = [sys.executable, "-m", "flopmeter", "sweep", *MODELS, "-o", str(out), "--no-progress"]
    gated = ",".join(m.rsplit(":", 1)[1] for m in MODELS[2:])
    proc = subprocess.Popen(cmd, env=_env(FLOPMETER_TEST_BUILD_LOG=str(log), FLOPMETER_TEST_GATED=gated,
                                          FLOPMETER_TEST_BUILD_GATE=str(tmp_path / "never")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(_lines(out)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    first = [json.loads(line) for line in _lines(out)]
    done = {r["model"] for r in first}
    assert len(first) == 2                                # interrupted part-way; finished rows kept
    built_before = _lines(log)

    rc = subprocess.run(cmd + ["--resume"], env=_env(FLOPMETER_TEST_BUILD_LOG=str(log)), capture_output=True,
                        text=True, timeout=120)
    assert rc.returncode == 0, rc.stderr
    rows = [json.loads(line) for line in _lines(out)]
    assert sorted(r["model"] for r in rows) == sorted(MODELS)          # every model once
    assert rows[:len(first)] == first                                   # the first run's rows untouched
    built_after = _lines(log)[len(built_before):]
    names = {m.rsplit(":", 1)[1] for m in done}
    assert not names & set(built_after)                                 # finished rows were not built again
    assert sorted(built_after) == sorted({m.rsplit(":", 1)[1] for m in MODELS} - names)
    assert f"{len(first)} of {len(MODELS)} rows are already in" in rc.stderr


def test_resume_cuts_a_half_written_line(tmp_path):
    out = tmp_path / "rows.jsonl"
    w = RowWriter(out, "jsonl", append=False)
    w.write({"model": "a", "size": "", "batch": None})
    w.close()
    with open(out, "a") as f:
        f.write('{"model": "b", "si')                    # killed mid-write
    assert [r["model"] for r in read_rows(out, "jsonl")] == ["a"]
    w = RowWriter(out, "jsonl", append=True)
    w.write({"model": "c", "size": "", "batch": None})
    w.close()
    assert [json.loads(line)["model"] for line in out.read_text().splitlines()] == ["a", "c"]
    cases = expand(["a", "b", "c"], [], [])
    assert [c.spec for c in pending(cases, read_rows(out, "jsonl"))] == ["b"]


def test_jobs_2_gives_the_rows_of_jobs_1(tmp_path):
    rows = {}
    for jobs in (1, 2):
        out = tmp_path / f"rows{jobs}.jsonl"
        assert main(["sweep", *MODELS, BROKEN, "-o", str(out), "--jobs", str(jobs), "--no-progress",
                     "--format", "csv"]) == 0
        rows[jobs] = sorted((json.loads(line) for line in _lines(out)), key=lambda r: r["model"])
    assert rows[1] == rows[2]
    assert [r["macs"] for r in rows[2] if not r["error"]] == [macs(w) for w in (4, 8, 16, 32)]
    assert sum(1 for r in rows[2] if r["error"]) == 1


def test_sweep_with_measure_and_bench_cli(tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    assert main(["sweep", MODELS[0], "--measure", "--min-time", "0.05", "--max-time", "0.2", "--threads", "1",
                 "-o", str(out), "--format", "md"]) == 0
    (row,) = [json.loads(line) for line in _lines(out)]
    assert row["p50_ms"] > 0 and row["threads"] == 1 and row["throughput"] == pytest.approx(2e3 / row["p50_ms"])
    assert row["achieved_tflops"] == pytest.approx(2 * macs(4) / (row["p50_ms"] / 1e3) / 1e12)
    assert "| p50 ms |" in capsys.readouterr().out

    assert main(["bench", MODELS[1], "--input-size", "8", "--min-time", "0.05", "--max-time", "0.2",
                 "--threads", "1", "--layers", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (r,) = data["rows"]
    assert r["macs"] == macs(8, 8) and r["p50_ms"] > 0
    (layers,) = data["layers"]
    assert {m["path"] for m in layers["modules"]} == {"", "0", "1", "2", "3", "4"}
    assert layers["whole"] == pytest.approx(r["p50_ms"] / 1e3)


def test_bench_user_mistakes(capsys):
    assert main(["bench", "torchvision:resnet5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown torchvision model") and "hint: did you mean" in err
    assert main(["bench", MODELS[0], "--input-size", "big"]) == 2
    assert "error: cannot read input size 'big'" in capsys.readouterr().err
    assert main(["sweep", MODELS[0], "--resume"]) == 2
    assert "hint: pass -o FILE.jsonl" in capsys.readouterr().err


def test_patterns_expand_over_zoo_names():
    import torchvision

    specs = expand_specs(["torchvision:resnet*"])
    assert "torchvision:resnet18" in specs and "torchvision:resnet152" in specs
    assert all(s.split(":")[1].startswith("resnet") for s in specs)
    classification = expand_specs(["torchvision:*"], task="classification")
    assert len(classification) == len(torchvision.models.list_models(module=torchvision.models))
    assert "torchvision:fasterrcnn_resnet50_fpn" not in classification
    assert "torchvision:fasterrcnn_resnet50_fpn" in expand_specs(["torchvision:*"])


def test_progress_bar_on_a_terminal(monkeypatch, capsys):
    """On a terminal (stderr isatty) the sweep draws rich's bar: rows done of all, elapsed, ETA."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["sweep", *MODELS[:2], "--format", "csv"]) == 0
    err = capsys.readouterr().err
    assert "2/2" in err and "ETA" in err and "done:" in err
