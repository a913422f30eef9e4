"""Build README.md from index.ipynb (quarto, and so nbdev_readme, is not available here).

Markdown cells are copied as they are; code cells become ```python blocks, except cells marked
`#| hide` or `#| eval: false` (set-up cells). `--check` exits 1 when README.md is stale.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "<!-- generated from index.ipynb by tools/build_readme.py: edit the notebook, not this file -->\n\n"


def render(nb_path=ROOT / "index.ipynb") -> str:
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for cell in nb["cells"]:
        src = "".join(cell["source"]).strip()
        if not src: continue
        if cell["cell_type"] == "markdown":
            parts.append(src)
        elif cell["cell_type"] == "code":
            lines = src.splitlines()
            directives = [l.replace(" ", "") for l in lines if l.startswith("#|")]
            if "#|hide" in directives or "#|eval:false" in directives: continue
            code = "\n".join(l for l in lines if not l.startswith("#|")).strip()
            if code: parts.append(f"```python\n{code}\n```")
    return HEADER + "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    text, out = render(), ROOT / "README.md"
    if "--check" in sys.argv:
        if not out.exists() or out.read_text() != text:
            sys.exit("README.md is stale: run `python tools/build_readme.py` and commit it")
    else:
        out.write_text(text)
