"""Experiments 001-003, re-run by papermill with smoke parameters, and their results.json checked (issue #3).

Later experiments (004...) bring their own test files."""


from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
# An explicit list: experiments added later (004, ...) bring their own test files.
EXPERIMENTS = [
    ROOT / "nbs" / "experiments" / f"{name}.ipynb"
    for name in ("001_kv_cache", "002_true_exit", "003_honest_exit")
]
TIMEOUT_S = 600  # per notebook; a smoke run takes well under a minute
# num_heads=4 equals the notebooks' default and differs from the smoke variant's 2: passed explicitly, it
# must be kept (issue 8: explicit parameters win). The old rule "smoke replaces values equal to the default"
# fails check_common.
PASSED = dict(smoke=True, seed=1, new_tokens=12, timing_repeats=3, warmup=1, num_heads=4)


# 001-003 share one private data folder (conftest), so they share their trainings
pytestmark = pytest.mark.usefixtures("private_data_dir")


def run(name, out_dir, **params):
    from eelab.lab import run_experiment

    return run_experiment(name, out_dir, params, timeout=TIMEOUT_S)


def check_common(r):
    for phase in ("phase1", "phase2"):
        for k in ("ppl", "acc", "hard_ppl"):
            assert r["metrics"]["reported"][phase][k] is not None, (phase, k)
    assert r["metrics"]["reported"]["phase2"]["hard_ppl"] < r["metrics"]["reported"]["phase1"]["hard_ppl"]
    for k, v in PASSED.items():
        assert r["parameters"][k] == v, k
        if k in r["config"]:
            assert r["config"][k] == v, k
    assert r["smoke"] is True and r["config"]["corpus"] == "synthetic"
    assert r["training"]["threshold"] > 0 and r["training"]["epochs"]["phase1"][0] >= 1


def check_001(r):
    kv, fake = r["kv_cache"], r["fake_exit"]
    assert kv["same_tokens"] is True and kv["max_logit_diff"] < 1e-4
    assert len(kv["tokens"]) == PASSED["new_tokens"]
    for k in ("median", "q1", "q3", "min", "max"):
        assert kv["speedup"][k] > 0
    assert (
        kv["speedup"]["repeats"] == PASSED["timing_repeats"]
        and len(kv["cached_s"]["all"]) == PASSED["timing_repeats"]
    )
    o = fake["over_split"]
    assert o["shallow"] + o["deep"] == o["tokens"] and 0 <= o["shallow_ratio"] <= 1
    assert abs(o["theoretical_cost"] - (o["shallow"] * 2 + o["deep"] * 4) / (o["tokens"] * 4)) < 1e-12
    g = fake["generation"]
    assert g["shallow"] + g["deep"] == PASSED["new_tokens"]
    assert (
        g["layer_forwards"] == g["full_depth_layer_forwards"] == PASSED["new_tokens"] * 4
        and g["actual_saving"] == 0
    )


def check_002(r):
    te = r["true_exit"]
    n = PASSED["new_tokens"]
    assert te["shallow"] + te["deep"] == te["new_tokens"] == n == len(te["token_exits"])
    assert (
        te["decode"]["layer_forwards"]
        == te["formula_numerator"]
        == te["shallow"] * te["shallow_exit"] + te["deep"] * te["n_layers"]
    )
    assert abs(te["reference_cost"] - te["formula_numerator"] / (n * te["n_layers"])) < 1e-12
    assert abs(te["savings"] - (1 - te["reference_cost"])) < 1e-12
    assert sum(e < te["n_layers"] for e in te["token_exits"]) == te["shallow"]
    assert te["counted_cost"] > 0  # the counted cost stands beside the formula
    assert te["decode"]["head_evals"] == te["shallow"] + 2 * te["deep"]  # a deep token pays for both heads
    for k in ("standard_s", "early_exit_s"):
        assert r["speed"][k]["median"] > 0
    assert r["speed"]["speedup"]["repeats"] == PASSED["timing_repeats"]
    f = r["comparison"]["fake_over_split"]
    assert f["shallow"] + f["deep"] == f["tokens"]


