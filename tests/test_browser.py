"""Real-browser test: JupyterLab + Chromium (Playwright) drive a notebook's widgets.

Starts ``jupyter-lab`` per test (autosave off, throw-away settings/workspace dirs), opens a notebook in
Debian's chromium, runs all cells, waits for the plotly ``FigureWidget`` to render, then checks
the DOM contract shared by ``tests/_browser_demo.ipynb`` (the harness's self-test) and
``nbs/06_explorer.ipynb``:

* a bar trace named ``confidence`` with one bar per token (the notebook prints ``N_TOKENS=<n>``);
* bar colours ``#2a9d8f`` (shallow exit, confidence >= threshold) / ``#e76f51`` (deep);
* an ``ipywidgets.FloatSlider(description="threshold")`` whose Python observer recolours the bars;
* for the explorer (issue 8 §3): at a 1366x768 laptop viewport its controls, text, counters, legend and
  figure lie within one screen at once (bounding boxes), and the generated text wraps instead of
  running off the right edge.

Artifacts (screenshot, browser console log, server log) go to ``test-artifacts/``.
Without chromium the test is skipped, unless ``CI`` is set, where it fails.
Install chromium with ``tools/install_browser.sh``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
SHALLOW, DEEP = "#2a9d8f", "#e76f51"
TRACE_NAME = "confidence"
SLIDER_DESCRIPTION = "threshold"

NOTEBOOKS = ["tests/_browser_demo.ipynb", "nbs/06_explorer.ipynb"]
SCREENSHOTS = {"tests/_browser_demo.ipynb": "browser_demo.png", "nbs/06_explorer.ipynb": "explorer.png"}

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# JupyterLab user settings written into a throw-away user_settings_dir.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"checkForUpdates": False, "fetchNews": "false"},
    # JupyterLab 4 virtualises off-screen cells; render them all so outputs of every cell are in the DOM
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/extensionmanager-extension/plugin": {"enabled": False},
}

# Generous limits for slow machines; every wait polls.
SERVER_START_S = 90
KERNEL_READY_S = 90
RUN_ALL_S = float(os.environ.get("EELAB_BROWSER_RUN_ALL_S", 120))  # run-all budget (loads a model)
RENDER_S = 60
UPDATE_S = 30

VIEWPORT = {"width": 1366, "height": 768}      # a common laptop screen (issue 8 §3)
# The explorer's parts, by the CSS classes eelab.explorer gives them; all must fit one screen at once.
EXPLORER_PARTS = ("controls", "text", "counters", "legend", "figure")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(msg: str):
    """Skip locally, fail in CI."""
    if _in_ci():
        pytest.fail(f"{msg} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(msg)


# --------------------------------------------------------------------------- JupyterLab server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jupyter_lab_exe() -> str:
    exe = Path(sys.executable).with_name("jupyter-lab")
    if exe.exists():
        return str(exe)
    found = shutil.which("jupyter-lab")
    if not found:
        _missing("jupyter-lab executable not found")
    return found


def _write_settings(settings_dir: Path) -> None:
    for key, value in LAB_SETTINGS.items():
        f = settings_dir / f"{key}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))


def _status_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except Exception:
        return False


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def start_lab(tmp: Path, log_path: Path, attempts: int = 3) -> tuple[subprocess.Popen, str, str]:
    """Start jupyter-lab on a free port; return (process, base_url, token) once /api/status answers."""
    settings = tmp / "user-settings"
    _write_settings(settings)
    (tmp / "workspaces").mkdir(exist_ok=True)
    (tmp / "runtime").mkdir(exist_ok=True)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), PYTHONUNBUFFERED="1")
    env.pop("JUPYTER_TOKEN", None)
    token = secrets.token_hex(16)
    last = ""
    for _ in range(attempts):
        port = _free_port()
        cmd = [
            _jupyter_lab_exe(), "--allow-root", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={ROOT}",
            f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run commands, read kernel state
            "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
        ]
        log = open(log_path, "ab")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline and proc.poll() is None:
            if _status_ok(f"{base}/api/status?token={token}"):
                return proc, base, token
            time.sleep(0.25)
        last = f"exit code {proc.poll()}" if proc.poll() is not None else "timed out"
        _kill_group(proc)
    tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
    raise RuntimeError(f"jupyter-lab did not start ({last}); log tail:\n{tail}")


@pytest.fixture(scope="module")
def chromium_path():
    path = shutil.which("chromium")
    if path is None:
        _missing("chromium not found on PATH; run tools/install_browser.sh (Debian package 'chromium')")
    return path


@pytest.fixture
def lab(chromium_path, tmp_path_factory, request):
    """A fresh server (and so a fresh workspace) per test: a shared one restores the previous test's tab
    beside this one, late, and its plots and outputs then sit in the page too."""
    ARTIFACTS.mkdir(exist_ok=True)
    tmp = tmp_path_factory.mktemp("lab")
    test_name = re.sub(r"[^\w.-]+", "_", request.node.name)
    log_path = ARTIFACTS / f"jupyter-lab.{test_name}.log"
    log_path.unlink(missing_ok=True)
    proc, base, token = start_lab(tmp, log_path)
    try:
        # The frontend loads its settings from this endpoint: prove autosave is really off.
        url = f"{base}/lab/api/settings/@jupyterlab/docmanager-extension:plugin?token={token}"
        with urllib.request.urlopen(url, timeout=10) as r:
            composite = json.load(r)["settings"]
        assert composite.get("autosave") is False, f"autosave not disabled: {composite}"
        yield {"base": base, "token": token, "log": log_path}
    finally:
        _kill_group(proc)


@pytest.fixture
def browser_context(chromium_path, tmp_path_factory):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright (pip) is not installed")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            user_data_dir=str(profile), executable_path=chromium_path, headless=True,
            args=CHROMIUM_ARGS, viewport=VIEWPORT,
        )
        try:
            yield ctx
        finally:
            ctx.close()


# --------------------------------------------------------------------------- page helpers

_PANEL_JS = """
() => {
  const app = window.jupyterapp;
  const w = app && app.shell && app.shell.currentWidget;
  return (w && w.content && w.sessionContext) ? w : null;
}
"""

KERNEL_STATE_JS = f"""
() => {{
  const w = ({_PANEL_JS})();
  if (!w) return {{state: 'no-panel'}};
  const sc = w.sessionContext;
  const k = sc.session && sc.session.kernel;
  return {{state: k ? k.status : 'no-kernel', ready: sc.isReady, kernel: k ? k.name : null,
           dialog: !!document.querySelector('.jp-Dialog')}};
}}
"""

RUN_STATE_JS = f"""
() => {{
  const w = ({_PANEL_JS})();
  if (!w) return {{done: false, why: 'no-panel'}};
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  const pending = cells.filter(c => c.model.executionCount == null).length;
  const errors = [];
  for (const c of cells) {{
    const outs = c.model.outputs.toJSON();
    for (const o of outs) if (o.output_type === 'error')
      errors.push(o.ename + ': ' + o.evalue + '\\n' + (o.traceback || []).join('\\n'));
  }}
  const status = k ? k.status : 'no-kernel';
  return {{done: pending === 0 && status === 'idle', pending, status, errors, n: cells.length}};
}}
"""

# Fill colours of the bars of the named bar trace, one list per plot that has such a trace.
# Plotly binds calcdata to each trace group via d3 (g.__data__[0].trace); bars are g.point > path.
BARS_JS = """
(name) => {
  const found = [];
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;    // this notebook's plots only
  for (const gd of ((w && w.node) || document).querySelectorAll('.js-plotly-plot')) {
    for (const g of gd.querySelectorAll('g.barlayer g.trace.bars')) {
      const cd = g.__data__;
      const tr = cd && cd[0] && cd[0].trace;
      if (!tr || tr.name !== name) continue;
      const paths = Array.from(g.querySelectorAll('g.point > path'));
      found.push(paths.map(p => p.style.fill || getComputedStyle(p).fill));
    }
  }
  return found;
}
"""


def _hex(css: str) -> str:
    """'rgb(42, 157, 143)' / '#2A9D8F' -> '#2a9d8f'."""
    css = css.strip().lower()
    m = re.fullmatch(r"rgba?\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*(?:,\s*[\d.]+\s*)?\)", css)
    if m:
        return "#" + "".join(f"{int(v):02x}" for v in m.groups())
    return css


def wait_for(fn, timeout: float, what: str, interval: float = 0.25, diag=None):
    """Poll fn() until it returns something truthy; raise with diagnostics on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    extra = f"\n{diag()}" if diag else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last={last!r}{extra}")


