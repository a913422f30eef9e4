"""Experiment 008 (the scale model, joint vs two phases), re-run by papermill in its smoke variant."""
import math

import pytest

PASSED = dict(smoke=True, exit_ratio=0.4, draft_len=3, n_prompts=2)
TITLES = ("the models", "every exit on test", "true exit at exit ratio 0.4 (threshold from validation)",
          "self-speculation (greedy, draft_len 3, lossless)")


@pytest.fixture(scope="module")
def results(run_smoke):
    "The notebook run once, as eelab-lab runs it, training in a private data folder (conftest)."
    return run_smoke("008_scale_model", PASSED)


def exits_of(cfg: dict) -> list[int]:
    "The exits a config's model has: phase1_layers, every exit_every-th layer (joint), the top."
    L, k = cfg["phase2_layers"], cfg["exit_every"]
    return sorted({cfg["phase1_layers"], L, *(range(k, L, k) if k else ())})


def test_schema_models_and_parameters(results):
    assert results["experiment"] == "008_scale_model" and results["smoke"] is True
    assert results["schema"] == "eelab.results/1" and results["corpus"]["name"] == "synthetic"
    for k, v in PASSED.items(): assert results["parameters"][k] == v, k
    cfgs = results["configs"]
    assert list(cfgs) == ["joint", "clean"] and cfgs["joint"]["exit_every"] > 0 == cfgs["clean"]["exit_every"]
    assert results["run_parameters"]["n_prompts"] == 2                  # passed explicitly: kept under smoke
    from eelab.report import tables_for
    tables = tables_for(results)
    assert set(TITLES) <= set(tables)
    models = tables["the models"].set_index("recipe")
    for r, cfg in cfgs.items():
        assert models.loc[r, "exits"] == " ".join(map(str, exits_of(cfg)))
        assert models.loc[r, "parameters"] > 0 and results["training_seconds"][r]["total"] > 0
    assert models.loc["joint", "epochs_phase2"] == 0 < models.loc["clean", "epochs_phase2"]


def test_every_exit(results):
    # breaks if an exit is missing, or a PPL/accuracy is out of range
    rows = results["exits"]
    for r, cfg in results["configs"].items():
        assert [x["exit"] for x in rows if x["recipe"] == r] == exits_of(cfg), r
    for x in rows:
        assert 1 < x["test_ppl"] < 1e4 and 0 <= x["test_acc"] <= 1 and x["tokens"] > 0


def test_true_exit_at_the_ratio(results):
    # the threshold comes from validation: there `exit_ratio` of tokens exit (to the token, ties aside);
    # on test it is near it; agreement/FLOPs in range; full_ppl is the top exit's PPL of the same tokens
    rows, top = results["true_exit"], {}
    for x in results["exits"]: top[x["recipe"]] = x["test_ppl"]
    for r, cfg in results["configs"].items():
        assert [t["exit"] for t in rows if t["recipe"] == r] == exits_of(cfg)[:-1], r
    for t in rows:
        assert abs(t["valid_exit_ratio"] - PASSED["exit_ratio"]) < 0.01, t
        assert abs(t["test_exit_ratio"] - PASSED["exit_ratio"]) < 0.1, t
        assert 0 <= t["agreement"] <= 1 and 0 < t["flops_rel"] < 1 and t["ppl"] > 1
        assert math.isclose(t["full_ppl"], top[t["recipe"]], rel_tol=1e-3), t


def test_self_speculation_is_lossless(results):
    rows = results["speculation"]
    assert results["lossless"] is True and all(s["same_tokens"] is True for s in rows)
    for r, cfg in results["configs"].items():
        assert [s["exit"] for s in rows if s["recipe"] == r] == exits_of(cfg)[:-1], r
    for s in rows:
        assert 0 <= s["acceptance_rate"] <= 1 and 1 <= s["tokens_per_pass"] <= PASSED["draft_len"] + 1
        assert s["counted_flops_rel"] > 0 and s["draft_len"] == PASSED["draft_len"] and s["prompts"] == 2
    assert results["reading"]["true_exit_best"] in results["configs"]


@pytest.mark.parametrize("name, value", [("exit_ratio", 1.5), ("recipes", ["joint", "nope"])])
def test_a_bad_parameter_is_named(run_smoke, name, value):
    from eelab.lab import NotebookConfigError
    with pytest.raises(NotebookConfigError, match=name) as err:
        run_smoke("008_scale_model", dict(smoke=True, **{name: value}))
    assert err.value.field == name
