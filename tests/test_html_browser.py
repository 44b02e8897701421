"""HTML reports opened in real headless Chromium (the system's ``chromium``, driven by
playwright without any browser download): no console error, no network request, the
treemap zooms, the table's search finds a module, hostile names render as text.

Screenshots are kept in tests/artifacts/ (ignored by git). Skipped, with the reason, when
chromium or the playwright package is missing; ``.ci/run`` installs chromium so they run in CI."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

import flopmeter
from flopmeter.cli import main
from flopmeter.render.html import report_html
from hostile import PAYLOAD, TYPE_PAYLOAD, hostile_input, hostile_model

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = os.environ.get("FLOPMETER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.browser


def largest_torchvision_model() -> str:
    """By parameter count, from torchvision's weight metadata (no weights are downloaded)."""
    from torchvision import models
    sizes = []
    for name in models.list_models(module=models):
        weights = models.get_model_weights(name)
        sizes.append((max(w.meta["num_params"] for w in weights), name))
    return max(sizes)[1]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run installs it when run as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package (test extra) is missing")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


class Opened:
    """A page with its console messages, page errors, requests and dialogs recorded."""

    def __init__(self, browser, path: Path):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.console, self.requests, self.dialogs = [], [], []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        start = time.perf_counter()
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("body[data-rendered]", timeout=30_000)
        self.seconds = time.perf_counter() - start
        self.url = path.as_uri()

    def check_clean(self):
        assert self.console == [], self.console
        # the only request is the file itself: no script, style, font or image fetched
        assert self.requests == [self.url], self.requests
        assert self.dialogs == []


SPECS = ["torchvision:resnet50", "torchvision:vit_b_16", "hf:gpt2", "largest"]


@pytest.mark.parametrize("spec", SPECS)
def test_report_in_chromium(browser, spec, tmp_path):
    if spec == "largest":
        spec = f"torchvision:{largest_torchvision_model()}"
    out = tmp_path / "report.html"
    assert main([spec, "-o", str(out)]) == 0
    opened = Opened(browser, out)
    page = opened.page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{spec.replace(':', '_')}.png"), full_page=False)
    opened.check_clean()

    # the treemap is drawn and zooms into a module when clicked; its title names the module
    tiles = page.locator("#treemap g.tile")
    assert tiles.count() >= 2
    first = tiles.first.get_attribute("data-path")
    target = "layer1" if page.locator('#treemap g.tile[data-path="layer1"]').count() else first
    page.click(f'#treemap g.tile[data-path="{target}"]')
    assert page.text_content("#treemap-title") == target
    assert page.locator("#treemap g.tile").count() >= 1          # its children, drawn
    page.click("#treemap-crumbs button.crumb >> nth=0")           # back to the root
    assert page.text_content("#treemap-title") != target

    # switching the size to params redraws without error
    page.select_option("#metric", label="params")
    assert page.locator("#treemap g.tile").count() >= 1

    # the search finds a module deep in the tree and hides the rest
    deepest = page.evaluate("JSON.parse(document.getElementById('flopmeter-data').textContent)"
                            ".rows.map(r => r[0]).filter(p => p).pop()")
    page.fill("#search", deepest)
    hit = page.locator(f'#modules tr[data-path="{deepest}"]')
    assert hit.is_visible()
    assert page.locator("#modules tbody tr:visible").count() < page.locator("#modules tbody tr").count()

    # sorting by MACs puts the costliest child of the root first
    page.fill("#search", "")
    page.click('#modules th[data-col="3"]')
    opened.check_clean()


def test_resnet50_layer1_zoom_title(browser, tmp_path):
    out = tmp_path / "resnet50.html"
    assert main(["torchvision:resnet50", "-o", str(out)]) == 0
    opened = Opened(browser, out)
    opened.page.click('#treemap g.tile[data-path="layer1"]')
    assert opened.page.text_content("#treemap-title") == "layer1"
    labels = opened.page.locator("#treemap g.tile").evaluate_all("gs => gs.map(g => g.getAttribute('data-path'))")
    assert sorted(labels) == ["layer1.0", "layer1.1", "layer1.2"]     # resnet50's three bottlenecks in layer1
    opened.page.fill("#search", "downsample")
    # one downsample per stage, each with its conv and bn: 4 × 3 rows match
    assert opened.page.text_content("#search-count") == f"{4 * 3} matches"
    opened.check_clean()


