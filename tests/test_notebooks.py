"""Notebooks as a reader meets them (issue 8 §2, §5): committed outputs, deterministic; one Colab set-up cell.

Outputs are written by tools/execute_notebooks.py; the Colab cell by tools/colab_cell.py. Each test names
what breaks it.
"""
import json, re, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colab_cell, execute_notebooks  # noqa: E402

# Notebooks a reader on GitHub needs the outputs of (issue 8 §2): index and every lesson (issue 19), found by
# glob so that a new lesson is covered the day it is added. Experiments: tests/test_course.py.
LESSONS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "nbs").glob("[0-9]*.ipynb"))
WITH_OUTPUTS = ["index.ipynb", *LESSONS]
# an absolute path of this machine (a temporary folder, a checkout) differs on the next one: print it relative
LOCAL_PATH = re.compile(r"(?<![\w.])/(?:tmp|home|work|Users|root)/")


def _outputs(path: Path) -> list[dict]:
    nb = json.loads(path.read_text())
    return [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]


def _texts(out: dict) -> list[str]:
    if out.get("output_type") == "stream": return [execute_notebooks._join(out["text"])]
    return [execute_notebooks._join(v) for k, v in out.get("data", {}).items() if k.startswith("text/")]


def test_every_lesson_is_in_with_outputs():
    # breaks if the glob stops finding the lessons (a rename of nbs/, a new numbering)
    assert len(LESSONS) >= 30 and "nbs/11_speculate.ipynb" in WITH_OUTPUTS


@pytest.mark.parametrize("nb", WITH_OUTPUTS)
def test_notebook_carries_its_outputs(nb):
    # breaks if the notebook is committed without outputs (run tools/execute_notebooks.py on it)
    assert len(_outputs(ROOT / nb)) > 0, f"{nb} has no outputs: run `python tools/execute_notebooks.py {nb}`"


@pytest.mark.parametrize("nb", WITH_OUTPUTS)
def test_committed_outputs_are_deterministic(nb):
    # breaks if an output holds a wall-clock number, a memory address, a raw UUID, a local path, a widget view
    # or stderr: executing the notebook again (or on another machine) would change the committed file
    for out in _outputs(ROOT / nb):
        assert execute_notebooks.WIDGET not in out.get("data", {}), f"{nb}: a widget view is committed"
        assert out.get("name") != "stderr", f"{nb}: stderr committed"
        for text in _texts(out):
            assert execute_notebooks.mask_text(text) == text, f"{nb}: unmasked timing/address: {text[:300]!r}"
            local = LOCAL_PATH.search(text)
            where = text[max(0, local.start() - 80):local.end() + 80] if local else ""
            assert not local, f"{nb}: a local path is committed: {where!r}"
            ids = execute_notebooks.UUID.findall(text)
            stray = [u for u in ids if not u.startswith("00000000-0000-4000-8000-")]
            assert not stray, f"{nb}: random ids {stray[:3]}"


def test_readers_see_the_explorers_static_view_and_the_tour_table():
    # breaks if 06's static fallback (HTML text + counters, SVG picture) or index's table is not committed
    outputs = _outputs(ROOT / "nbs/06_explorer.ipynb")
    explorer = [t for o in outputs for t in _texts(o)]
    assert any("<span title=" in t and "cost: reference" in t for t in explorer), "06: static HTML missing"
    assert any("image/svg+xml" in o.get("data", {}) for o in outputs), "06: no static picture (SVG)"
    import build_readme
    readme = build_readme.render()          # what README.md must be (make check-sync compares them)
    assert "| recipe | reported split |" in readme, "index.ipynb: the tour's table is not committed"
    assert "```text\nmined threshold" in readme, "index.ipynb: the explorer's printed line is not committed"


def test_local_paths_are_caught():
    # breaks if the local-path check stops seeing temporary folders or checkouts, or flags relative paths
    assert LOCAL_PATH.search("resumed from /tmp/tmpr4m96fer/checkpoints")
    assert LOCAL_PATH.search("PosixPath('/work/wt/x/data')")
    assert not LOCAL_PATH.search("nbs/experiments/001_kv_cache.ipynb") and not LOCAL_PATH.search("tokens/s")


def test_output_normalisation():
    # breaks if the masks stop catching timings, or widget views / stderr survive normalisation
    assert execute_notebooks.mask_text("built in 0.53 s; 155 ms; 312 tokens/s; {'seconds': 0.01}") == \
        "built in <t> s; <t> ms; <t> tokens/s; {'seconds': <t>}"
    assert execute_notebooks.mask_text("2 of 4 layers, 64 tokens") == "2 of 4 layers, 64 tokens"
    renumber = execute_notebooks.Renumber()
    widget = {"output_type": "display_data", "metadata": {},
              "data": {execute_notebooks.WIDGET: {"model_id": "x"}, "text/plain": "VBox(...)"}}
    normalise = execute_notebooks.normalise_output
    assert normalise(widget, renumber)["data"] == {"text/plain": execute_notebooks.WIDGET_NOTE}
    assert normalise({"output_type": "stream", "name": "stderr", "text": "x"}, renumber) is None
    chunks = [{"output_type": "stream", "name": "stdout", "text": t} for t in ("first line", "\n")]
    assert execute_notebooks.merge_streams(chunks) == [{"output_type": "stream", "name": "stdout",
                                                         "text": "first line\n"}]
    ids = "a 1b4e28ba-2fa1-11d2-883f-0016d3cca427 b 1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert renumber(ids) == "a 00000000-0000-4000-8000-000000000000 b 00000000-0000-4000-8000-000000000000"


