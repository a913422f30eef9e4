"""Experiment 004 (self-speculation), re-run by papermill with smoke parameters; its results.json checked."""
import pytest

PASSED = dict(smoke=True, seed=1, new_tokens=12, timing_repeats=2, warmup=1)


@pytest.fixture(scope="module")
def results(run_smoke):
    "The notebook run once, as eelab-lab runs it, training in a private data folder (conftest)."
    return run_smoke("004_self_speculation", PASSED)


def test_schema_and_parameters(results):
    assert results["experiment"] == "004_self_speculation" and results["smoke"] is True
    assert results["schema"] == "eelab.results/1" and results["config"]["corpus"] == "synthetic"
    for k, v in PASSED.items(): assert results["parameters"][k] == v, k
    assert results["lossless"] is True


def test_speculation_rows(results):
    # breaks if a draft setting is missing, a run is not lossless, or a ratio is not its own numbers' ratio
    rows, L = results["speculation"], results["config"]["phase2_layers"]
    exits = sorted({r["exit_layer"] for r in rows})
    assert exits and all(e < L for e in exits)
    assert {(str(r["draft_len"]), r["reuse"]) for r in rows} == {(d, k) for d in ("1", "4", "adaptive")
                                                                 for k in (True, False)}
    for r in rows:
        assert r["same_tokens"] is True and 0 <= r["acceptance_rate"] <= 1 and r["tokens_per_pass"] >= 1
        assert abs(r["ideal_speedup"] - r["cached_flops"] / r["spec_flops"]) < 1e-12
        assert r["measured_q1"] <= r["measured_speedup"] <= r["measured_q3"] and r["predicted_speedup"] > 0
        assert r["new_tokens"] == PASSED["new_tokens"] and r["repeats"] == PASSED["timing_repeats"]
    assert results["targets"]["all_lossless"] is True


def test_true_exit_ceiling_and_tables(results):
    never = [r for r in results["true_exit"] if r["threshold"] > 1]
    assert never and all(r["agreement"] == 1.0 and r["shallow_ratio"] == 0 for r in never)
    ce = results["ceiling"]
    assert abs(sum(ce["histogram"].values()) - 1) < 1e-9 and ce["layer_speedup"] >= 1
    from eelab.report import tables_for
    tables = tables_for(results)
    assert len(tables["self-speculation (measured, predicted, acceptance)"]) == 6
    reuse = tables["what KV reuse buys"]
    assert (reuse.layer_forwards_per_token_reuse < reuse.layer_forwards_per_token_hf).all()  # saves layers


def check_004(r):
    "The checks above on one results.json (for tests/test_experiments.py's CHECKS table, if it runs 004 too)."
    assert r["experiment"] == "004_self_speculation" and r["lossless"] is True
    for check in (test_speculation_rows, test_true_exit_ceiling_and_tables): check(r)
