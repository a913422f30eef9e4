"""tools/plotly_png.py: committed plotly figures get a static PNG that GitHub shows (no execution here).

A tiny notebook dict with one plotly output (JSON + the CDN-loading HTML view that GitHub leaves blank)
and two other outputs. Needs Chromium (tools/install_browser.sh): skipped without it, failed in CI.
"""
import base64, copy, json, os, shutil, struct, sys, zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import plotly_png  # noqa: E402

HTML = '<div><script src="https://cdn.plot.ly/plotly-3.0.1.min.js"></script></div>'


def _figure(title: str) -> dict:
    return {"data": [{"type": "bar", "x": ["a", "b", "c"], "y": [3, 1, 2]}],
            "layout": {"title": {"text": title}, "width": 320, "height": 200}}


def _notebook(title: str = "tiny") -> dict:
    plot = {"output_type": "display_data", "metadata": {},
            "data": {plotly_png.PLOTLY: _figure(title), "text/html": HTML}}
    text = {"output_type": "stream", "name": "stdout", "text": "hello\n"}
    table = {"output_type": "execute_result", "execution_count": None, "metadata": {},
             "data": {"text/html": "<table><tr><td>1</td></tr></table>", "text/plain": "1"}}
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# t"},
             {"cell_type": "code", "execution_count": None, "metadata": {}, "source": "fig",
              "outputs": [text, plot, table]}]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _png_size(png: bytes) -> tuple[int, int]:
    "Width and height from a valid PNG: signature, then an IHDR chunk whose CRC checks."
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", png[8:16])
    assert kind == b"IHDR" and length == 13
    assert struct.unpack(">I", png[29:33])[0] == zlib.crc32(png[12:29])
    return struct.unpack(">II", png[16:24])


@pytest.fixture(scope="module")
def browser():
    try:
        plotly_png.use_chromium()
    except RuntimeError as e:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{e} (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(str(e))
    yield
    plotly_png.close_browser()


def test_png_added_html_dropped_others_untouched(browser):
    nb = _notebook()
    before = copy.deepcopy(nb)
    assert plotly_png.add_pngs(nb) == 1
    text, plot, table = nb["cells"][1]["outputs"]
    assert set(plot["data"]) == {plotly_png.PLOTLY, "image/png"}            # GitHub shows the PNG
    assert plot["data"][plotly_png.PLOTLY] == _figure("tiny")                # interactive JSON kept
    png = base64.b64decode(plot["data"]["image/png"])
    assert _png_size(png) == (320, 200)                                      # the layout's size, scale 1
    assert plotly_png.png_text(png, plotly_png.KEY) == plotly_png.fingerprint(_figure("tiny"), 320, 200)
    assert [text, table] == [before["cells"][1]["outputs"][i] for i in (0, 2)]
    assert nb["cells"][0] == before["cells"][0]


def test_a_changed_figure_is_redrawn_and_twice_is_byte_identical(browser, tmp_path):
    nb = _notebook()
    plotly_png.add_pngs(nb)
    plot = nb["cells"][1]["outputs"][1]["data"]
    old_png = plot["image/png"]
    plot[plotly_png.PLOTLY]["layout"]["title"]["text"] = "changed"
    assert plotly_png.add_pngs(nb) == 1 and plot["image/png"] != old_png
    plot[plotly_png.PLOTLY]["layout"]["title"]["text"] = "tiny"              # back, drawn afresh:
    del plot["image/png"]
    plotly_png.add_pngs(nb)
    assert plot["image/png"] == old_png                                      # the same bytes
    path = tmp_path / "t.ipynb"                                              # the CLI, in place, twice
    path.write_text(json.dumps(_notebook()))
    assert plotly_png.main([str(path)]) == 0
    first = path.read_bytes()
    assert json.loads(first)["cells"][1]["outputs"][1]["data"]["image/png"] == old_png
    assert plotly_png.main([str(path)]) == 0
    assert path.read_bytes() == first


def test_executed_again_reuses_the_png_of_the_same_figure(monkeypatch, browser):
    previous = _notebook()
    plotly_png.add_pngs(previous)
    old_png = previous["cells"][1]["outputs"][1]["data"]["image/png"]
    old_png = old_png[:-8] + base64.b64encode(b"reused").decode()           # not what a render gives
    previous["cells"][1]["outputs"][1]["data"]["image/png"] = old_png
    monkeypatch.setattr(plotly_png, "render", lambda *a: pytest.fail("redrew an unchanged figure"))
    fresh = _notebook()                                                      # as executing gives it
    assert plotly_png.add_pngs(fresh, previous=previous) == 1
    assert fresh["cells"][1]["outputs"][1]["data"]["image/png"] == old_png


def test_no_chromium_names_the_fix(monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    with pytest.raises(RuntimeError, match="install_browser.sh"):
        plotly_png.use_chromium()
    monkeypatch.delenv("BROWSER_PATH")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="BROWSER_PATH"):
        plotly_png.add_pngs(_notebook())