CLOSE_OTHER_TABS_JS = """
() => {
  const app = window.jupyterapp, current = app.shell.currentWidget;
  const others = Array.from(app.shell.widgets('main')).filter(w => w !== current);
  for (const w of others) w.dispose();          // no save prompt: autosave is off and nothing is kept
  return others.length;
}
"""


def open_notebook(page, lab, nb_path: str) -> None:
    url = f"{lab['base']}/lab/tree/{nb_path}?token={lab['token']}"
    page.goto(url, wait_until="domcontentloaded", timeout=SERVER_START_S * 1000)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=KERNEL_READY_S * 1000)
    # The notebook names its kernelspec, so no kernel picker should appear; if one does, accept it.
    def ready():
        st = page.evaluate(KERNEL_STATE_JS)
        if st.get("dialog"):
            btn = page.locator(".jp-Dialog .jp-mod-accept")
            if btn.count():
                btn.first.click()
        return st.get("ready") and st.get("state") == "idle"
    wait_for(ready, KERNEL_READY_S, "kernel idle", diag=lambda: page.evaluate(KERNEL_STATE_JS))
    # The lab restores the tabs of notebooks opened before (another test's): close them, so that this
    # notebook's plots and sliders are the only ones in the page.
    page.evaluate(CLOSE_OTHER_TABS_JS)


