"""How a lesson reads (issue 19): the share of exported cells that are followed by a check or a shown value.

    python tools/lesson_rhythm.py                 # every lesson notebook nbs/[0-9]*.ipynb, worst first
    python tools/lesson_rhythm.py nbs/11_speculate.ipynb

A fastcore-style lesson alternates prose, a small `#| export` cell with one idea, and a tiny cell that
shows its value or asserts a property. For each notebook this counts the exported cells, and of those the
ones whose next code cell is not exported (a check, a shown value, an example); markdown in between is
fine. An exported cell followed by another exported cell, or by nothing, counts as not followed.
"""
from __future__ import annotations

import json, re, statistics, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPORT = re.compile(r"^#\|\s*export[si]?\s*$", re.M)


def is_exported(source: str) -> bool: return bool(EXPORT.search(source))


def rhythm(path: Path) -> tuple[int, int]:
    "(exported cells, exported cells whose next code cell is not exported) of one notebook."
    cells = json.loads(Path(path).read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    flags = [is_exported(s) for s in code]
    followed = sum(1 for i, f in enumerate(flags) if f and i + 1 < len(flags) and not flags[i + 1])
    return sum(flags), followed


def lessons(root: Path = ROOT) -> list[Path]: return sorted((root / "nbs").glob("[0-9]*.ipynb"))


def table(paths: list[Path]) -> list[tuple[str, int, int, float]]:
    "(name, exported, followed, share) per notebook with exported cells, worst share first."
    rows = []
    for p in paths:
        n, followed = rhythm(p)
        if n: rows.append((Path(p).stem, n, followed, followed / n))
    return sorted(rows, key=lambda r: (r[3], r[0]))


def main(argv: list[str]) -> int:
    rows = table([Path(a) for a in argv] if argv else lessons())
    print(f"{'notebook':<22} {'exported':>8} {'followed':>8} {'share':>6}")
    for name, n, followed, share in rows: print(f"{name:<22} {n:>8} {followed:>8} {share:>6.0%}")
    if rows:
        shares = [r[3] for r in rows]
        total = sum(r[1] for r in rows), sum(r[2] for r in rows)
        print(f"{'median':<22} {'':>8} {'':>8} {statistics.median(shares):>6.0%}")
        print(f"{'all cells':<22} {total[0]:>8} {total[1]:>8} {total[1] / total[0]:>6.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
