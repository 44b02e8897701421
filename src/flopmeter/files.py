"""Writing the files a user names (``-o``, ``--save-trace``, a calibrated device spec, a sweep's rows).

What is at the path decides how it is written:

- a regular file, or nothing yet: a temporary file in the same folder, renamed over the path
  (``os.replace``), so a failed write leaves the old file or none; an existing file keeps its mode;
- a character device (``/dev/null``), a FIFO, or an open file descriptor (``-``, ``/dev/stdout``,
  ``/dev/fd/N``, ``/proc/self/fd/N``): written as a stream, and left what it was;
- a symlink: followed, and its target written by the rules above (the link stays);
- a directory, a block device, a socket, a missing folder: one :class:`InputError`.

Every ``OSError`` (a full device, a name over 255 bytes, no permission) is an :class:`InputError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import sys
import tempfile
from typing import BinaryIO, Callable, Union

from .errors import InputError

Content = Union[str, bytes, Callable[[BinaryIO], None]]

# a path that names an open descriptor of this process rather than a file in a folder
_FD_PATH = re.compile(r"/(?:proc/(?:self|thread-self|\d+)|dev)/fd/\d+|/dev/std(?:in|out|err)")


def _umask() -> int:
    mask = os.umask(0o022)     # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def _names_a_descriptor(path: str) -> bool:
    """Whether ``path``, or a symlink on the way from it, is ``/dev/stdout``, ``/dev/fd/N`` or ``/proc/self/fd/N``."""
    p = os.path.abspath(path)
    for _ in range(40):                 # the kernel's own limit on symlinks followed
        if _FD_PATH.fullmatch(p):
            return True
        try:
            link = os.readlink(p)
        except OSError:
            return False
        p = os.path.normpath(os.path.join(os.path.dirname(p), link))
    return False


def output_target(path: str | os.PathLike, *, hint: str | None = None, example: str = "report.json") -> tuple[str, str]:
    """``(how, where)``: ``how`` is ``"stream"`` (write ``where`` in place) or ``"file"`` (replace or
    create the regular file ``where``, the path with symlinks resolved). Raises InputError for a
    path that cannot be written."""
    text = os.fspath(path)
    hint = hint or "give a path in a folder you can write to"
    try:
        if _names_a_descriptor(text):
            return "stream", text
        try:
            st = os.stat(text)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is None:
            where = os.path.realpath(text)
            folder = os.path.dirname(where)
            if not os.path.isdir(folder):
                shown = folder if os.path.islink(text) else os.path.dirname(text) or "."
                what = "is not a folder" if os.path.exists(folder) else "does not exist"
                raise InputError(f"cannot write {text}: folder {shown} {what}", hint="give a path in an existing folder")
            return "file", where
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"cannot write {text}: it is a directory", hint=f"name a file, e.g. {os.path.join(text, example)}")
        if stat.S_ISREG(st.st_mode):
            return "file", os.path.realpath(text)
        if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            return "stream", text
        kind = "a block device" if stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a file"
        raise InputError(f"cannot write {text}: it is {kind}",
                         hint="name a regular file, a character device such as /dev/null, or a FIFO")
    except OSError as exc:          # a name over 255 bytes, a symlink loop, no permission to look
        raise InputError(f"cannot write {text}: {exc.strerror or exc}", hint=_hint_for(exc, hint)) from None


def _hint_for(exc: OSError, hint: str) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return "use a shorter name (each part of a path has at most 255 bytes)"
    if exc.errno == errno.ENOSPC:
        return "free some space, or write somewhere else"
    return hint


def _emit(f: BinaryIO, content: Content) -> None:
    if callable(content):
        content(f)
    else:
        f.write(content.encode() if isinstance(content, str) else content)


def write_file(path: str | os.PathLike, content: Content, *, hint: str | None = None,
               example: str = "report.json") -> str:
    """Write ``content`` (text, bytes, or a function given the open binary file) to ``path`` by the
    rules of this module (``-`` is standard output); returns where it was written."""
    text = os.fspath(path)
    if text == "-":
        write_stdout(content)
        return text
    how, where = output_target(text, hint=hint, example=example)
    try:
        if how == "stream":
            with open(where, "wb") as f:
                _emit(f, content)
        else:
            _replace(where, content)
    except OSError as exc:
        raise InputError(f"cannot write {text}: {exc.strerror or exc}",
                         hint=_hint_for(exc, hint or "give a path in a folder you can write to")) from None
    return where


def _replace(where: str, content: Content) -> None:
    """Write a temporary file beside ``where`` and rename it over ``where``."""
    try:
        old = os.stat(where)
    except FileNotFoundError:
        old = None
    folder, name = os.path.split(where)
    fd, tmp = tempfile.mkstemp(dir=folder or ".", prefix=f".{name[:64]}.")
    try:
        with os.fdopen(fd, "wb") as f:
            _emit(f, content)
        os.chmod(tmp, old.st_mode & 0o7777 if old else 0o666 & ~_umask())
        if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
            with contextlib.suppress(OSError):
                os.chown(tmp, old.st_uid, old.st_gid)        # a file replaced by root keeps its owner
        os.replace(tmp, where)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_stdout(content: Content) -> None:
    """Write to standard output and flush, so that a full device is one InputError here, not a
    traceback at exit. A reader that went away (``| head``) ends the output quietly."""
    try:
        if isinstance(content, str):
            sys.stdout.write(content)
            sys.stdout.flush()
        else:
            sys.stdout.flush()
            _emit(sys.stdout.buffer, content)
            sys.stdout.buffer.flush()
    except BrokenPipeError:
        # Python's documented way out: point stdout at devnull so the flush at exit finds nothing to write
        with contextlib.suppress(OSError, AttributeError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
    except OSError as exc:
        with contextlib.suppress(OSError, AttributeError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)       # what is still buffered cannot be written either
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        raise InputError(f"cannot write to standard output: {exc.strerror or exc}",
                         hint=_hint_for(exc, "redirect the output somewhere writable, or pass -o FILE")) from None


__all__ = ["output_target", "write_file", "write_stdout"]


def read_json(path, what: str, hint: str, *, read_hint: str | None = None):
    """The JSON value in the file at ``path``, for a file the user names (``what``: "a report",
    "a device spec"). Every way it can be unreadable is one InputError: no file, not UTF-8, not
    JSON, nested past Python's recursion limit, or a number JSON cannot carry (NaN, Infinity, one
    past Python's digit limit). ``read_hint`` is the hint when the file cannot be read at all."""
    import json
    from pathlib import Path

    def no_constant(name: str):
        raise ValueError(f"{name} is not a number")
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=no_constant)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", hint=read_hint or hint) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (byte {exc.start})", hint=hint) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not JSON: {exc}", hint=hint) from None
    except RecursionError:
        raise InputError(f"{path} is nested too deeply to be {what}", hint=hint) from None
    except ValueError as exc:
        raise InputError(f"{path} holds a number {what} cannot: {str(exc)[:80]}", hint=hint) from None
