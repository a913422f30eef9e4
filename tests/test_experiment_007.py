"""Experiment 007 (batched early exit), re-run by papermill with smoke parameters; results.json checked."""
import pytest

PASSED = dict(smoke=True, seed=1, new_tokens=6, timing_repeats=1, batch_sizes=[1, 4], thresholds=[0.3])


@pytest.fixture(scope="module")
def results(run_smoke):
    "The notebook run once, as eelab-lab runs it, training in a private data folder (conftest)."
    return run_smoke("007_batched_exit", PASSED)


def test_schema_and_parameters(results):
    assert results["experiment"] == "007_batched_exit" and results["smoke"] is True
    assert results["schema"] == "eelab.results/1" and results["config"]["corpus"] == "synthetic"
    for k, v in PASSED.items(): assert results["parameters"][k] == v, k
    assert results["rows_equal_alone"] is True


def test_batch_rows(results):
    # breaks if a (batch, strategy) row is missing, the full model is not its own reference, latency skips
    # work, all skips more than gather, or a table is not written for eelab-lab
    rows = results["batch"]
    strategies = ("full", "all", "gather", "latency", "self_spec d=2")
    assert {(r["batch"], r["strategy"]) for r in rows} == {(b, s) for b in (1, 4) for s in strategies}
    by = {(r["batch"], r["strategy"]): r for r in rows}
    for b in (1, 4):
        full = by[b, "full"]
        assert full["agreement"] == 1 and full["flops_vs_full"] == 1 and full["speedup"] == 1
        assert by[b, "latency"]["upper_skipped"] == 0 and by[b, "latency"]["flops_vs_full"] >= 1
        assert by[b, "all"]["upper_skipped"] <= by[b, "gather"]["upper_skipped"]
        assert by[b, "self_spec d=2"]["agreement"] == 1                    # lossless, measured
        for r in (by[b, s] for s in ("all", "gather", "latency", "self_spec d=2")):
            assert r["tokens_per_s"] > 0 and 0 < r["p50_ms"] <= r["p90_ms"] and 0 <= r["agreement"] <= 1
    assert by[1, "all"]["upper_skipped"] == by[1, "gather"]["upper_skipped"]    # one row: the same decisions
    from eelab.report import tables_for
    tables = tables_for(results)
    assert len(tables["batch table (per threshold, batch size and strategy)"]) == 10
    assert results["targets"]["batch"] == 4 and results["targets"]["self_spec"]["batch"] == 4
