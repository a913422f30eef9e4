"""Experiment 010 (decoding's products on every core), re-run by papermill in its smoke variant (a tiny random
Llama)."""
import pytest

from eelab.rows import kernel_available
pytest.importorskip("transformers", reason="experiment 010 needs the extra: pip install eelab[hf]")
TIMEOUT_S = 300

pytestmark = pytest.mark.usefixtures("private_data_dir")  # conftest: a data folder of its own


def test_010_smoke(tmp_path):
    "Breaks if a section fails, a split run leaves cached's greedy tokens, or the rows and findings disagree."
    from eelab.lab import run_experiment
    r = run_experiment("010_gemv", tmp_path, dict(smoke=True, rows=[1, 4]), timeout=TIMEOUT_S)
    assert r["experiment"] == "010_gemv" and r["smoke"] is True and r["parameters"]["rows"] == [1, 4]
    for table in ("products", "steps"):
        got = {(row["rows"], row["method"]) for row in r[table]}
        assert got == {(M, k) for M in (1, 4) for k in ("plain", "split")}, table
        assert all(row["ms"] > 0 for row in r[table])
    for row in r["products"]:
        assert row["gb_s"] == pytest.approx(r["config"]["product_bytes"] / (row["ms"] / 1e3) / 1e9)
        assert row["roof_fraction"] == pytest.approx(row["gb_s"] * 1e9 / r["bandwidth"])
    one = {row["method"]: row["ms"] for row in r["steps"] if row["rows"] == 1}
    for row in r["steps"]: assert row["over_one_step"] == pytest.approx(row["ms"] / one[row["method"]])
    rows = ["cached_rows"] if kernel_available() else []          # the few-row kernel, where it builds
    assert [row["method"] for row in r["decode_rows"]] == ["hf_generate", "cached", "cached_split", *rows]
    assert all(row["same_tokens"] for row in r["decode_rows"])              # greedy: generate's tokens
    spec = {row["method"]: row for row in r["spec_rows"]}
    assert set(spec) == {"cached", "cached_split", "draft", "draft_split"}
    assert all(row["same_as_cached"] == 1.0 for row in spec.values())      # lossless, split or not
    assert spec["cached"]["speedup"] == 1.0 and spec["draft"]["acceptance"] is not None
    for row in spec.values(): assert row["q1"] <= row["speedup"] <= row["q3"]
    assert r["goal_reached"] == (spec["draft_split"]["q1"] >= 1.5)
    assert len(r["found"]) == 5 and ("not reached" in r["found"][-1]) == (not r["goal_reached"])


def test_010_bad_rows_fail_by_name(tmp_path):
    from eelab.lab import run_experiment
    with pytest.raises(Exception, match="rows"):
        run_experiment("010_gemv", tmp_path, dict(smoke=True, rows=[0]), timeout=TIMEOUT_S)


def test_010_missing_adapter_dir_fails_by_name(tmp_path):
    "An adapter_dir without the adapter stops the full run before the model loads, not with the bare exit."
    from eelab.lab import run_experiment
    missing = dict(smoke=False, adapter_dir=str(tmp_path / "none"))
    with pytest.raises(Exception, match="adapter_dir=.* is not allowed: a folder holding"):
        run_experiment("010_gemv", tmp_path, missing, timeout=TIMEOUT_S)
