"""Write the Colab set-up cell of every notebook from ONE template.

Every notebook (nbs/*.ipynb, nbs/experiments/*.ipynb, index.ipynb) has one set-up cell, recognised by its
comment line `# Colab set-up`. In Google Colab it installs eelab from the repository named by `git_url`
in settings.ini and turns on Colab's widget manager; if the install fails it raises with the fix, so the
notebook stops there instead of dying one cell later with `ModuleNotFoundError`. Elsewhere it does nothing
(and nbdev skips it: `#| eval: false`).

    python tools/colab_cell.py                  # rewrite the cell in every notebook
    python tools/colab_cell.py nbs/06_explorer.ipynb index.ipynb     # only these
    python tools/colab_cell.py --check          # exit 1 naming each notebook whose cell differs

A notebook whose cell installs extras (`eelab[hf]`) keeps them. A notebook without the cell gets it
inserted after its `#| default_exp` cell (or after the first markdown cells). Each rewritten notebook
is then cleaned with `nbdev_clean --fname`.
"""
from __future__ import annotations

import configparser, json, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "# Colab set-up"

TEMPLATE = '''#| eval: false
#| hide
# Colab set-up (written by tools/colab_cell.py, the same in every notebook). In Google Colab: installs eelab
# and turns on third-party widgets. Elsewhere: does nothing. Colab shows this cell (it ignores `#| hide`).
import os, subprocess, sys
EELAB_PIP = "eelab{extras} @ git+{git_url}"  # from `git_url` in settings.ini
if os.path.exists("/content"):
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", EELAB_PIP],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        raise RuntimeError(
            f"Could not install {{EELAB_PIP!r}}:\\n{{pip.stderr[-1500:]}}\\n"
            "Fix: check that this runtime reaches GitHub, or install your own copy, e.g. "
            "`!pip install 'eelab @ git+https://github.com/<you>/eelab'`, then rerun this notebook. "
            "The URL comes from `git_url` in the repository's settings.ini: change it there and run "
            "`python tools/colab_cell.py` to rewrite this cell in every notebook.")
    from google.colab import output
    output.enable_custom_widget_manager()'''


def git_url(settings: Path = ROOT / "settings.ini") -> str:
    "The repository URL of settings.ini (`git_url`), without a trailing slash or `.git`."
    cp = configparser.ConfigParser()
    cp.read(settings)
    url = cp["DEFAULT"].get("git_url", "").strip().rstrip("/")
    if not url: raise SystemExit(f"{settings}: `git_url` is missing; the Colab cell installs eelab from it")
    return url.removesuffix(".git")


EXTRAS = re.compile(r"eelab(\[[\w,-]+\])? @")


def render(url: str | None = None, extras: str = "") -> str:
    "The set-up cell's source; `extras` such as `[hf]` install optional dependencies too."
    return TEMPLATE.format(git_url=url or git_url(), extras=extras)


def extras_of(nb: dict) -> str:
    "The pip extras the notebook's current set-up cell installs (`[hf]`), kept when it is rewritten."
    cells = setup_cells(nb)
    found = EXTRAS.search("".join(cells[0]["source"])) if cells else None
    return (found.group(1) or "") if found else ""


def notebooks() -> list[Path]:
    "Every notebook the template applies to."
    return sorted((ROOT / "nbs").glob("*.ipynb")) + sorted((ROOT / "nbs/experiments").glob("*.ipynb")) \
        + [ROOT / "index.ipynb"]


def setup_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code" and MARK in "".join(c["source"])]


def _insert_at(nb: dict) -> int:
    for i, c in enumerate(nb["cells"]):
        if "#| default_exp" in "".join(c["source"]): return i + 1
    i = 0
    while i < len(nb["cells"]) and nb["cells"][i]["cell_type"] == "markdown": i += 1
    return i


def rewrite(path: Path, url: str | None = None) -> bool:
    "Put the template (with the notebook's extras) into its set-up cell; True if the file changed."
    nb = json.loads(path.read_text())
    source = render(url, extras_of(nb))
    cells = setup_cells(nb)
    if len(cells) > 1: raise SystemExit(f"{path}: {len(cells)} cells contain {MARK!r}; expected one")
    lines = source.splitlines(keepends=True)
    if cells:
        if "".join(cells[0]["source"]) == source: return False
        cells[0]["source"] = lines
    else:
        cell = dict(cell_type="code", execution_count=None, metadata={}, outputs=[], source=lines)
        nb["cells"].insert(_insert_at(nb), cell)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


def stale(paths, url: str | None = None) -> list[str]:
    "Notebooks whose set-up cell is missing, doubled or not the template."
    bad = []
    for p in paths:
        nb = json.loads(Path(p).read_text())
        cells = setup_cells(nb)
        if len(cells) != 1 or "".join(cells[0]["source"]) != render(url, extras_of(nb)): bad.append(str(p))
    return bad


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [Path(a).resolve() for a in argv if a != "--check"] or notebooks()
    if check:
        bad = stale(paths)
        for p in bad: print(f"{p}: Colab set-up cell differs from tools/colab_cell.py's template")
        return 1 if bad else 0
    changed = [p for p in paths if rewrite(p)]
    nbdev_clean = Path(sys.executable).with_name("nbdev_clean")
    for p in changed:
        subprocess.run([str(nbdev_clean), "--fname", str(p)], check=True)
        print(f"rewrote {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
