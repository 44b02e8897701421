"""File size and time to first render in headless Chromium of the HTML report of a large model,
for the chart approaches considered: flopmeter's hand-made SVG + JavaScript (what ships) and a
plotly treemap with plotly.js inlined (measured when plotly is installed; not a dependency).

The model: ``--blocks`` blocks of Linear → ReLU → LayerNorm → Linear in a Sequential, i.e.
1 + 5·blocks modules (400 blocks: 2,001 modules). Each page is opened ``--repeat`` times in
turn in one Chromium; "first render" is the page's own clock (``performance.now()``) when
the treemap's SVG is in the document, which counts parsing the file and running its script.

    python benchmarks/html_report.py                  # 400 blocks (2,001 modules), 5 rounds
    python benchmarks/html_report.py --blocks 40 --repeat 3

Needs chromium on PATH (or FLOPMETER_CHROMIUM) and the playwright package (test extra).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import torch
from torch import nn

import flopmeter
from flopmeter.render.html import flatten_modules, report_html


def big_model(blocks: int) -> nn.Module:
    return nn.Sequential(*(nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.LayerNorm(256), nn.Linear(256, 64))
                           for _ in range(blocks)))


def plotly_page(report) -> str | None:
    try:
        import plotly.graph_objects as go
    except ImportError:
        return None
    _, rows = flatten_modules(report.to_dict(ops=False)["modules"])
    ids = [r[0] or "(root)" for r in rows]
    parents = ["" if r[2] < 0 else ids[r[2]] for r in rows]
    fig = go.Figure(go.Treemap(ids=ids, labels=[i.rsplit(".", 1)[-1] for i in ids], parents=parents,
                               values=[r[4] for r in rows], branchvalues="total", maxdepth=3))
    return fig.to_html(include_plotlyjs=True, full_html=True)


PROBES = {  # JavaScript that is true once the page has drawn its treemap
    "flopmeter (SVG + JS)": "document.querySelector('#treemap svg') !== null",
    "plotly (inlined)": "document.querySelector('.js-plotly-plot .treemaplayer path') !== null",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    chromium = os.environ.get("FLOPMETER_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        raise SystemExit("no chromium on PATH")
    from playwright.sync_api import sync_playwright

    report = flopmeter.count(big_model(args.blocks), torch.randn(1, 64))
    modules = sum(1 for _ in report.modules())
    pages = {"flopmeter (SVG + JS)": report_html(report), "plotly (inlined)": plotly_page(report)}
    pages = {k: v for k, v in pages.items() if v is not None}
    tmp = Path(tempfile.mkdtemp(prefix="flopmeter-html-bench-"))
    times: dict[str, list[float]] = {k: [] for k in pages}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        for rnd in range(args.repeat + 1):            # round 0 warms the browser up
            for name, text in pages.items():
                path = tmp / f"{len(times[name])}-{name.split()[0]}.html"
                path.write_text(text)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(path.as_uri(), wait_until="commit")
                page.wait_for_function(PROBES[name], timeout=60_000, polling=5)
                ms = page.evaluate("performance.now()")
                if errors:
                    raise SystemExit(f"{name}: {errors}")
                if rnd:
                    times[name].append(ms)
                page.close()
        browser.close()
    print(f"model: {args.blocks} blocks, {modules:,} modules; Chromium headless, {args.repeat} rounds, "
          f"median time from navigation to the treemap drawn (machine shared, 2 cores)")
    base = statistics.median(times["flopmeter (SVG + JS)"])
    print(f"{'page':24} {'file size':>12} {'first render':>13} {'ratio':>6}")
    for name, text in pages.items():
        med = statistics.median(times[name])
        print(f"{name:24} {len(text.encode()) / 1024:9.0f} KiB {med:10.0f} ms {med / base:6.2f}")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
