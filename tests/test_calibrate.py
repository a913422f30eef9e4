"""Learn-then-Test calibration (nbs/13_calibrate): p-values, the checker, the loss table, named errors."""
import math
import numpy as np
import pytest, torch
from eelab.config import ConfigError
from eelab.model import EarlyExitLM, ModelConfig
from eelab.exits import teacher_forced_quality
from eelab.calibrate import (NEVER, hb_p_value, hb_p_values, wsr_p_values, learn_then_test, naive_index,
                             loss_table, calibrate, calibrate_table, check_guarantee, synthetic_table)

RISKS = np.r_[np.linspace(0, 0.08, 10), 0.095, np.linspace(0.11, 0.3, 9)]   # one threshold just under delta


def _model(seed=0):
    torch.manual_seed(seed)
    mc = ModelConfig(vocab_size=40, dim=16, num_heads=2, n_layers=4, exit_layers=(2, 4))
    return EarlyExitLM(mc).eval()


@pytest.mark.parametrize("method", ["binomial", "hb", "wsr"])
@pytest.mark.parametrize("spread", ["coin", "narrow"])
def test_p_value_is_valid_at_the_boundary(method, spread):
    # where the true risk IS delta, P(p <= a) <= a; a p-value that ignores n (or a wrong tail) breaks this.
    # coin: 0/1 losses; narrow: window means of 16 coin flips (bounded, small variance)
    rng, n, delta = np.random.default_rng(0), 200, 0.1
    if method == "binomial" and spread == "narrow": pytest.skip("the exact binomial tail is for 0/1 losses")
    flips = 1 if spread == "coin" else 16
    losses = (rng.random((n, 3000, flips)) < delta).mean(2)           # (n windows, 3000 draws)
    f = dict(binomial=lambda x: hb_p_values(x, delta, True), hb=lambda x: hb_p_values(x, delta),
             wsr=lambda x: wsr_p_values(x, delta))[method]
    p = f(losses)
    for a in (0.05, 0.2):
        assert (p <= a).mean() <= a + 3 * math.sqrt(a * (1 - a) / len(p))
    clear = (rng.random((2000, 1, flips)) < 0.02).mean(2)
    assert f(clear)[0] < 1e-6                                          # and it does reject a clear case


def test_fixed_sequence_stops_at_first_failure():
    # a grid whose risks dip again after a failure: LTT must not skip past the failure (naive does not either)
    losses = np.zeros((400, 5))
    losses[:, 2] = np.arange(400) < 200                            # risk 0.5 at index 2, 0 elsewhere
    j, p = learn_then_test(losses, 0.1, 0.05, binary=True)
    assert j == 1 and p[2] > 0.05 and p[3] < 0.05
    assert naive_index(losses, 0.1) == 1


def test_checker_holds_on_known_truth_and_naive_fails():
    table = synthetic_table(n=2000, risks=RISKS, seed=1)
    chk = check_guarantee(table, delta=0.1, epsilon=0.05, n_cal=500, n_splits=200, seed=1)
    assert chk["n_splits"] == 200 and chk["n_test"] == 1500
    assert chk["violation_rate"] <= chk["bound"] and chk["holds"]      # within its binomial bound
    assert chk["naive_violation_rate"] > chk["bound"]                  # the naive quantile fails
    assert 0.5 < chk["saving_ratio"] <= 1.0


def test_broken_p_value_fails_the_check():
    # a p-value computed as if from a million samples whatever n was: the checker must catch it
    broken = lambda losses, delta, binary=False: hb_p_value(losses.mean(0), 10**6, delta, binary)
    chk = check_guarantee(synthetic_table(n=2000, risks=RISKS, seed=1), 0.1, 0.05, 500, 200, seed=1,
                          p_value=broken)
    assert not chk["holds"] and chk["violation_rate"] > chk["bound"]


def test_loss_table_matches_the_exit_path():
    # the table's textual risk and counted cost are teacher_forced_quality's disagreement and flops_rel
    model, w = _model(), torch.randint(0, 40, (12, 9))
    for fill in ("skip", "propagate"):
        table = loss_table(model, w, "softmax_max", fill, "textual", grid=[0.0, 0.05, 0.1])
        assert table.grid[0] == NEVER and (table.losses[:, 0] == 0).all() and (table.exited[:, 0] == 0).all()
        rows = teacher_forced_quality(model, w, fill, "softmax_max", list(table.grid))
        for j, th in enumerate(table.grid):
            r = next(r for r in rows if r["threshold"] == th)
            assert abs(table.losses[:, j].mean() - (1 - r["agreement"])) < 1e-9
            assert abs(table.flops[:, j].sum() / table.full_flops.sum() - r["flops_rel"]) < 1e-9
            assert table.exited[:, j].sum() / table.tokens.sum() == r["exit_rate"]
    risk = loss_table(model, w, "saturation", "skip", "risk")
    assert 0 <= risk.losses.min() and risk.losses.max() <= 1 and (risk.losses[:, 0] == 0).all()


