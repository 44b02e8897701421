"""mkdocs hook: the pages generated from the code, so they cannot go stale, and links to the
repository's files.

``<!-- generated: cli -->`` becomes the command line reference, read from the argparse parsers
of every command in ``flopmeter.cli.COMMANDS``; ``<!-- generated: devices -->`` the device
tables, read through ``flopmeter``'s own device API. ``python docs/hooks/generated.py cli``
(or ``devices``) prints the Markdown.

A link from a page to a file of the repository outside docs/ (``[results](../benchmarks/results/x.md)``,
which works when the Markdown is read in the repository) points into the repository at
``repo_url`` when mkdocs.yml sets one, and is shown as the file's path otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

PLACEHOLDER = "<!-- generated: {} -->"
REPO_LINK = re.compile(r"\[([^\]]+)\]\(\.\./((?:benchmarks|src|tests|\.ci)/[^)\s]+)\)")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _option(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    names = ", ".join(f"`{o}`" for o in action.option_strings)
    if action.nargs == 0:
        return names
    if action.metavar:
        value = action.metavar
    elif action.choices:
        value = "{" + ",".join(str(c) for c in action.choices) + "}"
    else:
        value = action.dest.upper()
    return f"{names} `{value}`"


def _parser_markdown(name: str, parser: argparse.ArgumentParser, summary: str) -> list[str]:
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=76)
    formatter = parser._get_formatter()                    # argparse's own expansion of %(default)s
    lines = [f"## `flopmeter {name}`", "", _cell(summary[0].upper() + summary[1:]) + ".", "",
             "```text", parser.format_usage().strip(), "```", ""]
    if parser.description:
        lines += [_cell(parser.description), ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help is not argparse.SUPPRESS
                   and not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        title = group.title or "options"
        lines += [f"**{title[0].upper() + title[1:]}**", "", "| option | meaning |", "|---|---|"]
        for action in actions:
            lines.append(f"| {_option(action)} | {_cell(formatter._expand_help(action) if action.help else '')} |")
        lines.append("")
    if parser.epilog:
        lines += [_cell(parser.epilog), ""]
    return lines


def cli_reference() -> str:
    from flopmeter import cli
    lines = ["| command | what it does |", "|---|---|"]
    for name, (*_, summary) in cli.COMMANDS.items():
        lines.append(f"| [`flopmeter {name}`](#flopmeter-{name}) | {_cell(summary)} |")
    lines.append("")
    for name, (*_, summary) in cli.COMMANDS.items():
        make_parser, _ = cli.command(name)
        lines += _parser_markdown(name, make_parser(), summary)
    return "\n".join(lines)


def _device_api():
    """The device table (``flopmeter.devices``)."""
    return importlib.import_module("flopmeter.devices")


def _figure(value: float | None, scale: float) -> str:
    if value is None:
        return "—"
    text = format(round(value / scale, 6), ",")        # every digit of the table's figure, with separators
    return text.removesuffix(".0")


def devices_reference() -> str:
    api = _device_api()
    keys = api.DTYPE_KEYS
    head = ["device", *keys, "vector", "GB/s"]
    lines = ["Dense throughput in TFLOP/s (TOP/s for int8), bandwidth in GB/s; rows with memory only "
             "have no figures here:", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    specs = api.table()
    for spec in specs:
        if not spec.has_compute:
            lines.append("| " + " | ".join([spec.name, *("—" for _ in head[1:])]) + " |")
            continue
        row = [spec.name, *(_figure(spec.matrix.get(k), 1e12) for k in keys), _figure(spec.vector, 1e12),
               _figure(spec.bandwidth, 1e9)]
        lines.append("| " + " | ".join(row) + " |")
    reserve = api.default_reserve()
    lines += ["", "### Memory and links", "",
              f"`--fits NAME` budgets the usable memory: the total less a reserve of {reserve:,} bytes "
              f"({reserve / 2**30:g} GiB) unless `--reserve` says otherwise. "
              + _cell(api.usable_memory(specs[0]).reserve_note), "",
              "| device | memory | total bytes | usable bytes | compute capability | link (GB/s per direction) | "
              "PCIe (GB/s per direction) |", "|---|---|---:|---:|---|---|---:|"]
    for spec in specs:
        use = api.usable_memory(spec)
        cc = ".".join(map(str, spec.compute_capability)) if spec.compute_capability else "—"
        link = f"{spec.link} {_figure(spec.link_bandwidth, 1e9)}" if spec.link_bandwidth else "—"
        lines.append(f"| {spec.name} | {_cell(spec.memory_note or '')} | {use.total:,} | {use.usable:,} | {cc} | "
                     f"{link} | {_figure(spec.pcie_bandwidth, 1e9) if spec.pcie_bandwidth else '—'} |")
    lines += ["", "### Names and sources", "", "| device | also matches | source |", "|---|---|---|"]
    for spec in specs:
        source = f"[{_cell(spec.source)}]({spec.url})" if spec.url else _cell(spec.source)
        names = ", ".join(f"`{a}`" for a in spec.aliases) or "—"
        lines.append(f"| {spec.name} | {names} | {source} |")
    lines.append("")
    return "\n".join(lines)


GENERATORS = {"cli": cli_reference, "devices": devices_reference}


def repository_links(markdown: str, repo_url: str | None) -> str:
    if repo_url:
        return REPO_LINK.sub(lambda m: f"[{m[1]}]({repo_url.rstrip('/')}/blob/main/{m[2]})", markdown)
    return REPO_LINK.sub(lambda m: f"`{m[2]}`", markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = repository_links(markdown, config.get("repo_url"))
    for name, generate in GENERATORS.items():
        marker = PLACEHOLDER.format(name)
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown


if __name__ == "__main__":
    print(GENERATORS[sys.argv[1]]())