def run_all_cells(page) -> dict:
    # Clear saved outputs first (resets execution counts, drops stale widget views), then run.
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    wait_for(lambda: page.evaluate(RUN_STATE_JS)["pending"] == page.evaluate(RUN_STATE_JS)["n"],
             UPDATE_S, "outputs cleared", diag=lambda: page.evaluate(RUN_STATE_JS))
    run_all = "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }"
    page.evaluate(run_all)
    issued = [time.monotonic()]
    # Wait until every code cell has an execution count and the kernel is idle again.
    def finished():
        # JupyterLab sometimes raises its kernel picker late (the notebook names its kernelspec, and more so
        # when another notebook's tab is restored beside it), and the run-all is lost behind it: accept the
        # picker, and while no cell has run and the kernel sits idle, ask again every few seconds.
        accept = page.locator(".jp-Dialog .jp-mod-accept")
        if accept.count():
            accept.first.click()
            issued[0] = time.monotonic()
            return None
        s = page.evaluate(RUN_STATE_JS)
        if s["pending"] == s["n"] and s["status"] == "idle" and time.monotonic() - issued[0] > 5:
            page.evaluate(run_all)
            issued[0] = time.monotonic()
        return s if (s["done"] or s["errors"]) else None
    state = wait_for(finished, RUN_ALL_S, "all cells executed",
                     diag=lambda: page.evaluate(RUN_STATE_JS))
    assert not state["errors"], "notebook raised:\n" + "\n\n".join(state["errors"])
    return state


def outputs_text(page) -> str:
    "Outputs of the current notebook only (a restored tab of the demo notebook prints N_TOKENS too)."
    return "\n".join(page.locator(f"{panel(page)} .jp-OutputArea-output").all_inner_texts())


