"""Build README.md from index.ipynb (quarto, and so nbdev_readme, is not available here).

Markdown cells are copied as they are; code cells become ```python blocks, except cells marked
`#| hide` or `#| eval: false` (set-up cells). The committed outputs of the code cells that are shown
follow them (tools/execute_notebooks.py puts them there): printed text as a ```text block, Markdown as it
is, and HTML tables (pandas) as HTML. Figures, widgets and other HTML need a notebook viewer and are left
out. `--check` exits 1 when README.md is stale.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "<!-- generated from index.ipynb by tools/build_readme.py: edit the notebook, not this file -->\n\n"


def _text(value) -> str: return ("".join(value) if isinstance(value, list) else value).strip("\n")


def render_output(out: dict) -> str | None:
    "One committed output as Markdown, or None if a README cannot show it."
    if out.get("output_type") == "stream":
        text = _text(out["text"]) if out.get("name") == "stdout" else ""
        return f"```text\n{text}\n```" if text else None
    data = out.get("data", {})
    if "text/markdown" in data: return _text(data["text/markdown"])
    html = _text(data.get("text/html", ""))
    if "<table" in html and "<script" not in html: return html
    return None


def _shown(lines: list[str]) -> bool:
    directives = [line.replace(" ", "") for line in lines if line.startswith("#|")]
    return "#|hide" not in directives and "#|eval:false" not in directives


def render(nb_path=ROOT / "index.ipynb") -> str:
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for cell in nb["cells"]:
        src = "".join(cell["source"]).strip()
        if not src: continue
        if cell["cell_type"] == "markdown":
            parts.append(src)
        elif cell["cell_type"] == "code" and _shown(src.splitlines()):
            code = "\n".join(line for line in src.splitlines() if not line.startswith("#|")).strip()
            if code: parts.append(f"```python\n{code}\n```")
            parts += [md for md in map(render_output, cell.get("outputs", [])) if md]
    return HEADER + "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    text, out = render(), ROOT / "README.md"
    if "--check" in sys.argv:
        if not out.exists() or out.read_text() != text:
            sys.exit("README.md is stale: run `python tools/build_readme.py` and commit it")
    else:
        out.write_text(text)
