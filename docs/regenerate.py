"""Run every example of the README and the docs, and rewrite the outputs they show.

    python docs/regenerate.py                 rewrite the shown outputs of every page from real runs
    python docs/regenerate.py --check         exit 1 (and show a diff) where a shown output is stale
    python docs/regenerate.py docs/fit.md     only these pages
    python docs/regenerate.py --zoo           also the slow examples (marked ``zoo``)
    python docs/regenerate.py --timings       also rewrite the timings shown (run it on a quiet machine)
    python docs/regenerate.py --check --times how long each example took
    python docs/regenerate.py --check --subprocess   each command as `python -m flopmeter` of its own

What runs (``tests/test_docs_examples.py`` runs the same, and checks the shown outputs are current):

* A ```` ```console ```` block holds ``$ flopmeter …`` lines, each followed by what it prints
  (standard output and standard error, as a terminal shows them). Each command runs the CLI's
  ``main(argv)``; ``VAR=value`` words before ``flopmeter`` set environment variables for it.
* A ```` ```python ```` block is executed; the blocks of one page share one namespace and run in
  order. What a block prints goes into the ```` ```text title="Output" ```` block right after it.
  A block with a file name as title (```` ```python title="model.py" ````, or a
  ```` ```json title="tiny/config.json" ```` block) is written to that file instead (its folders
  made), for the examples after it.
* Every page runs in a fresh temporary folder, so files an example writes are seen by the
  examples after it on the same page and by no other page. All pages run in one process (one
  PyTorch import), started by the test or by this script.
* ``<!-- example: … -->`` on the line before a block changes how it runs: ``skip REASON`` (not
  run; say why); ``varies`` (timings: run, output not compared, rewritten only with
  ``--timings``); ``exit=N`` (the exit status of the block's last command, default 0);
  ``lines=1-8,12,$`` (show only these output lines, ``$`` the last; ``…`` for the rest); ``zoo`` (slow: only
  with ``--zoo`` or ``pytest -m zoo``).
* ```` ```bash ```` blocks are installation steps and are not run; any other block is text.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<info>[^`]*)$")
MARKER = re.compile(r"^\s*<!--\s*example:\s*(?P<body>.*?)\s*-->\s*$")
TITLE = re.compile(r'title="(?P<title>[^"]*)"')
TORCH_VERSION = re.compile(r"torch \d+\.\d+(\.\d+)?\S*")
EXECUTED = ("python", "console")
WRITTEN = ("python", "json")       # a block of these with a title is written to the file it names
SUBPROCESS = False                 # --subprocess: each command in a process of its own (slow; a cross-check)


# Pages whose code blocks are fragments (they name a model or a logger the reader has), kept by
# their own authors: not run until they are written as complete examples.
NOT_RUN = ()


def pages(every: bool = False) -> list[Path]:
    """README.md and the Markdown pages under docs/ (``every``: NOT_RUN ones too)."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return found if every else [p for p in found if str(p.relative_to(ROOT)) not in NOT_RUN]


@dataclass
class Block:
    page: Path
    start: int                    # index of the opening fence line
    end: int                      # index of the closing fence line
    indent: str
    lang: str
    title: str | None
    body: list[str]
    marker: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.start + 1}"


def parse_marker(text: str) -> dict[str, str]:
    if text.startswith("skip"):
        return {"skip": text[4:].strip() or "no reason given"}
    out = {}
    for word in text.split():
        key, _, value = word.partition("=")
        out[key] = value
    return out


def blocks(page: Path, lines: list[str] | None = None) -> list[Block]:
    """The fenced code blocks of a page, with the example marker before each."""
    lines = page.read_text().split("\n") if lines is None else lines
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != indent + fence:
            j += 1
        if j == len(lines):
            raise ValueError(f"{page}:{i + 1}: code block never closed")
        lang = info.split()[0] if info else ""
        title = TITLE.search(info)
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[i + 1:j]]
        block = Block(page, i, j, indent, lang, title["title"] if title else None, body)
        k = i - 1
        if k >= 0 and (mm := MARKER.match(lines[k])):
            block.marker = parse_marker(mm["body"])
        found.append(block)
        i = j + 1
    return found


def is_file(block: Block) -> bool:
    """A block written to the file its title names, not run."""
    return block.lang in WRITTEN and block.title is not None


def output_block(all_blocks: list[Block], index: int, lines: list[str]) -> Block | None:
    """The ```text title="Output"``` block right after a python block (blank lines between)."""
    if index + 1 >= len(all_blocks):
        return None
    nxt, here = all_blocks[index + 1], all_blocks[index]
    between = lines[here.end + 1:nxt.start]
    if nxt.lang == "text" and nxt.title == "Output" and all(not s.strip() for s in between):
        return nxt
    return None