def expected_n_tokens(page) -> int:
    text = outputs_text(page)
    m = re.search(r"N_TOKENS\s*=\s*(\d+)", text)
    assert m, "notebook output must contain a line 'N_TOKENS=<n>'"
    return int(m.group(1))


def bar_colours(page, name: str = TRACE_NAME) -> list[str] | None:
    found = page.evaluate(BARS_JS, name)
    assert len(found) <= 1, f"{len(found)} rendered plots contain a bar trace named {name!r}"
    return [_hex(c) for c in found[0]] if found else None


def wait_for_bars(page, n: int) -> list[str]:
    def ok():
        cols = bar_colours(page)
        return cols if cols is not None and len(cols) == n and all(cols) else None
    return wait_for(ok, RENDER_S, f"{n} bars in plotly trace {TRACE_NAME!r}",
                    diag=lambda: f"bars now: {bar_colours(page)}")


def panel(page) -> str:
    "CSS selector of the current notebook panel (a restored tab of another notebook may hold sliders too)."
    return "#" + page.evaluate("() => window.jupyterapp.shell.currentWidget.node.id")


def slider(page, description: str = SLIDER_DESCRIPTION):
    loc = page.locator(f"{panel(page)} .widget-slider").filter(
        has=page.locator(".widget-label", has_text=re.compile(rf"^\s*{re.escape(description)}\s*$")))
    loc.first.wait_for(state="visible", timeout=RENDER_S * 1000)
    assert loc.count() == 1, f"expected one slider described {description!r}, found {loc.count()}"
    return loc.first


def _near(text: str, value: float) -> bool:
    try:
        return abs(float(text) - value) < 1e-6
    except ValueError:
        return False


def readout(sl) -> str:
    return sl.locator(".widget-readout").inner_text().strip()


def set_slider_by_readout(page, sl, value: float) -> None:
    """Type a value into the contenteditable readout and press Enter."""
    ro = sl.locator(".widget-readout")
    ro.click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type(f"{value:g}")
    page.keyboard.press("Enter")
    wait_for(lambda: _near(readout(sl), value), UPDATE_S, f"readout {value}",
             diag=lambda: readout(sl))


def press_slider_key(sl, key: str, times: int = 1) -> None:
    """Focus the noUiSlider handle and press a key (ArrowLeft/Right, PageUp/Down, Home, End)."""
    handle = sl.locator(".noUi-handle")
    handle.focus()
    for _ in range(times):
        handle.press(key)


def wait_colours(page, pred, what: str) -> list[str]:
    return wait_for(lambda: (c := bar_colours(page)) and pred(c) and c, UPDATE_S, what,
                    diag=lambda: f"colours now: {bar_colours(page)}")


SCROLL_TO_EXPLORER_JS = """
() => { const el = document.querySelector('.eelab-explorer');
        if (el) el.scrollIntoView({block: 'start'}); return !!el; }
"""

# Bounding boxes of the explorer's parts, whether the text box overflows sideways, and the visible part
# of the notebook's scrolling panel (below JupyterLab's toolbars, above its status bar).
EXPLORER_BOXES_JS = """
(parts) => {
  const out = {};
  let sc = document.querySelector('.eelab-explorer');
  while (sc && !/(auto|scroll)/.test(getComputedStyle(sc).overflowY)) sc = sc.parentElement;
  const v = sc ? sc.getBoundingClientRect() : {top: 0, left: 0, bottom: innerHeight, right: innerWidth};
  out.panel = {count: 1, top: v.top, bottom: v.bottom, left: v.left, right: v.right};
  for (const p of parts) {
    const els = document.querySelectorAll('.eelab-' + p);
    if (els.length !== 1) { out[p] = {count: els.length}; continue; }
    const r = els[0].getBoundingClientRect();
    out[p] = {count: 1, top: r.top, bottom: r.bottom, left: r.left, right: r.right,
              scrollWidth: els[0].scrollWidth, clientWidth: els[0].clientWidth};
  }
  return out;
}
"""


