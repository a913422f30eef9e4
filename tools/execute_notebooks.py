"""Execute notebooks in place and keep their outputs, so a reader on GitHub or nbviewer sees them.

    python tools/execute_notebooks.py index.ipynb nbs/06_explorer.ipynb nbs/02_model.ipynb

Each notebook runs top to bottom in a fresh `python3` kernel (working directory: the notebook's folder;
one CPU thread and PYTHONHASHSEED=0, so seeded results repeat), cells marked `#| eval: false` are
skipped (the Colab set-up cell), and then `nbdev_clean --fname` tidies it. Committed outputs must not
churn when a notebook is executed again, so the outputs are normalised:

- wall-clock numbers are masked: `0.53 s`, `155 ms`, `312 tokens/s`, `'seconds': 0.0123` -> `<t> s`, ...
  (a notebook should not print timings it wants committed; these are the ones that slipped through);
- random ids (UUIDs of plotly divs and widgets) are renumbered in order of appearance, memory
  addresses (`at 0x7f...`) become `0x0`;
- widget views (they need a live kernel) become one line of text saying so; stderr (progress bars,
  warnings with local paths) is dropped; adjacent chunks of printed text are merged into one output
  (how the kernel splits them depends on timing).

Plotly figures are rendered as plotly's own JSON only (JupyterLab and VS Code draw it interactively), and
tools/plotly_png.py adds a static PNG drawn from it (GitHub and nbviewer run no JavaScript). The kernel
talks over local IPC sockets (`eelab.lab`), so ipykernel has no unencrypted TCP to warn about. Each
notebook's wall time is printed: the minutes of the notebook table in index.ipynb are these (on a shared
2-core machine: noisy, rounded up).

A cell that raises stops the run and leaves that notebook unchanged on disk.
"""
from __future__ import annotations

import json, os, re, subprocess, sys, time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from plotly_png import add_pngs, close_browser      # tools/ is sys.path[0] when run as a script

ROOT = Path(__file__).resolve().parents[1]
WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "[interactive widget: run the notebook to use it; a static view follows where there is one]"
SETUP = "import plotly.io as _pio\n_pio.renderers.default = 'plotly_mimetype'\ndel _pio"
TIME_UNITS = r"(?:ms|µs|us|ns|s|sec|seconds|tokens/s|tok/s)"
MASKS = [
    (re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?:e-?\d+)?(\s?)(" + TIME_UNITS + r")(?![\w/])"), r"<t>\1\2"),
    (re.compile(r"""((?:['"]?\w*seconds\w*['"]?)\s*[:=]\s*)-?\d[\d.e+-]*"""), r"\1<t>"),
    (re.compile(r"\bat 0x[0-9a-fA-F]+"), "at 0x0"),
]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def mask_text(text: str) -> str:
    "Wall-clock numbers and memory addresses replaced by placeholders."
    for pattern, repl in MASKS: text = pattern.sub(repl, text)
    return text


class Renumber:
    "Maps each distinct UUID to a stable one, in order of first appearance in the notebook."
    def __init__(self): self.seen: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        def stable(m):
            return self.seen.setdefault(m.group(0), f"00000000-0000-4000-8000-{len(self.seen):012}")
        return UUID.sub(stable, text)


def _join(v): return "".join(v) if isinstance(v, list) else v


def normalise_output(out: dict, renumber: Renumber) -> dict | None:
    "One output made deterministic; None to drop it."
    if out.get("output_type") == "stream":
        if out.get("name") == "stderr": return None
        out["text"] = mask_text(_join(out["text"]))
        return out
    data = out.get("data")
    if data is None: return out
    if WIDGET in data: return nbformat.v4.new_output("display_data", data={"text/plain": WIDGET_NOTE})
    for mime, value in list(data.items()):
        if mime.startswith("text/") or mime in ("application/javascript", "image/svg+xml"):
            data[mime] = renumber(mask_text(_join(value)))
        elif mime.endswith("json"):
            data[mime] = json.loads(renumber(json.dumps(value)))
    return out


def merge_streams(outputs: list[dict]) -> list[dict]:
    "Adjacent stdout chunks as one output: how a kernel splits printed text into messages is timing."
    merged = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if prev is not None and out.get("output_type") == prev.get("output_type") == "stream" \
                and out.get("name") == prev.get("name"):
            prev["text"] = _join(prev["text"]) + _join(out["text"])
        else:
            merged.append(out)
    return merged


def skipped(cell) -> bool:
    directives = [line.replace(" ", "") for line in cell.source.splitlines()]
    return cell.cell_type != "code" or "#|eval:false" in directives


def execute(path: Path, timeout: int = 900) -> int:
    "Run the notebook, normalise its outputs, write it back; the number of outputs kept."
    from eelab.lab import local_kernel_manager
    previous = json.loads(path.read_text(encoding="utf-8"))     # its PNGs are reused for unchanged figures
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            kernel_manager_class=local_kernel_manager(),
                            resources={"metadata": {"path": str(path.parent)}})
    nb.cells.insert(0, nbformat.v4.new_code_cell(SETUP))                # taken out again below
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if not skipped(cell): client.execute_cell(cell, i)
    del nb.cells[0]
    renumber, kept = Renumber(), 0
    for cell in nb.cells:
        if cell.cell_type != "code": continue
        kept_outputs = [o for o in (normalise_output(o, renumber) for o in cell.outputs) if o is not None]
        cell.outputs = merge_streams(kept_outputs)
        kept += len(cell.outputs)
    add_pngs(nb, previous=previous)         # a static image/png beside plotly's JSON, for GitHub
    nbformat.write(nb, path)
    subprocess.run([str(Path(sys.executable).with_name("nbdev_clean")), "--fname", str(path)], check=True)
    return kept


def main(argv: list[str]) -> int:
    if not argv or any(a.startswith("-") for a in argv):
        print(__doc__)
        return 2
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    try:
        for arg in argv:
            path = Path(arg).resolve()
            if not path.exists(): raise SystemExit(f"{arg}: no such notebook")
            start = time.perf_counter()
            kept = execute(path)
            print(f"{arg}: {kept} outputs, {time.perf_counter() - start:.0f} s", flush=True)
    finally:
        close_browser()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