def check_003(r):
    F = r["flaws"]
    names = (
        "1_leakage",
        "2_train_inference_mismatch",
        "3_shared_head_retrained",
        "4_positions_and_quality",
        "5_compute_accounting",
        "6_timing",
        "7_sample_size",
    )
    assert list(F) == list(names)
    for k in names:
        assert F[k]["before"] is not None and F[k]["after"] is not None and F[k]["what"], k
    f1 = F["1_leakage"]
    assert f1["before"]["split"] == "valid" and f1["after"]["split"] == "test" and f1["after"]["hard_ppl"] > 0
    f2 = F["2_train_inference_mismatch"]
    assert f2["before"]["hard_ppl"] > 0 and f2["after"]["hard_ppl"] > 0
    f3 = F["3_shared_head_retrained"]
    assert (
        f3["after"]["max_confidence_change"] == 0
    )  # clean: the head is frozen, the shallow exit cannot move
    assert f3["after"]["exit_fraction_phase1"] == f3["after"]["exit_fraction_phase2"]
    f4 = F["4_positions_and_quality"]
    assert f4["full_model"]["agreement"] == 1.0 and "true positions, skip" in f4["variants"]
    for v in f4["variants"].values():
        assert 0 <= v["agreement"] <= 1 and v["full_model_ppl"] > 0
    f5 = F["5_compute_accounting"]
    assert f5["never_exit"]["flop_cost"] > 1  # never exiting pays a second head and the softmax
    assert f5["never_exit"]["head_evals"] == 2 * f5["never_exit"]["new_tokens"]
    assert all(h == PASSED["new_tokens"] + d for h, d in zip(f5["skip_run_head_evals"], f5["skip_run_deep"]))
    f6 = F["6_timing"]
    assert (
        len(f6["before"]["single_runs"]) == f6["before"]["runs_repeats"] >= 2
        and f6["after"]["repeats"] == PASSED["timing_repeats"]
    )
    f7 = F["7_sample_size"]
    for g in (f7["before"], f7["after"], f7["test_split_teacher_forced"]):
        assert g["shallow"] + g["deep"] == g["n"] and g["ci_low"] <= g["shallow_ratio"] <= g["ci_high"]
    assert f7["before"]["n"] == PASSED["new_tokens"] and f7["after"]["n"] > f7["before"]["n"]


CHECKS = {"001_kv_cache": check_001, "002_true_exit": check_002, "003_honest_exit": check_003}


@pytest.mark.parametrize("nb", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_smoke(nb, tmp_path):
    assert nb.stem in CHECKS, f"{nb.name} has no results.json checks in tests/test_experiments.py: add them"
    r = run(nb.stem, tmp_path / nb.stem, **PASSED)
    assert r["experiment"] == nb.stem and r["schema"] == "eelab.results/1"
    check_common(r)
    CHECKS[nb.stem](r)
    assert (tmp_path / nb.stem / f"{nb.stem}.ipynb").exists()  # the executed notebook is kept beside it


@pytest.mark.parametrize("nb", EXPERIMENTS[:1], ids=lambda p: p.stem)
def test_invalid_parameter_fails_by_name(nb, tmp_path):
    """A ConfigError inside the notebook comes back as one line naming the field
    (the traceback stays in the notebook)."""
    from eelab.config import ConfigError

    out = tmp_path / "bad"
    with pytest.raises(ConfigError) as err:
        run(nb.stem, out, smoke=True, dim=65)  # 65 is not a multiple of 2 heads
    assert str(err.value).startswith("dim=65 is not allowed") and "\n" not in str(err.value)
    assert str(out / f"{nb.stem}.ipynb") in str(err.value)  # where the traceback is
    assert not (out / "results.json").exists()