def check_explorer_fits_one_screen(page) -> dict:
    """Scroll the explorer to the top of the notebook panel; every part must then lie inside the viewport."""
    assert page.evaluate(SCROLL_TO_EXPLORER_JS), "no element with class eelab-explorer"
    page.wait_for_timeout(300)                         # let the scroll and plotly's autosize settle
    boxes = page.evaluate(EXPLORER_BOXES_JS, list(EXPLORER_PARTS))
    panel = boxes.pop("panel")
    top, left = max(panel["top"], 0), max(panel["left"], 0)
    bottom, right = min(panel["bottom"], VIEWPORT["height"]), min(panel["right"], VIEWPORT["width"])
    for part, b in boxes.items():
        assert b["count"] == 1, f"{b['count']} elements with class eelab-{part}: {boxes}"
        assert b["bottom"] > b["top"] and b["right"] > b["left"], f"eelab-{part} is not rendered: {b}"
        inside = b["top"] >= top and b["left"] >= left and b["bottom"] <= bottom and b["right"] <= right
        screen = f"{VIEWPORT['width']}x{VIEWPORT['height']}"
        assert inside, (f"eelab-{part} {b} is not within the visible notebook "
                        f"({top}..{bottom} x {left}..{right}) of a {screen} screen; all parts: {boxes}")
    text = boxes["text"]
    assert text["scrollWidth"] <= text["clientWidth"] + 1, f"the text runs off the right edge: {text}"
    return boxes


# Verify-pass blocks of the explorer's self-spec mode: per plot inside the explorer, the layout's shapes
# named "verify pass ..." and how many of them plotly drew (shape paths carry their layout index,
# data-index).
BLOCKS_JS = """
() => {
  const out = [];
  for (const gd of document.querySelectorAll('.eelab-explorer .js-plotly-plot')) {
    const names = ((gd._fullLayout && gd._fullLayout.shapes) || []).map(s => s.name || '');
    const drawn = Array.from(gd.querySelectorAll('.shapelayer path[data-index]'))
      .filter(p => (names[+p.getAttribute('data-index')] || '').startsWith('verify pass'));
    out.push({blocks: names.filter(n => n.startsWith('verify pass')).length, drawn: drawn.length});
  }
  return out;
}
"""


def check_self_spec_mode(page) -> None:
    """Select self-spec: draft-length slider in, threshold slider out, bars coloured by the accept pattern
    the notebook printed, one drawn block per verify pass, still one screen."""
    m = re.search(r"SELF_SPEC_PATTERN=([av]+)", outputs_text(page))
    assert m, "the explorer notebook must print 'SELF_SPEC_PATTERN=<a|v per token>'"
    pattern = m.group(1)
    here = panel(page)
    page.locator(f"{here} .widget-toggle-button", has_text=re.compile(r"^\s*self-spec\s*$")).first.click()
    want = [SHALLOW if c == "a" else DEEP for c in pattern]
    wait_colours(page, lambda c: c == want, "self-spec bars coloured by the accept pattern")
    passes = pattern.count("v")
    def blocks():
        found = [b for b in page.evaluate(BLOCKS_JS) if b["blocks"]]
        return found if found and found[0]["drawn"] == passes else None
    found = wait_for(blocks, UPDATE_S, f"{passes} verify-pass blocks drawn",
                     diag=lambda: page.evaluate(BLOCKS_JS))
    assert len(found) == 1 and found[0]["blocks"] == passes, found      # one explorer plot, one block a pass
    slider(page, "draft length")                               # visible now
    label = page.locator(".widget-label", has_text="threshold")
    threshold = page.locator(f"{here} .widget-slider").filter(has=label)
    assert not threshold.first.is_visible(), "threshold slider shown in self-spec"
    check_explorer_fits_one_screen(page)


# --------------------------------------------------------------------------- the test


