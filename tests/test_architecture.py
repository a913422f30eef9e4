"""The house rules of eelab's layout (issue 9): every module has a floor, and no module imports one above it.

The table in index.ipynb ("How the library is built") states the same order; `test_index_table_matches`
keeps the two from drifting apart.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "eelab"

# Lowest floor first. A module may import only modules on a lower floor (function-level imports count too).
FLOORS = [
    ["config"],
    ["data", "cost", "gemv", "compiled"],
    ["model", "rows"],
    ["cache", "estimators", "losses"],
    ["generate"],
    ["speculate", "exits", "hf", "drafts"],
    ["batch"],  # batched self-speculation uses speculate's acceptance rules
    ["checkpoint", "calibrate", "trace"],
    ["train", "report", "render", "exercises", "adapter"],  # none of them needs the trainer but train itself
    ["analysis", "bench_spec", "bench_rows", "explorer"],  # trained runs compared; the bench's spec and rows
    ["bench_profile", "bench_report"],
    ["bench_decode", "bench_train"],
    ["bench"],
    ["lab"],
]
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}


def modules() -> list[str]:
    return sorted(p.stem for p in LIB.glob("*.py") if not p.stem.startswith("_"))


def imported_eelab_modules(name: str, source: str | None = None) -> set[str]:
    "Every eelab module that `name` imports, at the top or inside a function."
    tree = ast.parse((LIB / f"{name}.py").read_text() if source is None else source)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:  # from .model import ...
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import model
                found.update(a.name for a in node.names)
            elif node.module and node.module.startswith("eelab."):
                found.add(node.module.split(".")[1])
            elif node.module == "eelab":
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("eelab."))
    return found - {name}


def test_every_module_has_a_floor():
    missing = [m for m in modules() if m not in FLOOR]
    assert not missing, f"modules without a floor in tests/test_architecture.py FLOORS: {missing}"


def test_no_module_imports_one_above_it():
    bad = []
    for m in modules():
        for dep in imported_eelab_modules(m):
            if dep in FLOOR and FLOOR[dep] >= FLOOR[m]:
                bad.append(f"{m} (floor {FLOOR[m]}) imports {dep} (floor {FLOOR[dep]})")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_every_import_form():
    "The rule above can fail: each way of importing an eelab module is seen, inside functions too."
    src = (
        "import torch\nfrom .cache import KVCache\nfrom . import data\nimport eelab.bench\n"
        "def f():\n    from eelab.train import x\n    from eelab import report\n"
    )
    assert imported_eelab_modules("model", src) == {"cache", "data", "bench", "train", "report"}


def test_index_table_matches():
    "The architecture table in index.ipynb names every module, in floor order."
    text = (ROOT / "index.ipynb").read_text()
    rows = re.findall(r"\|\s*`eelab\.(\w+)`\s*\|", text)
    assert rows, "index.ipynb has no architecture table with `eelab.<module>` rows"
    assert set(rows) == set(modules()), sorted(set(rows) ^ set(modules()))
    assert [FLOOR[r] for r in rows] == sorted(FLOOR[r] for r in rows), (
        "index.ipynb lists modules out of floor order"
    )


def private_imports(name: str, source: str | None = None) -> list[str]:
    "Names starting with `_` that module `name` imports from another eelab module (`from .x import _y`)."
    tree = ast.parse((LIB / f"{name}.py").read_text() if source is None else source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("eelab")):
            module = node.module or "eelab"
            found += [f"{name} imports {a.name} from {module}" for a in node.names if a.name.startswith("_")]
    return found


def test_no_private_imports_across_modules():
    "A module uses another's public names only: a private name may change without notice (issue 20)."
    found = sorted(line for m in modules() for line in private_imports(m))
    assert not found, "\n".join(found)


def test_the_private_import_check_can_fail():
    src = "from .train import _step_fn, exit_weights\nfrom eelab.cost import WorkMeter\n"
    src += "def f():\n    from . import _x\n"
    want = ["bench imports _step_fn from train", "bench imports _x from eelab"]
    assert private_imports("bench", src) == want
