"""Where ``-o`` and ``--save-trace`` write: a regular file (or a new path) is replaced atomically,
a character device, a FIFO or a file descriptor (``/dev/stdout``, ``/proc/self/fd/N``, ``-``) is
written as a stream and stays what it was, a symlink is followed (its target is replaced, the
link kept); a directory, an over-long name or a full device is one error line."""

import gzip
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flopmeter.cli import main
from flopmeter.files import write_file

DATA = Path(__file__).parent / "data"
SRC = Path(__file__).parent.parent / "src"
TINY = f"{DATA / 'tiny_model.py'}:build"
TINY_MACS = 1 * 8 * 16 * 16 * 3 * 3 * 3 + 1 * 512 * 10      # conv N·C_out·H·W·C_in·K·K + linear N·in·out


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error(code, err):
    lines = err.strip().splitlines()
    assert code == 2 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert len(lines) <= 2 and all(line.startswith(("error: ", "hint: ")) for line in lines), err
    return lines[0]


def device(tmp_path, name, minor):
    """A character device to write to: a copy of /dev/null (minor 3) or /dev/full (minor 7) made
    in tmp_path where this process may make device nodes (so that a wrong write never replaces
    the machine's own), else the machine's own node."""
    node = tmp_path / name
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, minor))
        with open(node, "wb"):
            pass
        return str(node)
    except OSError:
        return f"/dev/{name}"


