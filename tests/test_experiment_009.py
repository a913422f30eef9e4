"""Experiment 009 (drafts worth verifying), re-run by papermill in its smoke variant (a tiny random Llama)."""
import pytest

pytest.importorskip("transformers", reason="experiment 009 needs the extra: pip install eelab[hf]")
TIMEOUT_S = 300

pytestmark = pytest.mark.usefixtures("private_data_dir")  # conftest: a data folder of its own


def test_009_smoke(tmp_path):
    "Breaks if a section fails, a draft leaves cached's greedy tokens, or the rows and conclusions disagree."
    from eelab.lab import run_experiment
    r = run_experiment("009_drafts", tmp_path, dict(smoke=True, new_tokens=6), timeout=TIMEOUT_S)
    assert r["experiment"] == "009_drafts" and r["smoke"] is True and r["parameters"]["new_tokens"] == 6
    greedy = [row for row in r["rows"] if row["mode"] == "greedy"]
    sampled = [row for row in r["rows"] if row["mode"] == "sampled"]
    assert len(greedy) == len(sampled) > 0
    assert {row["draft"] for row in greedy} == {row["draft"] for row in sampled}
    for row in greedy: assert row["same_as_cached"] == 1.0, row["draft"]
    for row in r["rows"]:
        assert 0 <= row["acceptance"] <= 1 and 1 <= row["tokens_per_pass"] <= r["parameters"]["draft_len"] + 1
        assert row["q1"] <= row["speedup"] <= row["q3"] and row["speedup"] > 0
        if "stop" not in row["draft"]: assert row["predicted"] > 0
    for a, t in r["training"].items():
        curve = t["curve"]
        assert curve[0]["tokens"] == 0 and curve[-1]["tokens"] == t["tokens_seen"] > 0
        assert t["final_agreement"] == curve[-1]["agreement"] and t["train_seconds"] > 0
    sizes = [len(p["keep"]) for p in r["skip"]["path"]]
    assert sizes == list(range(r["config"]["n_layers"], min(r["parameters"]["skip_keep"]) - 1, -1)) or \
        sizes[-1] == min(map(int, r["skip"]["sets"]))
    best = r["best_greedy"]
    assert best["speedup"] == max(row["speedup"] for row in greedy)
    assert r["goal_reached"] == (best["q1"] >= 1.5)
    assert best["draft"] in r["found"][1] and ("not reached" in r["found"][2]) == (not r["goal_reached"])
    assert 0 < r["shortlist"]["held_out_top1_coverage"] <= 1
