"""Experiment 012 (verification at the cost of a step: the few-row kernel), re-run by papermill in its smoke
variant (a tiny random Llama, compiled with the eager backend)."""
import pytest

pytest.importorskip("transformers", reason="experiment 012 needs the extra: pip install eelab[hf]")
from eelab.rows import kernel_available

TIMEOUT_S = 300
pytestmark = [pytest.mark.usefixtures("private_data_dir"),   # conftest: a data folder of its own
              pytest.mark.skipif(not kernel_available(), reason="012 needs the few-row kernel (a compiler)")]
PATHS = ("split", "rows", "compiled_split", "compiled_rows")


def test_012_smoke(tmp_path):
    "Breaks if a section fails, a path leaves cached's greedy tokens, or the rows and findings disagree."
    from eelab.lab import run_experiment
    r = run_experiment("012_rows", tmp_path, dict(smoke=True, rows=[1, 4]), timeout=TIMEOUT_S)
    assert r["experiment"] == "012_rows" and r["smoke"] is True and r["config"]["backend"] == "eager"
    products = {(row["rows"], row["method"]) for row in r["products"]}
    assert products == {(M, k) for M in (1, 4) for k in ("split", "rows")}
    assert {(row["rows"], row["method"]) for row in r["steps"]} == {(M, p) for M in (1, 4) for p in PATHS}
    for row in r["products"]:
        assert row["gb_s"] == pytest.approx(r["config"]["product_bytes"] / (row["ms"] / 1e3) / 1e9)
    one = {row["method"]: row["ms"] for row in r["steps"] if row["rows"] == 1}
    for row in r["steps"]:
        assert row["over_one_step"] == pytest.approx(row["ms"] / one[row["method"]])
        assert row["over_split_one_step"] == pytest.approx(row["ms"] / one["split"])
    decoders = [row["method"] for row in r["decode_rows"]]
    assert decoders == ["hf_generate", "cached", "cached_split", "cached_rows"]
    assert all(row["same_tokens"] for row in r["decode_rows"])              # greedy: generate's tokens
    spec = {row["method"]: row for row in r["spec_rows"]}
    assert set(spec) == {f"{k}_{p}" for k in ("cached", "draft") for p in PATHS}
    assert all(row["same_as_cached"] == 1.0 for row in spec.values())      # lossless on every path
    assert spec[r["fastest_cached"]]["over_fastest"] == 1.0
    for row in spec.values(): assert row["q1"] <= row["over_fastest"] <= row["q3"]
    best = spec[r["best_draft"]]
    drafts = [row["over_fastest"] for n, row in spec.items() if n.startswith("draft")]
    assert best["over_fastest"] == max(drafts)
    assert r["pay"]["method"] == r["best_draft"] and r["pay"]["pass_steps"] > 0
    a = r["pay"]["acceptance_for_1_5x"]
    if a is not None:                                          # the formula at it: 1.5 x the pass's cost
        k = r["parameters"]["draft_len"]
        assert (1 - a ** (k + 1)) / (1 - a) == pytest.approx(1.5 * r["pay"]["pass_steps"], rel=1e-6)
    assert r["goal_reached"] == (best["q1"] >= 1.5)
    assert len(r["found"]) == 6 and ("not reached" in r["found"][-1]) == (not r["goal_reached"])


@pytest.mark.parametrize("bad,name", [(dict(rows=[9]), "rows"), (dict(draft_len=8), "draft_len"),
                                      (dict(backend="tvm"), "backend")])
def test_012_bad_parameter_fails_by_name(tmp_path, bad, name):
    from eelab.lab import run_experiment
    with pytest.raises(Exception, match=name):
        run_experiment("012_rows", tmp_path, dict(smoke=True, **bad), timeout=TIMEOUT_S)


def test_012_missing_adapter_dir_fails_by_name(tmp_path):
    from eelab.lab import run_experiment
    with pytest.raises(Exception, match="adapter_dir=.* is not allowed: a folder holding"):
        run_experiment("012_rows", tmp_path, dict(smoke=False, adapter_dir=str(tmp_path / "none")),
                       timeout=TIMEOUT_S)