class FifoReader(threading.Thread):
    """Reads a FIFO until its writer closes it (a daemon thread: one left waiting never blocks exit)."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.data = path, None
        self.start()

    def run(self):
        with open(self.path, "rb") as f:
            self.data = f.read()


def no_temporary_files(folder: Path):
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


# -- FIFOs, devices, file descriptors: written as streams ------------------------------------

def test_dash_o_to_a_fifo_writes_through(capsys, tmp_path):
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    code, out, err = run(capsys, TINY, "-o", str(fifo))
    reader.join(timeout=30)
    assert code == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)                      # still the FIFO
    assert json.loads(reader.data)["totals"]["macs"] == TINY_MACS
    no_temporary_files(tmp_path)


def test_save_trace_to_a_fifo_writes_through(capsys, tmp_path):
    from flopmeter.trace.io import trace_from_dict

    fifo = tmp_path / "run.fmtrace"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    code, _, err = run(capsys, TINY, "--save-trace", str(fifo))
    reader.join(timeout=30)
    assert code == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    trace = trace_from_dict(json.loads(gzip.decompress(reader.data)))
    assert any(e.op.startswith("aten.convolution") for e in trace.events)


def test_dash_o_to_a_character_device_stays_a_device(capsys, tmp_path):
    null = device(tmp_path, "null", 3)
    code, out, err = run(capsys, TINY, "--format", "json", "-o", null)
    assert code == 0 and out == "", err
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    link = tmp_path / "run.fmtrace"
    link.symlink_to(null)
    code, _, err = run(capsys, TINY, "--save-trace", str(link))
    assert code == 0, err
    assert link.is_symlink() and stat.S_ISCHR(os.stat(link).st_mode) and stat.S_ISCHR(os.lstat(null).st_mode)
    no_temporary_files(tmp_path)


def test_dash_o_to_a_pipe_through_its_proc_fd_link(capsys, tmp_path):
    """A symlink to /proc/self/fd/N (which is what /dev/stdout is) writes into that descriptor."""
    r, w = os.pipe()
    try:
        link = tmp_path / "out.csv"
        link.symlink_to(f"/proc/self/fd/{w}")
        code, out, err = run(capsys, TINY, "--view", "ops", "-o", str(link))
        os.close(w)
        w = None
        with os.fdopen(r, "rb") as f:
            r, text = None, f.read().decode()
        assert code == 0 and out == "", err
        assert link.is_symlink()
        assert "aten.convolution" in text and text.splitlines()[0].startswith("module,op,")
    finally:
        for fd in (r, w):
            if fd is not None:
                os.close(fd)


def test_dash_o_dash_is_standard_output(capsys):
    code, out, err = run(capsys, TINY, "-o", "-")
    assert code == 0, err
    assert "Conv2d" in out and not Path("-").exists()


def test_dash_o_dev_stdout_prints(tmp_path):
    """/dev/stdout is a symlink to /proc/self/fd/1; the test writes through a link of its own made
    the same way, so that a wrong write replaces the test's link, never the machine's /dev/stdout."""
    stdout = tmp_path / "stdout"
    stdout.symlink_to("/proc/self/fd/1")
    proc = subprocess.run([sys.executable, "-m", "flopmeter", TINY, "--format", "json", "-o", str(stdout)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["totals"]["macs"] == TINY_MACS
    assert stdout.is_symlink()


# -- regular files and symlinks to them: replaced atomically, the link kept ------------------

def test_dash_o_through_a_symlink_replaces_the_target_and_keeps_the_link(capsys, tmp_path):
    real = tmp_path / "real" / "report.json"
    real.parent.mkdir()
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "report.json"
    link.symlink_to(real)
    code, _, err = run(capsys, TINY, "-o", str(link))
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads(real.read_text())["totals"]["macs"] == TINY_MACS
    assert real.stat().st_mode & 0o777 == 0o640
    no_temporary_files(tmp_path)
    no_temporary_files(real.parent)


def test_dash_o_through_a_dangling_symlink_creates_its_target(capsys, tmp_path):
    real = tmp_path / "made.json"
    link = tmp_path / "link.json"
    link.symlink_to(real)
    code, _, err = run(capsys, TINY, "-o", str(link))
    assert code == 0, err
    assert link.is_symlink() and json.loads(real.read_text())["totals"]["macs"] == TINY_MACS


def test_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")

    def fail(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(Exception, match="No space left on device"):
        write_file(target, fail)
    assert target.read_text() == "old"
    no_temporary_files(tmp_path)


# -- targets that cannot be written: one error line -------------------------------------------

@pytest.mark.parametrize("option, name", [("-o", "report.json"), ("--save-trace", "run.fmtrace")])
def test_a_directory_or_a_link_to_one_is_one_error_line(capsys, tmp_path, option, name):
    folder = tmp_path / name
    folder.mkdir()
    link = tmp_path / f"link-{name}"
    link.symlink_to(folder)
    for target in (folder, link):
        code, out, err = run(capsys, TINY, "--format", "json", option, str(target))
        assert "is a directory" in one_error(code, err)
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("option, suffix", [("-o", ".json"), ("--save-trace", ".fmtrace")])
def test_a_name_over_255_bytes_is_one_error_line(capsys, tmp_path, option, suffix):
    long = tmp_path / ("x" * 300 + suffix)
    code, out, err = run(capsys, TINY, option, str(long))
    assert "File name too long" in one_error(code, err)
    deep = tmp_path / ("y" * 300) / ("report" + suffix)
    code, out, err = run(capsys, TINY, option, str(deep))
    assert "File name too long" in one_error(code, err)


def test_a_name_of_255_bytes_is_written(capsys, tmp_path):
    target = tmp_path / ("z" * 250 + ".json")
    code, _, err = run(capsys, TINY, "-o", str(target))
    assert code == 0, err
    assert json.loads(target.read_text())["totals"]["macs"] == TINY_MACS
    no_temporary_files(tmp_path)


def test_a_full_device_as_dash_o_is_one_error_line(capsys, tmp_path):
    full = device(tmp_path, "full", 7)
    code, out, err = run(capsys, TINY, "--format", "json", "-o", full)
    assert "No space left on device" in one_error(code, err)
    assert stat.S_ISCHR(os.lstat(full).st_mode)


def test_standard_output_on_a_full_device_is_one_error_line(tmp_path):
    full = device(tmp_path, "full", 7)
    with open(full, "w") as stdout:
        proc = subprocess.run([sys.executable, "-m", "flopmeter", TINY], stdout=stdout, stderr=subprocess.PIPE,
                              text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert "No space left on device" in one_error(proc.returncode, proc.stderr)
    assert "standard output" in proc.stderr