def test_calibrate_result_and_errors():
    model, w = _model(1), torch.randint(0, 40, (40, 9))
    cal = calibrate(model, w, "softmax_max", "skip", delta=0.3, epsilon=0.1)
    assert cal.threshold in cal.grid and cal.n == 40 and len(cal.p_values) == len(cal.grid)
    assert cal.threshold >= cal.naive["threshold"] and 0 <= cal.exit_rate <= 1
    j = cal.grid.index(cal.threshold)
    assert all(p <= 0.1 for p in cal.p_values[:j + 1])            # every threshold above it was rejected
    assert j + 1 == len(cal.grid) or cal.p_values[j + 1] > 0.1
    for bad, field in ((dict(delta=0), "delta"), (dict(delta=1), "delta"), (dict(epsilon=1.2), "epsilon"),
                       (dict(epsilon=True), "epsilon"), (dict(consistency="bleu"), "consistency"),
                       (dict(fill="sideways"), "fill"), (dict(estimator="bogus"), "estimator"),
                       (dict(grid=[]), "grid"), (dict(p_value="t"), "p_value")):
        with pytest.raises(ConfigError, match=field): calibrate(model, w, **bad)
    with pytest.raises(ConfigError, match="windows"): calibrate(model, w[:0])
    with pytest.raises(ConfigError, match="n_cal"): check_guarantee(synthetic_table(n=100), n_cal=100)
    with pytest.raises(ConfigError, match="windows"): calibrate_table(synthetic_table(n=10), rows=[])


def test_every_estimator_and_fill():
    # calibrate works for each registered estimator (on its own grid) and each fill, and never-exit has no
    # risk (breaks if a fill or a trained estimator is not wired through)
    from eelab.estimators import ESTIMATORS, make_estimator
    from eelab.generate import FILL_POLICIES
    model, w = _model(2), torch.randint(0, 40, (6, 9))
    fits = dict(learned=dict(epochs=1), shortlist=dict(k=8))
    for name, cls in ESTIMATORS.items():
        kw = dict(model=model, windows=w, **fits[name]) if cls.needs_training else {}
        est = make_estimator(name, **kw)
        for fill in FILL_POLICIES:
            t = loss_table(model, w, est, fill, "risk")
            assert list(t.grid) == [NEVER, *est.thresholds()] and t.estimator == name and t.fill == fill
            assert (t.losses[:, 0] == 0).all() and (t.exited[:, 0] == 0).all()
            cal = calibrate(model, t, delta=0.5, epsilon=0.2)
            assert cal.estimator == name and cal.fill == fill and cal.threshold in t.grid


def test_betting_is_tighter_on_narrow_losses():
    # window losses with small spread: the betting p-value (wsr) keeps the guarantee and reaches further down
    # the grid than Hoeffding-Bentkus (breaks if wsr ignores the variance or loses validity)
    rng = np.random.default_rng(3)
    risks = np.r_[np.linspace(0, 0.08, 10), 0.095, np.linspace(0.11, 0.3, 9)]
    losses = (rng.random((3000, 20, 16)) < risks[None, :, None]).mean(2)    # 16 tokens a window
    table = synthetic_table(n=3000, risks=risks)
    table.losses, table.binary = losses, False
    hb = check_guarantee(table, 0.1, 0.05, 500, 200, seed=2, p_value="hb")
    wsr = check_guarantee(table, 0.1, 0.05, 500, 200, seed=2, p_value="wsr")
    assert hb["holds"] and wsr["holds"]
    assert wsr["saving_ratio"] > hb["saving_ratio"]


