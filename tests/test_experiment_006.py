"""Experiment 006 (calibrated exit), re-run by papermill with smoke parameters; its results.json checked."""
import pytest

PASSED = dict(smoke=True, seed=1)
ESTIMATORS = {"softmax_max", "saturation", "learned", "shortlist"}
DELTAS = [0.05, 0.1, 0.2]


@pytest.fixture(scope="module")
def results(run_smoke):
    "The notebook run once, as eelab-lab runs it, training in a private data folder (conftest)."
    return run_smoke("006_calibrated_exit", PASSED)


def test_schema_and_parameters(results):
    assert results["experiment"] == "006_calibrated_exit" and results["smoke"] is True
    assert results["schema"] == "eelab.results/1" and results["config"]["corpus"] == "synthetic"
    for k, v in PASSED.items(): assert results["parameters"][k] == v, k
    pool = results["pool"]
    assert pool["n_cal"] + pool["n_test"] == pool["windows"] and pool["n_cal"] <= pool["windows"] // 2


def test_calibrated_rows(results):
    # breaks if an estimator or delta is missing, a threshold is cheaper than the naive (plug-in) one, or a
    # larger delta gives a more conservative threshold (p-values fall as delta grows: the walk goes further)
    rows = results["calibrated"]
    assert {(r["estimator"], r["delta"]) for r in rows} == {(e, d) for e in ESTIMATORS for d in DELTAS}
    for r in rows:
        assert r["threshold"] >= r["naive_threshold"]
        assert r["cal_risk"] < r["delta"] or r["threshold"] == 2.0       # 2.0: never exit, nothing rejected
        assert 0 <= r["test_risk"] <= 1 and abs(r["agreement"] - (1 - r["test_risk"])) < 1e-12
        assert 0 <= r["exit_rate"] <= 1 and r["counted_cost"] > 0 and r["measured_speedup"] > 0
        assert 0 <= r["gen_agreement"] <= 1 and abs(r["saving"] - (1 - r["counted_cost"])) < 1e-12
    for e in ESTIMATORS:
        th = [r["threshold"] for r in sorted(rows, key=lambda r: r["delta"]) if r["estimator"] == e]
        assert th == sorted(th, reverse=True), e


def test_checker_and_tables(results):
    # the guarantee holds on the trained model for every estimator and delta (violations within the bound)
    checks = results["checks"]
    assert len(checks) == len(ESTIMATORS) * len(DELTAS) * 2
    assert {c["p_value"] for c in checks} == {"hb", "wsr"}
    for c in checks:
        assert c["violation_rate"] <= c["bound"] and c["holds"] is True, c
    assert {b["delta"] for b in results["best"]} == set(DELTAS)
    from eelab.report import tables_for
    tables = tables_for(results)
    assert len(tables["calibrated thresholds (test windows)"]) == len(ESTIMATORS) * len(DELTAS)
    assert set(tables["is the guarantee real? (checker)"].estimator) == ESTIMATORS


def test_generated_and_draft_tables(results):
    # generated consistency: one row per estimator and delta, calibrated risk under delta (or never exit),
    # never cheaper than the naive threshold; draft_threshold: thresholds in [0, 1], calibration waste under
    # delta (or 1.0, nothing rejected), acceptance a rate, at least one token per verify pass
    gen = results["generated"]
    assert {(r["estimator"], r["delta"]) for r in gen} == {(e, d) for e in ESTIMATORS for d in DELTAS}
    for r in gen:
        assert r["cal_risk"] < r["delta"] or r["threshold"] == 2.0
        assert r["threshold"] >= r["naive_threshold"]
        assert 0 <= r["test_risk"] <= 1 and 0 <= r["tf_test_risk"] <= 1
    draft = results["draft"]
    assert {(r["estimator"], r["delta"]) for r in draft} == {(e, d) for e in ("softmax_max", "saturation")
                                                            for d in DELTAS}
    for r in draft:
        assert 0 <= r["draft_threshold"] <= 1 and r["draft_threshold"] >= r["naive_threshold"]
        assert r["cal_waste"] < r["delta"] or r["draft_threshold"] == 1.0
        assert r["tokens_per_pass"] >= 1 and 0 <= r["test_waste"] <= 1
        assert r["drafted"] == 0 or 0 <= r["acceptance_rate"] <= 1
