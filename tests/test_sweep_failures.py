"""``flopmeter sweep`` when things go wrong: a worker process that dies, a row file cut mid-line,
SIGTERM and SIGKILL of the sweep, two sweeps on one file, row and model files that are not what
they should be. Processes are synchronised through files (a builder waits for a gate file; the
test waits for rows and build-log lines), never through sleeps; every wait has a deadline."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flopmeter.bench.sweep import RowWriter, read_rows
from flopmeter.cli import main

DATA = Path(__file__).parent / "data"
SRC = Path(__file__).parent.parent / "src"
FILE = DATA / "sweep_models.py"
MODELS = [f"{FILE}:{name}" for name in ("tiny_a", "tiny_b", "tiny_c", "tiny_d")]
WIDTHS = dict(zip(MODELS, (4, 8, 16, 32)))
DIES, SEGFAULT = f"{FILE}:dies", f"{FILE}:segfault"


def macs(width: int, size: int = 16, n: int = 2) -> int:
    """Conv2d(3, width, 3, padding=1) N·C_out·H·W·C_in·K·K + Linear(width, 10) N·I·O."""
    return n * width * size * size * 3 * 3 * 3 + n * width * 10


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error(code, err):
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and all(line.startswith(("error: ", "hint: ", "note: ")) for line in lines), err
    return errors[0]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for(condition, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- a worker that dies ----------------------------------------------------------------------

def test_a_dying_worker_fails_only_its_own_row(capsys, tmp_path):
    out = tmp_path / "rows.jsonl"
    code, _, err = run(capsys, "sweep", *MODELS, DIES, SEGFAULT, "-o", str(out), "--jobs", "2", "--no-progress",
                       "--format", "csv")
    assert code == 0, err
    rows = {r["model"]: r for r in read_rows(out, "jsonl")}
    assert sorted(rows) == sorted([*MODELS, DIES, SEGFAULT])
    for model, width in WIDTHS.items():
        assert rows[model]["error"] is None and rows[model]["macs"] == macs(width)
    assert "exited with status 3" in rows[DIES]["error"] and rows[DIES]["macs"] is None
    assert "SIGSEGV" in rows[SEGFAULT]["error"] and rows[SEGFAULT]["macs"] is None
    assert "6 rows" in err and "2 failed" in err

    # --resume skips every row in the file, failed ones included, and says how to retry those
    code, _, err = run(capsys, "sweep", *MODELS, DIES, SEGFAULT, "-o", str(out), "--jobs", "2", "--no-progress",
                       "--resume", "--format", "csv")
    assert code == 0, err
    assert "6 of 6 rows are already in" in err and "2 failed" in err and "--retry-failed" in err
    assert len(lines(out)) == 6
    # --resume --retry-failed runs exactly the failed rows again
    code, _, err = run(capsys, "sweep", *MODELS, DIES, SEGFAULT, "-o", str(out), "--jobs", "2", "--no-progress",
                       "--resume", "--retry-failed", "--format", "csv")
    assert code == 0, err
    again = [json.loads(line) for line in lines(out)[6:]]
    assert sorted(r["model"] for r in again) == sorted([DIES, SEGFAULT]) and all(r["error"] for r in again)


# -- a row file cut mid-line -----------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("cut", [1, 12], ids=["newline-only", "mid-row"])
def test_resume_redoes_a_torn_last_row(capsys, tmp_path, fmt, cut):
    """A last line without its newline was cut off mid-write: --resume drops it and counts that row again."""
    out = tmp_path / f"rows.{fmt}"
    assert run(capsys, "sweep", *MODELS[:3], "-o", str(out), "--no-progress", "--format", "csv")[0] == 0
    whole = out.read_bytes()
    out.write_bytes(whole[:-cut])
    code, _, err = run(capsys, "sweep", *MODELS[:3], "-o", str(out), "--no-progress", "--resume", "--format", "csv")
    assert code == 0, err
    assert "2 of 3 rows are already in" in err
    rows = read_rows(out, fmt)
    assert sorted(r["model"] for r in rows) == sorted(MODELS[:3])          # every row once, none lost
    assert all(int(r["macs"]) == macs(WIDTHS[r["model"]]) for r in rows)
    assert out.read_bytes().endswith(b"\n")


def test_read_rows_leaves_out_a_torn_csv_row(tmp_path):
    out = tmp_path / "rows.csv"
    w = RowWriter(out, "csv", append=False)
    w.write({"model": "a", "size": "", "batch": None, "macs": 1})
    w.close()
    with open(out, "a") as f:
        f.write("b,")                                      # killed mid-write
    assert [r["model"] for r in read_rows(out, "csv")] == ["a"]


# -- SIGTERM and SIGKILL of the sweep --------------------------------------------------------

def _processes() -> dict[int, tuple[int, str, str]]:
    """pid → (parent pid, state, start time) of every process, read from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), fields[0], fields[19])
    return table


def _descendants(root: int) -> dict[int, str]:
    """pid → start time of every process below ``root``."""
    table = _processes()
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, start) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = start
                frontier.append(pid)
    return found


def _alive(procs: dict[int, str]) -> list[int]:
    """Those of ``procs`` still running (a zombie waiting to be reaped has ended)."""
    table = _processes()
    return [pid for pid, start in procs.items() if pid in table and table[pid][2] == start and table[pid][1] != "Z"]


