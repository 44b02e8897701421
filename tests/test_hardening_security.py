"""Security: no code runs from a file the user did not trust; every model-provided
string is escaped in CSV and Markdown; hf: architectures must be model classes."""

import csv
import io
import json
import pickle
import re
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from flopmeter.cli import main


class _Touch:
    """Unpickling this creates a file: stands for any code a pickle can run."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


class _Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x)


def _saved_program(tmp_path) -> Path:
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(_Small(), (torch.randn(2, 4),)), str(path))
    return path


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes]) -> None:
    """Copy a zip archive, replacing the members whose names end with a key of ``replace``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            for suffix, new in replace.items():
                if info.filename.endswith(suffix):
                    data = new
            zout.writestr(info.filename, data)


def _pickled_weight_archive(tmp_path, marker: Path) -> Path:
    """The route through weights marked use_pickle (torch.load(..., weights_only=False))."""
    src = _saved_program(tmp_path)
    with zipfile.ZipFile(src) as z:
        name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(z.read(name))
    fqn, meta = next(iter(config["config"].items()))
    meta["use_pickle"] = True
    dst = tmp_path / "evil_weights.pt2"
    _rewrite(src, dst, {"model_weights_config.json": json.dumps(config).encode(),
                        f"data/weights/{meta['path_name']}": pickle.dumps(_Touch(marker))})
    return dst


def _pickled_inputs_archive(tmp_path, marker: Path) -> Path:
    """The route through the sample inputs (weights_only=True fails, torch falls back to False)."""
    dst = tmp_path / "evil_inputs.pt2"
    _rewrite(_saved_program(tmp_path), dst, {"data/sample_inputs/model.pt": pickle.dumps(_Touch(marker))})
    return dst


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")     # torch's, while the control loads the archive
@pytest.mark.parametrize("craft", [_pickled_weight_archive, _pickled_inputs_archive],
                         ids=["pickled_weights_use_pickle", "pickled_sample_inputs_fallback"])
def test_crafted_pt2_runs_no_code_without_trust_pickle(tmp_path, capsys, craft):
    marker = tmp_path / "pwned"
    archive = craft(tmp_path, marker)
    # control: the archive really is hostile — torch.export.load itself runs the payload
    try:
        torch.export.load(str(archive))
    except Exception:
        pass
    assert marker.exists(), "the crafted archive should run its payload under torch.export.load"
    marker.unlink()
    capsys.readouterr()                 # torch's own warnings about the archive, above

    code = main([str(archive)])
    err = capsys.readouterr().err
    assert code == 2
    assert not marker.exists()
    assert err.count("error:") == 1 and "would run code" in err and "--trust-pickle" in err
    assert "Traceback" not in err