def _params():
    for nb in NOTEBOOKS:
        marks = []
        if nb == "nbs/06_explorer.ipynb" and not (ROOT / nb).exists():
            marks = [pytest.mark.skip(reason="nbs/06_explorer.ipynb not written yet")]
        yield pytest.param(nb, id=Path(nb).stem, marks=marks)


@pytest.mark.parametrize("nb_path", list(_params()))
def test_notebook_widgets_in_browser(nb_path, lab, browser_context):
    nb_file = ROOT / nb_path
    digest = hashlib.sha256(nb_file.read_bytes()).hexdigest()
    shot = ARTIFACTS / SCREENSHOTS.get(nb_path, Path(nb_path).stem + ".png")
    console_log = ARTIFACTS / (Path(shot).stem + ".console.log")
    messages: list[str] = []
    page = browser_context.new_page()
    page.on("console", lambda m: messages.append(f"[{m.type}] {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: messages.append(f"[pageerror] {e}"))
    try:
        open_notebook(page, lab, nb_path)
        run_all_cells(page)
        n = expected_n_tokens(page)
        assert n > 0

        # (a) one bar per token, (b) colours come from the two-colour palette
        initial = wait_for_bars(page, n)
        assert set(initial) <= {SHALLOW, DEEP}, f"unexpected bar colours {set(initial)}"
        page.locator(f"{panel(page)} .js-plotly-plot").first.scroll_into_view_if_needed()

        if nb_path == "nbs/06_explorer.ipynb":
            check_explorer_fits_one_screen(page)

        sl = slider(page)
        start = float(readout(sl))      # the demo starts at 0.5, the explorer at the mined threshold
        assert 0 < start < 1, f"threshold starts at {readout(sl)}"
        mined = re.search(r"at the mined threshold ([\d.]+)", outputs_text(page))
        if nb_path == "nbs/06_explorer.ipynb":
            assert mined and _near(readout(sl), float(mined.group(1))), f"starts at {readout(sl)}: {mined}"

        # (c) threshold 0: every token exits shallow
        set_slider_by_readout(page, sl, 0.0)
        wait_colours(page, lambda c: set(c) == {SHALLOW}, "all bars shallow at threshold 0")

        # keyboard on the noUiSlider handle: End -> max (1.0); deep bars must appear
        press_slider_key(sl, "End")
        wait_for(lambda: _near(readout(sl), 1.0), UPDATE_S, "readout 1.00 after End",
                 diag=lambda: readout(sl))
        high = wait_colours(page, lambda c: DEEP in c, "deep bars at threshold 1")
        assert set(high) != {SHALLOW}
        assert len(high) == n

        # arrow keys move by one step
        press_slider_key(sl, "ArrowLeft", 3)
        wait_for(lambda: _near(readout(sl), 0.97), UPDATE_S, "readout 0.97 after 3x ArrowLeft",
                 diag=lambda: readout(sl))

        # back to the start value: colours return to the initial rendering
        set_slider_by_readout(page, sl, start)
        wait_colours(page, lambda c: c == initial, f"initial colours back at threshold {start}")
        assert len(bar_colours(page)) == n

        if nb_path == "nbs/06_explorer.ipynb":        # issue 10: the self-spec mode, in the browser
            check_self_spec_mode(page)
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):      # the screenshot shows the explorer's whole screen
            page.evaluate(SCROLL_TO_EXPLORER_JS)
        with contextlib.suppress(Exception):
            page.screenshot(path=str(shot), full_page=False)
        console_log.write_text("\n".join(messages) + ("\n" if messages else ""))
        if messages:  # shown by pytest when the test fails
            print(f"browser console ({console_log}):", *messages[-50:], sep="\n  ")
        page.close()
    # (d) artifact written; autosave is off, so the notebook on disk is untouched
    assert shot.exists() and shot.stat().st_size > 0
    assert hashlib.sha256(nb_file.read_bytes()).hexdigest() == digest, f"{nb_path} was modified on disk"