def _busy_sweep(tmp_path):
    """A sweep with --jobs 2 whose first two rows are done and whose two workers are each inside a
    build that waits for a gate file that is never made."""
    out, log = tmp_path / "rows.jsonl", tmp_path / "built.log"
    env = dict(os.environ, PYTHONPATH=str(SRC), FLOPMETER_TEST_BUILD_LOG=str(log),
               FLOPMETER_TEST_GATED="tiny_c,tiny_d", FLOPMETER_TEST_BUILD_GATE=str(tmp_path / "never"))
    env.pop("FLOPMETER_TEST_BUILD_SLEEP", None)
    proc = subprocess.Popen([sys.executable, "-m", "flopmeter", "sweep", *MODELS, "-o", str(out), "--jobs", "2",
                             "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    wait_for(lambda: proc.poll() is not None or (len(lines(out)) == 2 and len(lines(log)) == 4),
             "two rows done and two builds waiting")
    assert proc.poll() is None, proc.communicate()
    children = _descendants(proc.pid)
    assert len(children) >= 3                   # the fork server, the resource tracker, two workers
    return proc, out, children


def _end(children):
    for pid in _alive(children):                # whatever the test left behind
        os.kill(pid, signal.SIGKILL)


def test_sigterm_stops_the_workers_and_keeps_finished_rows(tmp_path):
    proc, out, children = _busy_sweep(tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "interrupted: finished rows are in" in err and "--resume" in err and "Traceback" not in err
        assert len(lines(out)) == 2 and all(json.loads(line)["error"] is None for line in lines(out))
        wait_for(lambda: not _alive(children), "the sweep's processes to end", timeout=10)
    finally:
        _end(children)


def test_sigkill_of_the_sweep_ends_its_workers(tmp_path):
    proc, out, children = _busy_sweep(tmp_path)
    try:
        proc.kill()
        proc.communicate(timeout=60)
        wait_for(lambda: not _alive(children), "the sweep's processes to end", timeout=10)
        assert len(lines(out)) == 2
    finally:
        _end(children)


# -- two sweeps on one file ------------------------------------------------------------------

@pytest.mark.parametrize("resume", [False, True])
def test_a_second_sweep_on_the_same_file_is_refused(capsys, tmp_path, resume):
    out = tmp_path / "rows.jsonl"
    first = RowWriter(out, "jsonl", append=False)           # a sweep that is still writing
    try:
        first.write({"model": "a", "size": "", "batch": None, "error": None})
        code, _, err = run(capsys, "sweep", MODELS[0], "-o", str(out), "--no-progress",
                           *(["--resume"] if resume else []))
        assert "another sweep is writing" in one_error(code, err)
    finally:
        first.close()
    assert [json.loads(line)["model"] for line in lines(out)] == ["a"]    # the first sweep's file untouched
    code, _, err = run(capsys, "sweep", MODELS[0], "-o", str(out), "--no-progress", "--resume")
    assert code == 0, err                                                 # once it is done, the file is free


# -- row files and model files that are not what they should be ------------------------------

@pytest.mark.parametrize("line, message", [
    ("[1, 2]", "line 2 is not a sweep row"),
    ('"text"', "line 2 is not a sweep row"),
    ("{}", "line 2 is not a sweep row"),
    ('{"size": "", "batch": null}', "line 2 is not a sweep row"),
    ("not json", "line 2 is not JSON"),
    ("[" * 100_000, "line 2 is not JSON"),
])
def test_a_row_file_line_that_is_not_a_row_is_one_error_line(capsys, tmp_path, line, message):
    out = tmp_path / "rows.jsonl"
    good = json.dumps({"model": MODELS[0], "size": "", "batch": None, "macs": macs(4), "error": None})
    out.write_text(f"{good}\n{line}\n")
    code, _, err = run(capsys, "sweep", *MODELS[:2], "-o", str(out), "--no-progress", "--resume")
    assert message in one_error(code, err)
    assert out.read_text() == f"{good}\n{line}\n"                      # left as it was


def test_row_files_with_invalid_utf8_or_foreign_columns_are_one_error_line(capsys, tmp_path):
    out = tmp_path / "rows.jsonl"
    out.write_bytes(b'{"model": "\xff"}\n')
    code, _, err = run(capsys, "sweep", MODELS[0], "-o", str(out), "--no-progress", "--resume")
    assert "UTF-8" in one_error(code, err)
    csv = tmp_path / "rows.csv"
    csv.write_text("name,value\nx,1\n")
    code, _, err = run(capsys, "sweep", MODELS[0], "-o", str(csv), "--no-progress", "--resume")
    assert "not the columns of a sweep" in one_error(code, err)


def test_a_models_file_with_invalid_utf8_is_one_error_line(capsys, tmp_path):
    models = tmp_path / "models.txt"
    models.write_bytes(MODELS[0].encode() + b"\n\xff\xfe\n")
    code, _, err = run(capsys, "sweep", "--models-file", str(models), "--no-progress")
    assert "UTF-8" in one_error(code, err)


@pytest.mark.parametrize("resume", [False, True])
def test_dash_o_a_directory_named_jsonl_is_one_error_line(capsys, tmp_path, resume):
    folder = tmp_path / "x.jsonl"
    folder.mkdir()
    code, _, err = run(capsys, "sweep", MODELS[0], "-o", str(folder), "--no-progress", *(["--resume"] if resume else []))
    assert "is a directory" in one_error(code, err)


def test_rows_to_a_character_device_are_streamed(capsys, tmp_path):
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        open(node, "wb").close()
    except OSError:
        node = Path("/dev/null")
    link = tmp_path / "rows.jsonl"
    link.symlink_to(node)
    code, _, err = run(capsys, "sweep", MODELS[0], "-o", str(link), "--no-progress", "--format", "csv")
    assert code == 0, err
    assert stat.S_ISCHR(os.stat(link).st_mode) and link.is_symlink()
    code, _, err = run(capsys, "sweep", MODELS[0], "-o", str(link), "--no-progress", "--resume")
    assert "--resume needs" in one_error(code, err)
