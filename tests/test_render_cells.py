"""Float cells: a Share is a percentage; any other float (ms, items/s) is shown as it is, in
every text format (a regression: bench's 9.52 ms once printed as '952.0%')."""

from flopmeter.render import RENDERERS
from flopmeter.render.tables import Share, Table


def test_share_is_a_percentage_and_other_floats_are_numbers():
    t = Table(["model", "p50 ms", "share"], [False, True, True], rows=[["m", 9.52, Share(0.25)]])
    for fmt in ("table", "md"):
        text = RENDERERS[fmt].table(t, False)
        assert "9.52" in text and "25.0%" in text and "952" not in text, fmt
    csv_text = RENDERERS["csv"].table(t, False)
    assert "9.52" in csv_text and "0.25" in csv_text and "%" not in csv_text
