"""Confidence estimators and the teacher-forced exit path (nbs/09_exits)."""
import math
from types import SimpleNamespace
import pytest, torch
from eelab.config import ConfigError
from eelab.model import EarlyExitLM, ModelConfig
from eelab.data import make_windows
from eelab.generate import FILL_POLICIES, true_exit
from eelab.estimators import (ESTIMATORS, SoftmaxMax, Saturation, make_estimator, exit_pass,
                              train_exit_classifier)
from eelab.exits import (exit_path, teacher_forced_quality, generation_quality, exit_precision_recall,
                         pareto_figure)

CONFIGS = [ModelConfig(vocab_size=50, dim=16, num_heads=2, n_layers=4, exit_layers=(2, 4)),
           ModelConfig(vocab_size=80, dim=24, num_heads=3, n_layers=5, exit_layers=(1, 3, 5), norm="pre",
                       separate_heads=True),
           ModelConfig(vocab_size=40, dim=16, num_heads=4, n_layers=3, exit_layers=(2, 3),
                       tie_embeddings=True)]


def _model(mc, seed=0):
    torch.manual_seed(seed)
    return EarlyExitLM(mc).eval()


def _training(name, model, windows):
    "make_estimator's arguments for an estimator that must be fitted."
    return dict(model=model, windows=windows, **(dict(epochs=1) if name == "learned" else dict(k=8)))


def test_registry():
    # one registry, the trained estimators included (they need training windows)
    assert set(ESTIMATORS) == {"softmax_max", "margin", "entropy", "saturation", "learned", "shortlist"}
    with pytest.raises(ConfigError, match="estimator"): make_estimator("bogus")
    with pytest.raises(ConfigError, match="windows"): make_estimator("learned")
    with pytest.raises(ConfigError, match="windows"): make_estimator("shortlist")
    for name in ESTIMATORS:
        data = torch.randint(0, 50, (4, 9))
        kw = _training(name, _model(CONFIGS[0]), data) if ESTIMATORS[name].needs_training else {}
        assert make_estimator(name, **kw).name == name


@pytest.mark.parametrize("mc", CONFIGS, ids=lambda mc: f"L{mc.n_layers}-{mc.norm}")
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_teacher_forced_path_equals_true_exit(mc, name):
    model = _model(mc)
    data = torch.randint(0, mc.vocab_size, (8, 25))
    trained = ESTIMATORS[name].needs_training
    est = make_estimator(name, **_training(name, model, data)) if trained else make_estimator(name)
    e = mc.exit_layers[0]
    p = exit_pass(model, data[:, :-1], e)
    conf = est.scores(p["hidden"], p["prev"], p["shallow"])
    assert conf.min() >= 0 and conf.max() <= 1
    th = float(conf.median())
    for f in FILL_POLICIES:
        r = true_exit(model, data[:1, :1], 24, th, exit_layer=e, keep_logits=True, fill=f, estimator=est)
        tf = exit_path(model, r.tokens[:, :-1], f, est, th, exit_layer=e)
        assert torch.equal(tf["exited"][0], r.token_exits[0] == e)
        assert (tf["logits"][0] - r.logits[0]).abs().max() < 1e-4, f
        assert tf["work"] == r.decode, f   # every counter of the meter, estimator FLOPs and fills included
        assert tf["flops"] == r.decode_flops


def test_quality_rows_and_figure():
    model = _model(CONFIGS[0], 1)
    w = torch.randint(0, 50, (10, 17))
    rows = teacher_forced_quality(model, w, FILL_POLICIES, [SoftmaxMax(), Saturation()], [0.0, 0.5, 2.0])
    assert len(rows) == 4 * 2 * 3
    for r in rows:
        if r["threshold"] == 2.0:
            assert r["agreement"] == 1.0 and r["exit_rate"] == 0
            assert abs(r["ppl"] - r["full_ppl"]) < 1e-3 * r["full_ppl"]
        if r["threshold"] == 0.0: assert r["exit_rate"] == 1.0
    assert len(pareto_figure(rows).data) == 4 * 2 + 1


def test_generation_quality_limits():
    model = _model(CONFIGS[0], 2)
    prompts = torch.randint(0, 50, (3, 4))
    g = generation_quality(model, prompts, 10, "skip", "softmax_max", 2.0)
    assert g["agreement"] == 1.0 and g["first_divergence"] == 10 and g["shallow_ratio"] == 0
    assert math.isclose(g["ppl_exit_text"], g["ppl_full_text"], rel_tol=1e-6)


def test_learned_estimator_learns():
    model = _model(CONFIGS[0], 3)
    est = train_exit_classifier(model, torch.randint(0, 50, (32, 17)), epochs=8)
    assert est.history[-1] < est.history[0] and est.flops(model) < 2 * 16 * 64 + 1000


def test_precision_recall():
    model = _model(CONFIGS[0], 4)
    tokens = torch.randint(0, 50, (16 * 8 + 1,))
    labels = torch.randint(0, 4, tokens.shape)
    corpus = SimpleNamespace(seq_len=16, difficulty=dict(test=labels),
                             windows=lambda s: make_windows(tokens, 16))
    every = exit_precision_recall(model, corpus, SoftmaxMax(), 0.0)
    easy = (labels[1:] > 0).float().mean().item()
    assert every["recall"] == 1.0 and abs(every["precision"] - easy) < 1e-6 and every["exit_rate"] == 1.0
    none = exit_precision_recall(model, corpus, SoftmaxMax(), 2.0)
    assert none["recall"] == 0.0 and none["exit_rate"] == 0.0
    with pytest.raises(ValueError):
        exit_precision_recall(model, SimpleNamespace(difficulty=None), SoftmaxMax(), 0.5)


def test_head_free_exit_pays_one_head():
    # issue 13 §3: a head-free estimator (shortlist) evaluates one head per token at every threshold of its
    # grid, and true exit with it costs no more than cached decoding by counted FLOPs, on a model whose
    # vocabulary is large relative to its width (V = 4000, C = 32: one head ~ 1.2 layers). Its shallow head is
    # scaled so that exits happen. Breaks if the decision evaluates the full shallow head (softmax_max does:
    # checked below), or if the estimator's FLOPs or the exit's saving are miscounted.
    from eelab.estimators import Shortlist, fit_shortlist
    from eelab.cost import flop_model
    from eelab.generate import cached
    torch.manual_seed(0)
    mc = ModelConfig(vocab_size=4000, dim=32, num_heads=2, n_layers=4, exit_layers=(2, 4))
    model = EarlyExitLM(mc).eval()
    with torch.no_grad(): model.head(2).proj.weight.mul_(8)
    est = fit_shortlist(model, torch.randint(0, 4000, (16, 33)), k=16)
    assert est.flops(model) < flop_model(model).head / 100
    prompt = torch.randint(0, 4000, (1, 4))
    base = cached(model, prompt, 32)
    for th in Shortlist.thresholds():
        r = true_exit(model, prompt, 32, th, estimator=est)
        assert r.decode.head_evals / r.n_new <= 1.05, th
        assert r.decode_flops <= base.decode_flops, th
    soft = true_exit(model, prompt, 32, Shortlist.thresholds()[0], estimator="softmax_max")
    assert soft.decode.head_evals / soft.n_new > 1.05 and soft.decode_flops > base.decode_flops