def commands(block: Block) -> list[tuple[str, list[str]]]:
    """(command line, shown output lines) of each ``$ `` line of a console block."""
    out: list[tuple[str, list[str]]] = []
    for line in block.body:
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"{block.where}: a console block starts with a '$ ' line")
    return out


def select(text: str, spec: str | None) -> list[str]:
    """The output lines shown: all, or those of ``lines=1-8,12,$`` (``$``: the last) with ``…`` where
    lines are left out."""
    lines = text.rstrip("\n").split("\n") if text.strip() else []
    lines = [line.rstrip() for line in lines]
    if not spec or not lines:
        return lines
    keep: list[int] = []
    for part in spec.split(","):
        if part == "$":                                   # the last line
            keep.append(len(lines))
            continue
        a, _, b = part.partition("-")
        lo = int(a)
        hi = len(lines) if _ and not b else int(b) if b else lo
        keep += range(lo, min(hi, len(lines)) + 1)
    shown, last = [], 0
    for n in sorted(n for n in set(keep) if 1 <= n <= len(lines)):
        if n != last + 1:
            shown.append("…")
        shown.append(lines[n - 1])
        last = n
    if last < len(lines):
        shown.append("…")
    return shown


def normalise(lines: list[str]) -> list[str]:
    """What a comparison ignores: the torch version in a header, trailing spaces."""
    return [TORCH_VERSION.sub("torch X", line).rstrip() for line in lines]


# -- running (in one worker process) ----------------------------------------------------------------

def run_command(line: str) -> tuple[int, str]:
    """Run one ``flopmeter …`` line through the CLI's main(argv); (exit status, what it printed)."""
    from flopmeter.cli import main
    words = shlex.split(line)
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if not words or words[0] != "flopmeter":
        raise ValueError(f"an example command runs flopmeter, not: {line}")
    if SUBPROCESS:                 # the installed command line itself, one process per command
        done = subprocess.run([sys.executable, "-m", "flopmeter", *words[1:]], check=False, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})
        return done.returncode, done.stdout
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                status = main(words[1:])
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return status, buf.getvalue()


def run_page(page: Path, zoo: bool) -> list[dict]:
    """Run a page's examples in a fresh folder; one result per executed block."""
    lines = page.read_text().split("\n")
    found = blocks(page, lines)
    results: list[dict] = []
    namespace: dict = {"__name__": "__main__"}
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="flopmeter-docs-") as folder:
        os.chdir(folder)
        try:
            for i, block in enumerate(found):
                if (block.lang not in EXECUTED and not is_file(block)) or "skip" in block.marker \
                        or ("zoo" in block.marker and not zoo):
                    continue
                result = {"start": block.start, "lang": block.lang, "outputs": [], "error": None}
                results.append(result)
                started = time.perf_counter()
                try:
                    if is_file(block):
                        Path(block.title).parent.mkdir(parents=True, exist_ok=True)
                        Path(block.title).write_text("\n".join(block.body) + "\n")
                    elif block.lang == "python":
                        buf = io.StringIO()
                        code = compile("\n".join(block.body) + "\n", block.where, "exec")
                        with contextlib.redirect_stdout(buf):
                            exec(code, namespace)  # noqa: S102 -- running the page's own examples is the point
                        result["outputs"].append({"status": 0, "text": buf.getvalue()})
                    else:
                        for line, _ in commands(block):
                            status, text = run_command(line)
                            result["outputs"].append({"status": status, "text": text})
                except Exception:  # noqa: BLE001 -- any failure of an example is reported as its result
                    result["error"] = traceback.format_exc(limit=-3)
                result["seconds"] = round(time.perf_counter() - started, 2)
        finally:
            os.chdir(here)
    return results


def run_pages(paths: list[Path], zoo: bool = False, subprocess_each: bool = False) -> dict[str, list[dict]]:
    """Run the pages in a worker process (one PyTorch import for all of them)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *(["--zoo"] if zoo else []),
           *(["--subprocess"] if subprocess_each else []), *(str(p) for p in paths)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"the examples' worker failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.split("\n@@results@@\n", 1)[1])


# -- comparing and rewriting -------------------------------------------------------------------------

def expected_status(block: Block, index: int, count: int) -> int:
    """``exit=N`` is the status of a block's last command; the others exit 0."""
    return int(block.marker.get("exit", "0") or 0) if index == count - 1 else 0