def test_generated_consistency_matches_generation():
    # the generated table is greedy true_exit vs greedy full decoding from each window's prompt: its risk,
    # exit rate and counted cost are generation_quality's (breaks if teacher forcing or another prompt is
    # used, or a row's work is mixed with another's)
    from eelab.exits import generation_quality
    from eelab.generate import true_exit, cached
    model, w = _model(3), torch.randint(0, 40, (10, 9))
    t = loss_table(model, w, "softmax_max", "propagate", "generated", grid=[0.0, 0.06, 0.07], n_new=5,
                   prompt_len=3)
    assert t.consistency == "generated" and (t.tokens == 5).all() and (t.losses[:, 0] == 0).all()
    assert 0 < t.losses[:, 1].mean() < t.losses[:, 2].mean()              # partial exits, errors grow
    for i, row in enumerate(w[:, :3]):                                    # per window: the plain path
        r = true_exit(model, row[None], 5, 0.06, fill="propagate", estimator="softmax_max")
        assert t.losses[i, 2] == (r.new_tokens != cached(model, row[None], 5).new_tokens).double().mean()
    for j, th in enumerate(t.grid):
        g = generation_quality(model, w[:, :3], 5, "propagate", "softmax_max", float(th))
        assert abs(t.losses[:, j].mean() - (1 - g["agreement"])) < 1e-12
        assert abs(t.exited[:, j].sum() / t.tokens.sum() - g["shallow_ratio"]) < 1e-12
        assert abs(t.flops[:, j].sum() / t.full_flops.sum() - g["flops_rel"]) < 1e-9
    tf = loss_table(model, w, "softmax_max", "propagate", "textual", grid=[0.0])
    assert t.losses[:, -1].mean() != tf.losses[:, -1].mean()      # not the teacher-forced loss
    cal = calibrate(model, t, delta=0.5, epsilon=0.2)
    assert cal.consistency == "generated" and cal.threshold in t.grid
    for bad, field in ((dict(prompt_len=0), "prompt_len"), (dict(prompt_len=9), "prompt_len"),
                       (dict(n_new=0), "n_new")):
        with pytest.raises(ConfigError, match=field): calibrate(model, w, consistency="generated", **bad)


def test_draft_table_matches_self_speculation():
    # each cell is one greedy self_speculative run: waste = rejected / drafted, the speculation summary is
    # its acceptance rate and tokens per pass (breaks if waste counts accepted drafts, or the wrong prompt)
    from eelab.speculate import self_speculative
    from eelab.calibrate import draft_table, calibrate_draft
    model, w = _model(4), torch.randint(0, 40, (5, 9))
    t = draft_table(model, w, "softmax_max", draft_len=3, n_new=6, prompt_len=4, grid=[0.3, 0.0])
    assert list(t.grid) == [1.0, 0.3, 0.0] and 0 <= t.losses.min() and t.losses.max() <= 1
    runs = [self_speculative(model, r[None, :4], 6, 3, estimator="softmax_max", draft_threshold=0.0)
            for r in w]
    waste = [(r.drafted - r.accepted) / r.drafted if r.drafted else 0.0 for r in runs]
    assert np.allclose(t.losses[:, 2], waste) and t.losses[:, 2].mean() > 0
    cal = calibrate_draft(model, t, delta=0.99, epsilon=0.2)          # everything passes: the last threshold
    assert cal.threshold == 0.0 and cal.consistency == "draft_waste"
    assert cal.speculation["acceptance_rate"] == sum(r.accepted for r in runs) / sum(r.drafted for r in runs)
    assert cal.speculation["tokens_per_pass"] == 30 / sum(len(r.passes) for r in runs)
    with pytest.raises(ConfigError, match="grid"): draft_table(model, w, grid=[-0.5])
    with pytest.raises(ConfigError, match="delta"): calibrate_draft(model, w, delta=0)


def _draft_synthetic(n=3000, seed=5):
    "A draft-waste table with known risk per threshold: 4 drafts a window, each thrown away w.p. risks[j]."
    rng = np.random.default_rng(seed)
    risks = np.r_[0.0, np.linspace(0.02, 0.08, 6), 0.095, 0.102, np.linspace(0.11, 0.4, 6)]
    table = synthetic_table(n=n, risks=risks, seed=seed)
    table.losses, table.binary = (rng.random((n, len(risks), 4)) < risks[None, :, None]).mean(2), False
    drafted = np.full(table.losses.shape, 4.0)
    table.counts = dict(drafted=drafted, accepted=drafted * (1 - table.losses),
                        passes=np.full(drafted.shape, 2.0))
    return table


def test_draft_threshold_guarantee_holds():
    # calibrated draft_threshold: empirical waste <= delta on the calibration windows, the guarantee holds
    # over splits on a synthetic waste table with known truth, and the naive choice violates it
    table = _draft_synthetic()
    cal = calibrate_table(table, 0.1, 0.05, rows=np.arange(500))
    assert cal.risk <= 0.1 and cal.threshold > table.grid[7]          # never the 0.095 point from 500 windows
    spec = cal.speculation
    assert abs(spec["acceptance_rate"] - (1 - cal.risk)) < 1e-9 and spec["tokens_per_pass"] == 0.5
    chk = check_guarantee(table, 0.1, 0.05, n_cal=500, n_splits=200, seed=3, p_value="wsr")
    assert chk["holds"] and chk["naive_violation_rate"] > chk["bound"]