# --------------------------------------------------------------------------- the Colab set-up cell

def test_every_notebook_has_the_one_colab_cell():
    # breaks if a notebook's set-up cell is missing, doubled, or not tools/colab_cell.py's template
    # (fix: `python tools/colab_cell.py`)
    stale = colab_cell.stale(colab_cell.notebooks())
    assert not stale, "Colab set-up cell differs from the template in:\n" + "\n".join(stale)


def _run_cell(monkeypatch, in_colab: bool, pip_rc: int):
    calls = []
    monkeypatch.setattr("os.path.exists", lambda p: in_colab if p == "/content" else False)
    def fake_run(cmd, **kw):
        calls.append(cmd)
        stderr = "ERROR: Could not resolve host: github.com"
        return subprocess.CompletedProcess(cmd, pip_rc, stdout="", stderr=stderr)
    monkeypatch.setattr(subprocess, "run", fake_run)
    colab = type(sys)("google.colab")
    enable = staticmethod(lambda: calls.append("widgets"))
    colab.output = type("Output", (), {"enable_custom_widget_manager": enable})
    monkeypatch.setitem(sys.modules, "google", type(sys)("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    exec(compile(colab_cell.render(), "colab-cell", "exec"), {})
    return calls


def test_colab_cell_fails_loudly_with_the_fix(monkeypatch):
    # breaks if a failed install lets the notebook go on (the old `!pip` line did), or the message has no fix
    with pytest.raises(RuntimeError) as err:
        _run_cell(monkeypatch, in_colab=True, pip_rc=1)
    msg = str(err.value)
    url = colab_cell.git_url()
    assert f"eelab @ git+{url}" in msg and "git_url" in msg and "settings.ini" in msg and "github.com" in msg


def test_colab_cell_installs_in_colab_and_does_nothing_elsewhere(monkeypatch):
    calls = _run_cell(monkeypatch, in_colab=True, pip_rc=0)
    assert calls[0][-1] == f"eelab @ git+{colab_cell.git_url()}" and calls[-1] == "widgets"
    assert _run_cell(monkeypatch, in_colab=False, pip_rc=0) == []


def test_colab_cell_url_comes_from_settings(tmp_path):
    settings = tmp_path / "settings.ini"
    settings.write_text("[DEFAULT]\ngit_url = https://github.com/someone/fork.git/\n")
    assert colab_cell.git_url(settings) == "https://github.com/someone/fork"
    cell = colab_cell.render(colab_cell.git_url(settings))
    assert 'EELAB_PIP = "eelab @ git+https://github.com/someone/fork"' in cell
    assert re.search(r"^#\| eval: false$", colab_cell.render(), re.M)      # nbdev never runs it


def test_index_explorer_starts_at_the_mined_threshold():
    # breaks if index.ipynb starts the explorer anywhere but the checkpoint's mined threshold, or its
    # committed line (the one the prose describes) is not what that explorer does
    from eelab.explorer import Explorer, load_explorer_model
    model, tokenizer, threshold = load_explorer_model()
    result = Explorer(model, tokenizer, prompt="ROMEO:", n_new=48, threshold=threshold).result
    line = (f"mined threshold {threshold:.3f}: {result.shallow_count} of 48 generated tokens "
            f"({result.shallow_ratio:.0%}) left after layer 2")
    assert any(line in t for o in _outputs(ROOT / "index.ipynb") for t in _texts(o)), line


def test_colab_cell_keeps_a_notebooks_extras(tmp_path):
    # breaks if rewriting drops `[hf]` from a notebook that needs transformers
    cell = dict(cell_type="code", metadata={}, outputs=[], execution_count=None,
                source=["# Colab set-up\n", '![ -e /content ] && pip install -q "eelab[hf] @ git+https://x/y"'])
    nb = tmp_path / "hf.ipynb"
    nb.write_text(json.dumps(dict(cells=[cell], metadata={}, nbformat=4, nbformat_minor=5)))
    assert colab_cell.rewrite(nb) and not colab_cell.rewrite(nb)           # rewritten once, then stable
    assert colab_cell.stale([nb]) == []
    source = "".join(json.loads(nb.read_text())["cells"][0]["source"])
    assert f'EELAB_PIP = "eelab[hf] @ git+{colab_cell.git_url()}"' in source


EXPERIMENTS = sorted(p.relative_to(ROOT).as_posix()
                     for p in (ROOT / "nbs" / "experiments").glob("[0-9]*.ipynb"))


@pytest.mark.parametrize("nb", WITH_OUTPUTS + EXPERIMENTS)
def test_every_committed_figure_shows_on_github(nb):
    # breaks if a plotly figure is committed without its static PNG, or keeps the CDN HTML view that GitHub's
    # no-JavaScript viewer would pick and show blank (run `make pngs`, or `make outputs`)
    for out in _outputs(ROOT / nb):
        data = out.get("data", {})
        if "application/vnd.plotly.v1+json" not in data: continue
        assert "image/png" in data and "text/html" not in data, f"{nb}: a plotly figure without its PNG"