def check_page(page: Path, results: list[dict]) -> list[str]:
    """Problems of one page: failures, unexpected exit statuses, outputs that are not current."""
    lines = page.read_text().split("\n")
    all_blocks = blocks(page, lines)
    found = {b.start: (i, b) for i, b in enumerate(all_blocks)}
    problems = []
    for result in results:
        i, block = found[result["start"]]
        if result["error"]:
            problems.append(f"{block.where}: the example raised\n{result['error']}")
            continue
        if is_file(block):
            continue
        if block.lang == "python":
            out = output_block(all_blocks, i, lines)
            actual = select(result["outputs"][0]["text"], block.marker.get("lines"))
            shown = out.body if out else []
            if not actual and out is None:
                continue
            if out is None:
                problems.append(f"{block.where}: prints output but no ```text title=\"Output\"``` block shows it")
            elif "varies" not in block.marker and normalise(shown) != normalise(actual):
                problems.append(f"{block.where}: shown output is stale\n" + _diff(shown, actual))
            continue
        listed = commands(block)
        for k, ((line, shown), output) in enumerate(zip(listed, result["outputs"])):
            expected = expected_status(block, k, len(listed))
            if output["status"] != expected:
                problems.append(f"{block.where}: '$ {line}' exited {output['status']}, expected "
                                f"{expected}\n{output['text'][-2000:]}")
            elif "varies" not in block.marker:
                actual = select(output["text"], block.marker.get("lines"))
                if normalise(shown) != normalise(actual):
                    problems.append(f"{block.where}: shown output of '$ {line}' is stale\n" + _diff(shown, actual))
    return problems


def _diff(shown: list[str], actual: list[str]) -> str:
    return "\n".join(difflib.unified_diff(normalise(shown), normalise(actual), "shown", "actual", lineterm=""))


def rewrite_page(page: Path, results: list[dict], timings: bool = False) -> bool:
    """Write the outputs of real runs into the page; True when it changed. The outputs of
    ``varies`` blocks (timings) are written only when they are empty or with ``timings``, so
    they come from a run on a quiet machine rather than from every regeneration."""
    lines = page.read_text().split("\n")
    all_blocks = blocks(page, lines)
    by_start = {r["start"]: r for r in results}
    edits: list[tuple[int, int, list[str]]] = []        # (from, to) line range replaced by new lines
    printed: list[str] = []                             # every output line written
    for i, block in enumerate(all_blocks):
        result = by_start.get(block.start)
        if result is None or result["error"] or is_file(block):
            continue
        pad = block.indent
        out = output_block(all_blocks, i, lines) if block.lang == "python" else None
        shown = out.body if out else [] if block.lang == "python" else [s for _, o in commands(block) for s in o]
        if "varies" in block.marker and not timings and any(s.strip() for s in shown):
            continue
        if block.lang == "python":
            actual = select(result["outputs"][0]["text"], block.marker.get("lines"))
            printed += actual
            if out is not None:
                edits.append((out.start + 1, out.end, [pad + s if s else s for s in actual]))
            elif actual:
                new = ["", f'{pad}```text title="Output"', *[pad + s if s else s for s in actual], f"{pad}```"]
                edits.append((block.end + 1, block.end + 1, new))
            continue
        body = []
        for (line, _), output in zip(commands(block), result["outputs"]):
            shown_output = select(output["text"], block.marker.get("lines"))
            printed += shown_output
            body += [f"$ {line}", *shown_output]
        edits.append((block.start + 1, block.end, [pad + s if s else s for s in body]))
    if any(FENCE.match(s) for s in printed):
        raise ValueError(f"{page}: an example printed a ``` line, which would end its block; show another format")
    new_lines = list(lines)
    for lo, hi, new in sorted(edits, reverse=True):
        new_lines[lo:hi] = new
    if new_lines != lines:
        page.write_text("\n".join(new_lines))
        return True
    return False


def main(argv: list[str]) -> int:
    zoo = "--zoo" in argv
    paths = [Path(a).resolve() for a in argv if not a.startswith("--")] or pages()
    if "--worker" in argv:
        global SUBPROCESS
        SUBPROCESS = "--subprocess" in argv
        os.environ.setdefault("COLUMNS", "120")
        results = {str(p): run_page(p, zoo) for p in paths}
        print("\n@@results@@\n" + json.dumps(results))
        return 0
    results = run_pages(paths, zoo, subprocess_each="--subprocess" in argv)
    failed = False
    for path in paths:
        page_results = results[str(path)]
        problems = check_page(path, page_results)
        if "--check" not in argv:
            problems = [p for p in problems if "stale" not in p]
            if rewrite_page(path, page_results, timings="--timings" in argv):
                print(f"rewrote {path.relative_to(ROOT)}")
        if "--times" in argv:
            for r in page_results:
                print(f"{r['seconds']:6.2f} s  {path.relative_to(ROOT)}:{r['start'] + 1}")
        for problem in problems:
            failed = True
            print(problem, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