def test_hostile_names_render_as_text(browser, tmp_path):
    out = tmp_path / "hostile.html"
    out.write_text(report_html(flopmeter.count(hostile_model(), hostile_input())))
    opened = Opened(browser, out)
    page = opened.page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "hostile.png"), full_page=True)
    opened.check_clean()                                 # no alert() dialog, no request for "x"
    paths = page.locator("#modules tbody tr").evaluate_all("rs => rs.map(r => r.getAttribute('data-path'))")
    assert PAYLOAD in paths
    row = page.locator("#modules tbody tr").nth(paths.index(PAYLOAD))
    assert row.locator("span.label").text_content() == PAYLOAD
    assert row.locator("td.type").text_content() == TYPE_PAYLOAD
    assert page.locator("script").count() == 2          # the data block and the report's code, nothing injected
    assert page.locator("img").count() == 0
    page.fill("#search", "alert(1)")
    assert page.text_content("#search-count") == "1 match"


def test_table_pages_in_chromium(browser, tmp_path):
    """compare-style bars and scaling-style log-log curves: drawn, escaped, nothing fetched."""
    from flopmeter.render.html import table_html
    from flopmeter.render.tables import Table

    t = Table(["model", "MACs"], [False, True], rows=[[PAYLOAD, 10], ["b", 20]])
    bars = tmp_path / "bars.html"
    bars.write_text(table_html(t))
    t.curves = {PAYLOAD: [(16, 100), (32, 400), (64, 1600)]}
    curves = tmp_path / "curves.html"
    curves.write_text(table_html(t))
    for path, drawn in ((bars, "svg.bars rect"), (curves, "svg.plot path")):
        page = browser.new_page()
        console, requests = [], []
        page.on("console", lambda m: console.append(m.text))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        assert page.locator(drawn).count() >= 1
        assert page.locator("td").first.text_content() == PAYLOAD
        assert console == [] and requests == [path.as_uri()]
        page.close()


def test_sizing_section_in_chromium(browser, tmp_path):
    """The sizing view: the answer, every assumption, one table of formats, the two-panel timeline
    with its peak, the search's traces (the fitted line drawn only where every trace is on it);
    words and numbers only — no field names, no None."""
    import json

    from flopmeter.analyses.assumptions import LABELS, NAMES

    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 128, "hidden_size": 64,
              "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 256, "torch_dtype": "bfloat16"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    ARTIFACTS.mkdir(exist_ok=True)
    for name, extra in (("inference", []), ("training", ["--train", "--optimizer", "adamw"])):
        argv = [f"hf:{tmp_path}", "--seq-len", "32", "--fits", "T4", "--reserve", "1GiB", "--max-batch", *extra]
        assert main([*argv, "-o", str(tmp_path / f"{name}.json")]) == 0
        assert main([*argv, "-o", str(tmp_path / f"{name}.html")]) == 0
        d = json.loads((tmp_path / f"{name}.json").read_text())
        opened = Opened(browser, tmp_path / f"{name}.html")
        page = opened.page
        page.locator("#section-memory").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"sizing_{name}.png"), full_page=True)
        opened.check_clean()
        rows = page.locator("#assumptions tbody tr td:first-child").all_text_contents()
        assert rows == [LABELS[n] for n in NAMES]
        texts = page.locator("#assumptions tbody tr td:nth-child(2)").all_text_contents()
        assert texts == [d["assumptions"][n]["text"] for n in NAMES]
        formats = page.locator("#memory-formats tbody tr td:first-child").all_text_contents()
        assert formats[0] == "stored  (used)" and {"bfloat16", "int4", "nf4"} <= set(formats)
        assert page.locator("#memory-timeline svg path").count() == 2          # live bytes; activations apart
        assert page.locator("#memory-timeline svg circle.peak").count() == 1
        search = d["memory"]["largest"]["batch"]
        assert page.locator("#search-batch tbody tr").count() == len(search["traces"])
        # the fitted line only where every trace lies on it
        assert page.locator("svg.search path.fit").count() == (1 if search["on_curve"] else 0)
        answer = page.locator("#sizing-answer").text_content()
        assert f"{search['answer']:,}" in answer and "15 GiB usable" in answer
        section = page.locator("#section-memory").text_content()
        for raw in ("None", "budget_label", "by_role", "peak_activations", "weights_by_format", "kv_cache",
                    "saved_by_module", "optimizer_state_bytes"):
            assert raw not in section, raw
        if name == "training":
            assert page.locator("#training-memory").count() == 1 and page.locator("#phases tbody tr").count() >= 3