def test_plain_pt2_is_counted_without_trust(tmp_path, capsys):
    archive = _saved_program(tmp_path)
    code = main([str(archive), "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads(out)["totals"]["macs"] == 2 * 4 * 3       # N·I·O of Linear(4, 3) on (2, 4)


def test_pt2_with_compiled_code_is_refused(tmp_path, capsys):
    src = _saved_program(tmp_path)
    dst = tmp_path / "aoti.pt2"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        root = zin.namelist()[0].split("/")[0]
        zout.writestr(f"{root}/data/aotinductor/model/model.so", b"\x7fELF")
    code = main([str(dst)])
    err = capsys.readouterr().err
    assert code == 2 and "data/aotinductor/model/model.so" in err and "--trust-pickle" in err


@pytest.mark.parametrize("arch", ["pipeline", "AutoModelForCausalLM", "__import__", "os"])
def test_hf_architecture_must_be_a_model_class(tmp_path, capsys, arch):
    pytest.importorskip("transformers")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2,
                               "vocab_size": 16, "n_positions": 16, "architectures": [arch]}))
    code = main([f"hf:{cfg}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and "Traceback" not in err
    assert f"architectures[0] is '{arch}'" in err


# -- escaping of model-provided strings ---------------------------------------------------

HOSTILE = ["<script>alert(1)</script>", '=HYPERLINK("http://evil/x","x")', "line\nbreak",
           "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "a|b", "[link](http://evil/x)", "![img](x)"]


class _Named(nn.Module):
    """A model whose submodule names and class name are hostile strings."""

    def __init__(self):
        super().__init__()
        for i, name in enumerate(HOSTILE):
            self.add_module(name, nn.Linear(2, 2))

    def forward(self, x):
        for m in self.children():
            x = m(x)
        return x


def _report():
    import flopmeter
    return flopmeter.count(_Named(), torch.randn(1, 2))


def test_csv_neutralises_formulas_in_every_cell():
    from flopmeter.render import RENDERERS
    for view in ("tree", "ops"):
        text = RENDERERS["csv"].report(_report(), view=view, depth=None)
        rows = list(csv.reader(io.StringIO(text, newline="")))
        cells = [c for row in rows for c in row]
        for cell in cells:
            if cell and not re.fullmatch(r"[+-]?\d+(\.\d+)?%?", cell):      # numbers cannot be formulas
                assert cell[0] not in "=+-@\t\r", (view, cell)
        if view == "tree":
            paths = [row[0] for row in rows[1:]]
            # every hostile name survives, readable, with a leading quote where it would be a formula
            assert "'=HYPERLINK(\"http://evil/x\",\"x\")" in paths
            assert "'+1+cmd|' /C calc'!A0" in paths and "'-2+3" in paths and "'@SUM(A1)" in paths
            assert "'\tTAB" in paths and "line\nbreak" in paths


def test_numbers_in_csv_stay_numbers():
    from flopmeter.render import RENDERERS
    text = RENDERERS["csv"].report(_report(), view="tree", depth=None)
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert int(rows[0]["MACs"]) == len(HOSTILE) * 2 * 2         # N·I·O per Linear(2, 2)


def test_markdown_escapes_names_html_links_pipes_and_newlines():
    from flopmeter.render import RENDERERS
    for view in ("tree", "ops", "keras"):
        text = RENDERERS["md"].report(_report(), view=view, depth=None)
        assert "<script>" not in text and not re.search(r"(?<!\\)\]\(", text) and "![" not in text
        table = [line for line in text.splitlines() if line.startswith("|") and not line.startswith("|-")]
        header_cells = table[0].count(" | ")
        # a newline never splits a row, an escaped pipe never adds a cell
        assert all(line.replace("\\|", "").count(" | ") == header_cells for line in table), view
        assert len(table) == 1 + len(HOSTILE) + (view == "tree")     # header, one row per Linear (+ the root)
    tree = RENDERERS["md"].report(_report(), view="tree", depth=None)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in tree and "a\\|b" in tree


def test_markdown_header_escapes_model_name():
    from flopmeter.render import RENDERERS
    r = _report()
    r.model = "<img src=x onerror=alert(1)>\n| x |"
    text = RENDERERS["md"].report(r)
    assert "<img" not in text and "&lt;img" in text
    assert text.splitlines()[0].startswith("- **model**")


def test_terminal_and_json_keep_names_verbatim():
    from flopmeter.render import RENDERERS
    r = _report()
    d = json.loads(RENDERERS["json"].report(r, view="tree"))
    assert [c["path"] for c in d["modules"]["children"]] == HOSTILE
    text = RENDERERS["table"].report(r, depth=None)
    assert "<script>alert(1)</script>" in text                # rich markup escaped, text verbatim


def test_hf_config_asking_for_custom_code_is_refused(tmp_path, capsys):
    pytest.importorskip("transformers")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 16,
                               "auto_map": {"AutoModel": "modeling_evil.EvilModel"}}))
    (tmp_path / "modeling_evil.py").write_text(f"open({str(tmp_path / 'pwned')!r}, 'w').close()\n")
    code = main([f"hf:{tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and "auto_map" in err and not (tmp_path / "pwned").exists()
