"""Experiment 013 (bf16 on the few-row kernel), re-run by papermill in its smoke variant (a tiny random Llama
in bf16, compiled with the eager backend)."""
import statistics

import pytest

pytest.importorskip("transformers", reason="experiment 013 needs the extra: pip install eelab[hf]")
from eelab.rows import kernel_available

TIMEOUT_S = 300
pytestmark = [pytest.mark.usefixtures("private_data_dir"),   # conftest: a data folder of its own
              pytest.mark.skipif(not kernel_available(), reason="013 needs the few-row kernel (a compiler)")]
PATHS = ("plain", "rows", "compiled_rows")
PRODUCTS = ("fp32_rows", "bf16_rows", "bf16_mkl")


def test_013_smoke(tmp_path):
    "Breaks if a section fails, a draft leaves cached's greedy tokens, or the rows and findings disagree."
    from eelab.lab import run_experiment
    sweep = dict(draft_lens=[2, 3], stop_belows=[None, 0.3])
    r = run_experiment("013_bf16", tmp_path, dict(smoke=True, rows=[1, 4], **sweep), timeout=TIMEOUT_S)
    assert r["experiment"] == "013_bf16" and r["smoke"] is True and r["config"]["dtype"] == "bf16"
    products = {(row["rows"], row["method"]) for row in r["products"]}
    assert products == {(M, k) for M in (1, 4) for k in PRODUCTS}
    for row in r["products"]:                                  # fp32 streams twice the bytes of bf16
        nbytes = r["config"]["bf16_bytes"] * (2 if row["method"] == "fp32_rows" else 1)
        assert row["gb_s"] == pytest.approx(nbytes / (row["ms"] / 1e3) / 1e9)
    assert {(row["rows"], row["method"]) for row in r["steps"]} == {(M, p) for M in (1, 4) for p in PATHS}
    steps = r["timing"]["steps"]                                 # ratios round by round, in one set
    for row in r["steps"]:
        mine, one = steps[f"{row['method']}@{row['rows']}"]["all"], steps[f"{row['method']}@1"]["all"]
        assert row["over_one_step"] == pytest.approx(statistics.median(a / b for a, b in zip(mine, one)))
    decoders = [row["method"] for row in r["decode_rows"]]
    assert decoders == ["hf_generate", "cached", "cached_split", "cached_rows", "cached_compiled",
                        "cached_compiled_rows"]
    fastest = max((row for row in r["decode_rows"] if row["method"] != "hf_generate"),
                  key=lambda row: row["tokens_per_s"])
    assert r["fastest_decode"] == fastest["method"]
    assert r["roof_goal_reached"] == (fastest["roof_fraction"] >= 0.6)
    spec = {row["method"]: row for row in r["spec_rows"]}
    drafts = {f"draft_{p}_k{k}_stop{s}" for p in PATHS[1:] for k in (2, 3) for s in (None, 0.3)}
    assert set(spec) == {f"cached_{p}" for p in PATHS} | drafts
    assert all(row["same_as_cached"] == 1.0 for row in spec.values())      # lossless on every path, in bf16
    assert any(spec[n]["tokens_per_pass"] > 1 for n in drafts)             # some draft was accepted
    assert spec[r["fastest_cached"]]["over_fastest"] == 1.0
    for row in spec.values(): assert row["q1"] <= row["over_fastest"] <= row["q3"]
    best = spec[r["best_draft"]]
    assert best["over_fastest"] == max(spec[n]["over_fastest"] for n in drafts)
    assert r["pay"]["method"] == r["best_draft"] and r["pay"]["draft_len"] == best["draft_len"]
    a, k = r["pay"]["acceptance_for_1_5x"], best["draft_len"]
    if a is not None:                                          # the formula at it: 1.5 x the pass's cost
        assert (1 - a ** (k + 1)) / (1 - a) == pytest.approx(1.5 * r["pay"]["pass_steps"], rel=1e-6)
    assert r["goal_reached"] == (best["q1"] >= 1.5)
    assert len(r["found"]) == 6 and ("not reached" in r["found"][-1]) == (not r["goal_reached"])
    assert ("**not reached**" in r["found"][1]) == (not r["roof_goal_reached"])


@pytest.mark.parametrize("bad,name", [(dict(draft_lens=[8]), "draft_lens"),
                                      (dict(stop_belows=[1.5]), "stop_belows"),
                                      (dict(draft_paths=["gpu"]), "draft_paths")])
def test_013_bad_parameter_fails_by_name(tmp_path, bad, name):
    from eelab.lab import run_experiment
    with pytest.raises(Exception, match=name):
        run_experiment("013_bf16", tmp_path, dict(smoke=True, **bad), timeout=TIMEOUT_S)
