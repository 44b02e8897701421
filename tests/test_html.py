"""The HTML renderer without a browser: registered as a format, self-contained, escaped,
sections that follow the report dict's keys, and compare tables as HTML with bar charts."""

import base64
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter.cli import main
from flopmeter.render import RENDERERS, format_of_suffix
from flopmeter.render.html import flatten_modules, json_for_script, report_dict_html, report_html
from flopmeter.render.tables import header_items
from hostile import PAYLOAD, TYPE_PAYLOAD, hostile_input, hostile_model


def data_of(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="flopmeter-data">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


def test_html_is_a_registered_format():
    assert "html" in RENDERERS
    assert format_of_suffix(".html") == "html" and format_of_suffix(".htm") == "html"


def test_self_contained_no_external_reference():
    report = flopmeter.count(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), torch.randn(1, 4))
    page = report_html(report)
    assert page.startswith("<!DOCTYPE html>")
    # no src=, href= or url( pointing anywhere: scripts and styles are inline
    assert not re.search(r"\b(src|href)\s*=", page, re.I)
    assert "url(" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    # a Content-Security-Policy forbids any fetch the page might still try
    assert "default-src 'none'" in page


def test_model_strings_are_escaped():
    report = flopmeter.count(hostile_model(), hostile_input())
    page = report_html(report)
    assert PAYLOAD not in page and TYPE_PAYLOAD not in page
    # exactly the two scripts the renderer writes: the data block and the code
    assert len(re.findall(r"<script\b", page)) == 2
    # the data survive the escaping unchanged
    data = data_of(page)
    paths = [row[0] for row in data["rows"]]
    types = [row[1] for row in data["rows"]]
    assert PAYLOAD in paths and TYPE_PAYLOAD in types


def test_json_for_script_cannot_close_the_script():
    text = json_for_script({"a": "</script><b>&\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><b>&\u2028"}


def test_flat_rows_keep_the_tree_and_the_figures():
    model = nn.Sequential(nn.Linear(10, 20, bias=False), nn.Sequential(nn.Linear(20, 5, bias=False)))
    report = flopmeter.count(model, torch.randn(3, 10))
    metrics, rows = flatten_modules(report.to_dict()["modules"])
    assert metrics[:4] == ["MACs", "FLOPs", "params", "bytes"]
    by_path = {r[0]: r for r in rows}
    assert by_path[""][2] == -1 and rows.index(by_path["1"]) == by_path["1.0"][2]
    assert by_path[""][4] == 3 * 10 * 20 + 3 * 20 * 5          # N·I·O summed over the two Linears
    assert by_path["1.0"][6] == 20 * 5                          # params of the inner Linear


def test_sections_follow_the_report_dict():
    """Figures other analyses add appear as treemap metrics and sections only when present: a
    ``memory`` section in the shape of MemoryReport.to_dict() (timeline with per-op
    live bytes, peak and per-module peaks), and numeric figures on the module nodes."""
    report = flopmeter.count(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), torch.randn(1, 4))
    d = report.to_dict(ops=False)
    d["op_types"] = []
    plain = report_dict_html(d, header=header_items(report))
    assert data_of(plain)["metrics"] == ["MACs", "FLOPs", "params", "bytes"]
    assert 'id="section-memory"' not in plain and "memory-timeline" not in plain

    d["memory"] = {"total": 4096, "device": "cpu",
                   "timeline": {"peak": {"bytes": 60, "event": 1, "op": "aten.addmm", "module": PAYLOAD},
                                "modules": [{"path": "", "peak": 60, "peak_activations": 28},
                                            {"path": "0", "peak": 60, "peak_activations": 12}],
                                "live": [16, 60, 28], "activations": [0, 12, 12]}}
    d["modules"]["time_ms"] = 1.5
    page = report_dict_html(d, header=header_items(report))
    data = data_of(page)
    assert data["metrics"][4:] == ["time_ms", "memory peak", "activation peak"]
    by_path = {r[0]: r for r in data["rows"]}
    assert by_path["0"][4 + 6] == 12 and by_path[""][4 + 4] == 1.5
    assert 'id="section-memory"' in page and 'id="memory-timeline"' in page
    assert page.count("<path d=") == 2                     # live bytes and activations
    assert PAYLOAD not in page                             # the peak's module name, escaped


def test_cli_writes_html(tmp_path):
    out = tmp_path / "tiny.html"
    assert main(["torchvision:resnet18", "-o", str(out)]) == 0
    assert main(["torchvision:resnet18", "-o", str(tmp_path / "tiny.json")]) == 0
    data = data_of(out.read_text())
    as_json = json.loads((tmp_path / "tiny.json").read_text())
    assert data["rows"][0][4] == as_json["totals"]["macs"]    # the same MACs as the JSON report
    assert data["rows"][0][6] == as_json["params"]["count"]
    assert any(r[0] == "layer1" for r in data["rows"])


def test_compare_as_html_has_a_bar_chart_per_figure(tmp_path, capsys):
    out = tmp_path / "cmp.html"
    assert main(["compare", "torchvision:resnet18", "torchvision:alexnet", "-o", str(out)]) == 0
    page = out.read_text()
    # one chart per numeric column: params, MACs, FLOPs, unsupported
    assert page.count('<svg class="bars"') == 4
    assert page.count("torchvision:resnet18") >= 5 and "<table" in page


def test_roofline_and_bench_html_are_one_escaped_document(tmp_path, capsys):
    """`roofline --format html` and `bench --roofline --format html`: one document (not a text
    header and several pages glued together) with the plot inline and every model string escaped."""
    pytest.importorskip("matplotlib")
    from flopmeter.bench.roofline import roofline
    from flopmeter.cli.roofline import plot_block, view_table
    from flopmeter.render.html import Image, document_html

    rl = roofline(flopmeter.count(hostile_model(), hostile_input()), "h100")
    heading, image = plot_block(rl)
    assert isinstance(image, Image) and image.data.startswith(b"<?xml") and b"<svg" in image.data
    page = document_html([("model", PAYLOAD)], [(heading, image), (TYPE_PAYLOAD, view_table(rl, "tree", None, 5, False)),
                                                ("note", PAYLOAD)])
    assert page.count("<!DOCTYPE html>") == 1 and "<script" not in page      # no data, so no script at all
    assert PAYLOAD not in page and TYPE_PAYLOAD not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3          # the fact, the table's row, the note
    src = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(src) == image.data                                # the plot, inline, intact

    out = tmp_path / "rl.html"
    assert main(["roofline", "torchvision:resnet18", "--device-spec", "h100", "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("<!DOCTYPE html>") == 1
    assert "H100 SXM" in text and 'src="data:image/svg+xml;base64,' in text

    model = f"{Path(__file__).parent / 'data' / 'sweep_models.py'}:tiny_b"
    out = tmp_path / "bench.html"
    assert main(["bench", model, "--input-size", "8", "--min-time", "0.05", "--max-time", "0.2", "--threads", "1",
                 "--roofline", "h100", "-o", str(out)]) == 0
    text = out.read_text()
    assert text.count("<!DOCTYPE html>") == 1 and text.count("<table") >= 5   # survey, layers, ops, roofline (+ facts)
    assert "pred/meas" in text and 'src="data:image/svg+xml;base64,' in text
