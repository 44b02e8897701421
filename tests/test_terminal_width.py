"""Terminal tables at a narrow width: no cell is split across lines and every number and shape
is shown whole; columns are left out (and named under the table) instead."""

import pytest
import torch

import flopmeter
from flopmeter.render.tables import cell_text, view_table
from flopmeter.render.terminal import render
from flopmeter.render.units import human

pytest.importorskip("rich")
torchvision = pytest.importorskip("torchvision")


@pytest.fixture(scope="module")
def resnet50():
    return flopmeter.count(torchvision.models.resnet50().eval(), torch.randn(1, 3, 224, 224))


def _shown(report, view, width):
    import io

    from rich.console import Console
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(render(report, view=view, depth=2))
    lines = console.export_text().splitlines()
    assert all(len(line) <= width for line in lines)
    start = next(i for i, line in enumerate(lines) if "┃" in line)
    header = [c.strip() for c in lines[start].split("┃")]
    rows = [[c.strip() for c in line.split("│")] for line in lines[start + 2:] if "│" in line]
    return header, rows, lines


@pytest.mark.parametrize("view", ["tree", "ops", "keras"])
@pytest.mark.parametrize("width", [80, 60])
def test_narrow_terminal_keeps_every_cell_whole(resnet50, view, width):
    table = view_table(resnet50, view, 2)
    header, rows, lines = _shown(resnet50, view, width)
    assert len(rows) == len(table.rows)                     # one line a row: nothing wrapped onto a second line
    index = {name: i for i, name in enumerate(table.columns)}
    assert header[0] == table.columns[0] and set(header) <= set(index)
    left_out = [c for c in table.columns if c not in header]
    if left_out:                                           # named under the table (its caption may wrap)
        caption = " ".join(line.strip() for line in lines[next(i for i, x in enumerate(lines) if "not shown" in x):])
        named = caption.split("not shown at this width: ")[1].split(" (")[0]
        assert sorted(named.split(", ")) == sorted(left_out)
    for shown, row in zip(rows, table.rows):
        for name, cell in zip(header, shown):
            value = row[index[name]]
            expected = human(value, table.exact) if isinstance(value, int) else cell_text(value) \
                if isinstance(value, float) else str(value).strip()
            if table.numeric[index[name]]:
                assert cell == expected                    # a number as formatted, whole
            elif "…" in cell:                              # only names may be shortened, never a shape
                assert name in (table.columns[0], "op") and expected.startswith(cell.rstrip("…"))
            else:
                assert cell == expected


def test_numbers_parse_back_at_80_columns(resnet50):
    header, rows, _ = _shown(resnet50, "tree", 80)
    table = view_table(resnet50, "tree", 2)
    out = header.index("output")
    for shown, row in zip(rows, table.rows):
        expected = row[table.columns.index("output")]
        assert shown[out] == expected and all(d.isdigit() for d in shown[out].split("×"))
    assert [int(d) for d in rows[1][out].split("×")] == [1, 64, 112, 112]     # conv1: 224 / 2 with stride 2
