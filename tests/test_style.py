"""Code a learner can read (issue 9 section 4): short lines, no `;`-joined statements,
lesson-sized exported cells.

ruff (`make lint`, part of `make test`) checks the rest; nbdev_export writes the library's `__all__`
wrapped at 120 columns, so line length is checked here, where that one generated block can be told apart.
"""

import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINE = 110
MEDIAN_CELL, MAX_CELL = 12, 40


def library_long_lines(text: str) -> list[int]:
    "Line numbers (1-based) over MAX_LINE, except nbdev's generated `__all__ = [...]` block."
    long, in_all = [], False
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith("__all__ = ["):
            in_all = True
        if len(line) > MAX_LINE and not in_all:
            long.append(i)
        if in_all and line.rstrip().endswith("]"):
            in_all = False
    return long


def exported_cell_sizes(nb_path: Path) -> list[int]:
    "Code lines of each `#| export` cell (directives, blank lines and comment-only lines not counted)."
    sizes = []
    for cell in json.loads(nb_path.read_text())["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] != "code" or not any(
            line.strip() in ("#| export", "#|export") for line in src.splitlines()
        ):
            continue
        code = [ln for ln in src.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        sizes.append(len(code))
    return sizes


def test_library_lines_fit():
    bad = {
        p.name: library_long_lines(p.read_text())
        for p in sorted((ROOT / "eelab").glob("*.py"))
        if p.name != "_modidx.py"
    }
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"lines over {MAX_LINE} characters (edit the notebook, then nbdev_export): {bad}"


def test_the_line_check_can_fail():
    text = "__all__ = ['a',\n           '" + "b" * 130 + "']\nx = 1\n" + "y = '" + "z" * 120 + "'\n"
    assert library_long_lines(text) == [4]


def test_no_semicolon_joined_statements():
    import ast, io, tokenize

    bad = []
    for p in sorted((ROOT / "eelab").glob("*.py")):
        toks = tokenize.generate_tokens(io.StringIO(p.read_text()).readline)
        bad += [f"{p.name}:{t.start[0]}" for t in toks if t.type == tokenize.OP and t.string == ";"]
        ast.parse(p.read_text())
    assert not bad, bad


def test_exported_cells_are_lesson_sized():
    sizes = {}
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        sizes[nb.name] = exported_cell_sizes(nb)
    every = [n for s in sizes.values() for n in s]
    too_big = {k: max(v) for k, v in sizes.items() if v and max(v) > MAX_CELL}
    assert not too_big, f"exported cells over {MAX_CELL} code lines: {too_big}"
    assert statistics.median(every) <= MEDIAN_CELL, (
        f"median exported cell {statistics.median(every)} > {MEDIAN_CELL}"
    )
