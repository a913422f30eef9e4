"""Experiment 011 (compiled decoding), re-run by papermill in its smoke variant (a tiny random Llama)."""
import pytest

pytest.importorskip("transformers", reason="experiment 011 needs the extra: pip install eelab[hf]")
from eelab.compiled import compiler_found
from eelab.rows import kernel_available

TIMEOUT_S = 300

pytestmark = [pytest.mark.usefixtures("private_data_dir"),  # conftest: a data folder of its own
              pytest.mark.skipif(not compiler_found(), reason="torch.compile needs a C++ compiler")]


def test_011_smoke(tmp_path):
    "Breaks if a section fails, a compiled run leaves cached's greedy tokens, or rows and findings disagree."
    from eelab.lab import run_experiment
    r = run_experiment("011_compile", tmp_path, dict(smoke=True), timeout=TIMEOUT_S)
    assert r["experiment"] == "011_compile" and r["smoke"] is True
    assert r["config"]["backend"] == "eager"                    # the smoke run's: see the notebook
    first = {row["method"]: row for row in r["compile_rows"]}
    assert set(first) == {"cached", "draft"}
    for row in first.values():
        assert row["compile_s"] == pytest.approx(row["first_compiled_s"] - row["second_compiled_s"])
    rows = ["cached_rows"] if kernel_available() else []          # the few-row kernel, where it builds
    compiled = ["cached_compiled", *("cached_compiled_rows" for _ in rows)]
    assert [row["method"] for row in r["decode_rows"]] == ["hf_generate", "cached", "cached_split", *rows,
                                                           *compiled]
    assert all(row["same_tokens"] for row in r["decode_rows"])              # greedy: generate's tokens
    bf16 = {row["method"]: row for row in r["bf16"]["decode_rows"]}
    assert list(bf16) == ["hf_generate", "cached", "cached_split", *rows, *compiled]
    assert all(row["same_tokens"] for row in bf16.values())                # bf16: bf16 generate's tokens
    assert 2 * r["bf16"]["weight_bytes"] == r["decode_rows"][0]["weight_bytes"]   # half the bytes
    assert bf16["cached"]["roof_tokens_per_s"] == pytest.approx(2 * r["decode_rows"][0]["roof_tokens_per_s"])
    spec = {row["method"]: row for row in r["spec_rows"]}
    assert set(spec) == {"cached_split", "cached_compiled", "draft_split", "draft_compiled"}
    assert all(row["same_as_cached"] == 1.0 for row in spec.values())      # lossless, compiled or not
    for row in spec.values():
        assert row["q1"] <= row["over_cached_split"] <= row["q3"]
        assert row["compiled_q1"] <= row["over_cached_compiled"] <= row["compiled_q3"]
    assert r["goal_reached"] == (spec["draft_compiled"]["compiled_q1"] >= 1.5)
    assert len(r["found"]) == 5 and ("not reached" in r["found"][-1]) == (not r["goal_reached"])


def test_011_bad_parameter_fails_by_name(tmp_path):
    from eelab.lab import run_experiment
    with pytest.raises(Exception, match="draft_len"):
        run_experiment("011_compile", tmp_path, dict(smoke=True, draft_len=0), timeout=TIMEOUT_S)


def test_011_missing_adapter_dir_fails_by_name(tmp_path):
    "An adapter_dir without the adapter stops the full run before the model loads, not with the bare exit."
    from eelab.lab import run_experiment
    missing = dict(smoke=False, adapter_dir=str(tmp_path / "none"))
    with pytest.raises(Exception, match="adapter_dir=.* is not allowed: a folder holding"):
        run_experiment("011_compile", tmp_path, missing, timeout=TIMEOUT_S)
