"""Every example in README.md and docs/ runs, and the outputs the pages show are what it prints.

All pages run in one worker process (``docs/regenerate.py --worker``: one PyTorch import);
``python docs/regenerate.py`` rewrites the shown outputs after a deliberate change. Examples
marked ``zoo`` run only with ``-m zoo``.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("docs_regenerate", ROOT / "docs" / "regenerate.py")
regenerate = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = regenerate          # dataclasses look their module up there
_spec.loader.exec_module(regenerate)

PAGES = regenerate.pages()
INSTALL_WORDS = ("pip", "eval", "#")


@pytest.fixture(scope="module")
def results():
    return regenerate.run_pages(PAGES)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run_and_shown_outputs_are_current(page, results):
    problems = regenerate.check_page(page, results[str(page)])
    assert not problems, "\n\n".join(problems) + "\n\nafter checking the change: python docs/regenerate.py"


@pytest.mark.zoo
def test_slow_examples_run():
    slow = [p for p in PAGES if any("zoo" in b.marker for b in regenerate.blocks(p))]
    found = regenerate.run_pages(slow, zoo=True)
    problems = [q for p in slow for q in regenerate.check_page(p, found[str(p)])]
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("page", regenerate.pages(every=True), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_command_hides_in_an_unexecuted_block(page):
    """A command line shown in a ```text or ```bash block would never run: commands go in
    ```console blocks; ```bash blocks hold installation steps only."""
    for block in regenerate.blocks(page):
        if block.lang in ("bash", "sh", "shell"):
            for line in block.body:
                words = line.split()
                assert not words or words[0].startswith(INSTALL_WORDS) or words[0] == "&&", \
                    f"{block.where}: '{line}' is not an installation step; show it in a ```console block"
        elif block.lang != "console":
            assert not any(re.match(r"^\$ ", line) for line in block.body), \
                f"{block.where}: '$ ' lines belong in a ```console block, where they run"
        if "skip" in block.marker:
            assert block.marker["skip"] != "no reason given", f"{block.where}: say why it is skipped"


def test_readme_is_short_and_keeps_the_ci_markers():
    text = (ROOT / "README.md").read_text()
    assert len(text.split("\n")) <= 200
    for marker in ("<!-- main-command -->", "<!-- test-command -->"):
        after = text.split(marker, 1)[1].lstrip("\n")
        assert after.startswith("```bash\n"), f"{marker} must be followed by its ```bash block"


def test_readme_links_point_at_files_that_exist():
    """The README is read in the repository, outside the site's link check."""
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def _hook():
    spec = importlib.util.spec_from_file_location("docs_hook", ROOT / "docs" / "hooks" / "generated.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    return hook


def test_generated_reference_pages_cover_every_command_option_and_device():
    """The CLI reference and the device table are built from the code when the site is built."""
    from flopmeter.devices import table
    from flopmeter.cli import COMMANDS, command

    hook = _hook()
    cli_page = (ROOT / "docs" / "cli.md").read_text()
    assert "<!-- generated: cli -->" in cli_page
    cli = hook.on_page_markdown(cli_page, None, {}, None)
    for name in COMMANDS:
        parser = command(name)[0]()
        assert f"## `flopmeter {name}`" in cli
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            for option in action.option_strings:
                assert f"`{option}`" in cli, f"flopmeter {name} {option} is missing from the CLI reference"
    devices = hook.on_page_markdown((ROOT / "docs" / "devices.md").read_text(), None, {}, None)
    for spec in table():
        assert f"| {spec.name} |" in devices and spec.url in devices
