"""Self-speculative decoding (issue 10): lossless vs `cached`, clean caches, exact sampling, counted work."""
import math
import pytest, torch
from hypothesis import given, settings, strategies as st
from scipy.stats import chisquare
from eelab.config import ConfigError
from eelab.generate import cached, full_cache
from eelab.model import EarlyExitLM, ModelConfig
from eelab.estimators import SoftmaxMax
from _random_models import peaky_model, random_model
from eelab.speculate import self_speculative, speculative_accept, inverse_cdf, accepts

torch.set_num_threads(1)




def assert_caches_clean(model, res):
    "Every layer's cache equals a fresh full pass over the emitted text (the last token is never fed)."
    full = full_cache(model, res.tokens[:, :-1])
    for mine, ref in zip(res.cache.layers, full.layers):
        assert mine.length == ref.length
        assert torch.allclose(mine.k[:, :, :mine.length], ref.k, atol=1e-5)
        assert torch.allclose(mine.v[:, :, :mine.length], ref.v, atol=1e-5)
        assert mine.held_positions() == list(range(ref.length))
    for layer in res.draft_cache.layers if res.draft_cache is not None else []:
        assert layer.held_positions() == list(range(layer.length))  # crop counts drops from lengths alone


# breaks if: a rejected draft's K/V stays in a cache, positions are wrong in the verify pass, the bonus or
# correction token comes from the wrong row, or the draft/verifier boundary is off by one layer
@pytest.mark.parametrize("seed", range(25))
def test_greedy_equals_cached_and_caches_clean(seed):
    model, rng = random_model(seed)
    early = model.exit_layers[:-1]
    accepted = drafted = 0
    for k in range(8):                                          # 25 models x 8 prompts = 200 runs
        P = 1 if k % 4 == 0 else rng.randint(2, 12)
        prompt = torch.randint(0, model.config.vocab_size, (1, P))
        n_new = rng.randint(1, 24)
        ref = cached(model, prompt, n_new)
        res = self_speculative(model, prompt, n_new, draft_len=rng.randint(1, 8),
                               exit_layer=rng.choice(early), reuse=k % 3 != 2)
        assert torch.equal(res.tokens, ref.tokens)
        assert_caches_clean(model, res)
        assert sum(v.accepted + 1 for v in res.passes) == n_new
        accepted, drafted = accepted + res.accepted, drafted + res.drafted
    assert drafted > 0


def test_the_sweep_sees_both_acceptance_and_rejection():
    # the equivalence sweep would prove little if every draft were accepted (or none): it sees both
    acc, rej = 0, 0
    for seed in range(25):
        model, rng = random_model(seed)
        res = self_speculative(model, torch.randint(0, model.config.vocab_size, (1, 5)), 24, draft_len=4)
        acc += res.accepted
        rej += res.drafted - res.accepted
    assert acc > 50 and rej > 50, (acc, rej)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), draft_len=st.integers(1, 8), P=st.integers(1, 9),
       n_new=st.integers(1, 16), reuse=st.booleans(), threshold=st.sampled_from([None, 0.0, 0.3, 0.9, 1.0]))
def test_property_lossless(seed, draft_len, P, n_new, reuse, threshold):
    model, rng = random_model(seed)
    prompt = torch.randint(0, model.config.vocab_size, (1, P), generator=torch.Generator().manual_seed(seed))
    e = rng.choice(model.exit_layers[:-1])
    res = self_speculative(model, prompt, n_new, draft_len=draft_len, exit_layer=e, reuse=reuse,
                           draft_threshold=threshold)
    assert torch.equal(res.tokens, cached(model, prompt, n_new).tokens)
    assert_caches_clean(model, res)
    assert all(len(v.drafted) <= draft_len for v in res.passes)


def test_reuse_false_draft_cache_is_the_full_models_lower_layers():
    # breaks if the HF-style draft cache keeps rejected drafts or misses a catch-up token
    model, _ = random_model(6)
    torch.manual_seed(0)
    prompt = torch.randint(0, model.config.vocab_size, (1, 6))
    res = self_speculative(model, prompt, 30, draft_len=3, reuse=False)
    assert res.drafted > res.accepted > 0
    assert_caches_clean(model, res)
    full = full_cache(model, res.tokens[:, :-1])
    assert len(res.draft_cache) == res.shallow_exit
    for mine, ref in zip(res.draft_cache.layers, full.layers):
        n = mine.length
        assert n >= res.tokens.shape[1] - 1 - 2 and mine.held_positions() == list(range(n))
        assert torch.allclose(mine.k[:, :, :n], ref.k[:, :, :n], atol=1e-5)


# ---- sampling: the first emitted token is distributed as the full model's softmax ----

def first_token_draws(p, q, n, seed, rule=speculative_accept):
    "n first emitted tokens of one-draft speculative sampling, target p (V,), draft q (V,), vectorised."
    g = torch.Generator().manual_seed(seed)
    V = p.shape[0]
    d = inverse_cdf(q.expand(n, V), torch.rand(n, generator=g, dtype=torch.float64))     # (n,) drafts ~ q
    P2, Q1 = torch.stack([p, p]).expand(n, 2, V), q.expand(n, 1, V)
    k, nxt = rule(P2, Q1, d[:, None], torch.rand(n, 1, generator=g, dtype=torch.float64),
                  torch.rand(n, generator=g, dtype=torch.float64))
    return torch.where(k > 0, d, nxt)


def resample_from_p(p, q, drafts, u_accept, u_next):
    "A plausible WRONG rule: accept with min(1, p/q) but resample from p instead of the residual."
    n = accepts(p[..., :-1, :], q, drafts, u_accept).long().cumprod(-1).sum(-1)
    p_n = p.gather(-2, n[..., None, None].expand(*n.shape, 1, p.shape[-1])).squeeze(-2)
    return n, inverse_cdf(p_n, u_next)


@pytest.fixture(scope="module")
def model_p_q():
    "The full model's p and the shallow exit's q (temperature 1) at a fixed context of a tiny model."
    model, prompt = peaky_model()
    with torch.no_grad(): out = model(prompt)
    p, q = (torch.softmax(out[e][0, -1].double(), -1) for e in (4, 1))
    assert (p - q).abs().sum() / 2 > 0.2                         # the draft is a poor one: the test has teeth
    return model, prompt, p, q


def chi2_pvalue(tokens, p):
    counts = torch.bincount(tokens, minlength=len(p)).double()
    keep = p * len(tokens) >= 5                                  # chi-square needs expected counts >= 5
    obs = torch.cat([counts[keep], counts[~keep].sum()[None]])
    exp = torch.cat([p[keep], p[~keep].sum()[None]]) * len(tokens)
    obs, exp = (obs, exp) if exp[-1] > 0 else (obs[:-1], exp[:-1])
    return chisquare(obs.numpy(), exp.numpy()).pvalue


def test_sampling_first_token_is_the_full_softmax(model_p_q):
    _, _, p, q = model_p_q
    first = first_token_draws(p, q, 100_000, seed=1)
    freq = torch.bincount(first, minlength=len(p)).double() / len(first)
    assert (freq - p).abs().sum() / 2 <= 0.01
    assert chi2_pvalue(first, p) > 1e-3


def test_chi_square_fails_a_wrong_acceptance_rule(model_p_q):
    # the same test on a biased rule must fail, else it could not catch a bug
    _, _, p, q = model_p_q
    first = first_token_draws(p, q, 100_000, seed=1, rule=resample_from_p)
    assert chi2_pvalue(first, p) < 1e-6


def test_self_speculative_samples_the_full_softmax_end_to_end(model_p_q):
    # through the generator itself (fewer draws: each is a run); breaks if it accepts without the p/q test
    model, prompt, p, q = model_p_q
    g = torch.Generator().manual_seed(0)
    first = torch.tensor([int(self_speculative(model, prompt, 2, draft_len=1, exit_layer=1, temperature=1.0,
                                               generator=g).new_tokens[0, 0]) for _ in range(300)])
    assert chi2_pvalue(first, p) > 1e-3
    assert chi2_pvalue(first, q) < 1e-6                         # and it is not the draft's distribution


def test_sampling_is_deterministic_by_seed(model_p_q):
    model, prompt, _, _ = model_p_q
    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return self_speculative(model, prompt, 20, temperature=1.0, generator=g)
    assert torch.equal(run(1).tokens, run(1).tokens)
    assert not all(torch.equal(run(1).tokens, run(s).tokens) for s in range(2, 6))


# ---- counted work ----

def expected_work(res, model, P):
    "Draft and verify work from the accept pattern alone (see the loop in 11_speculate)."
    e, L = res.shallow_exit, model.n_layers
    keys = lambda a, b: sum(t + 1 for t in range(a, b))         # a layer's attention pairs, positions a..b-1
    draft = dict(layer_forwards=0, attention_pairs=0, head_evals=0, confidence_evals=0)
    verify = dict(layer_forwards=0, attention_pairs=0, head_evals=0)
    thrown, seen = 0, P - 1                                     # seen: the HF draft cache's length
    for v in res.passes:
        t0, m, n = v.position, len(v.drafted), v.accepted
        heads = m + v.stopped_early
        if res.reuse: fed = (t0, t0 + m + 1)
        else: fed = (seen, t0 + m + v.stopped_early)           # catch up, then all drafts but the last
        draft["layer_forwards"] += e * (fed[1] - fed[0])
        draft["attention_pairs"] += e * keys(*fed)
        draft["head_evals"] += heads
        draft["confidence_evals"] += heads if res.threshold is not None else 0
        depth = L - e if res.reuse else L
        verify["layer_forwards"] += depth * (m + 1)
        verify["attention_pairs"] += depth * keys(t0, t0 + m + 1)
        verify["head_evals"] += m + 1
        thrown += L * (m - n) if res.reuse else L * (m - n) + e * max(0, fed[1] - (t0 + n + 1))
        seen = min(fed[1], t0 + n + 1) if fed[1] > fed[0] or not res.reuse else seen
    return draft, verify, thrown


@pytest.mark.parametrize("reuse", [True, False])
@pytest.mark.parametrize("threshold", [None, 0.035])     # 0.035: this model's shallow confidences straddle it
def test_counted_work_equals_the_formula(reuse, threshold):
    # breaks if a forward is counted where it does not run (or not counted where it does)
    model, _ = random_model(7)
    P = 5
    prompt = torch.randint(0, model.config.vocab_size, (1, P))
    res = self_speculative(model, prompt, 30, draft_len=4, reuse=reuse, draft_threshold=threshold)
    draft, verify, thrown = expected_work(res, model, P)
    assert {k: getattr(res.draft_work, k) for k in draft} == draft
    assert res.draft_work.estimator_flops == draft["confidence_evals"] * SoftmaxMax().flops(model)
    assert {k: getattr(res.verify_work, k) for k in verify} == verify
    assert res.thrown_away.layer_forwards == thrown
    L, e = model.n_layers, res.shallow_exit
    assert res.prefill.layer_forwards == (P - 1) * (L if reuse else L + e)
    assert res.decode.layer_forwards == res.draft_work.layer_forwards + res.verify_work.layer_forwards
    assert res.decode_flops > 0 and res.drafted > res.accepted > 0    # rejections happened: formula exercised
    if threshold is not None: assert 0 < sum(v.stopped_early for v in res.passes) < len(res.passes)


def test_reuse_saves_the_lower_layers_second_run():
    model, _ = random_model(7)
    prompt = torch.randint(0, model.config.vocab_size, (1, 5))
    a = self_speculative(model, prompt, 30, draft_len=4)
    b = self_speculative(model, prompt, 30, draft_len=4, reuse=False)
    assert torch.equal(a.tokens, b.tokens)
    assert a.decode.layer_forwards < b.decode.layer_forwards


def test_per_token_record():
    model, _ = random_model(7)
    res = self_speculative(model, torch.randint(0, model.config.vocab_size, (1, 5)), 25, draft_len=3)
    assert res.from_draft.shape == res.pass_index.shape == (1, 25)
    assert int(res.from_draft.sum()) == res.accepted and res.pass_index[0, -1] == len(res.passes) - 1
    assert math.isclose(res.tokens_per_pass, 25 / len(res.passes))
    s = res.summary()
    assert s["acceptance_rate"] == res.accepted / res.drafted and s["method"] == "self_speculative"


# ---- errors by name ----

@pytest.mark.parametrize("kwargs, field", [
    (dict(draft_len=0), "draft_len=0"), (dict(draft_len=2.5), "draft_len=2.5"),
    (dict(draft_len=True), "draft_len=True"), (dict(exit_layer=4), "exit_layer=4"),
    (dict(exit_layer=3), "exit_layer=3"), (dict(exit_layer=0), "exit_layer=0"),
    (dict(draft_threshold="0.5"), "draft_threshold='0.5'"),
    (dict(draft_threshold=-0.1), "draft_threshold=-0.1"),
    (dict(draft_threshold=float("nan")), "draft_threshold=nan"),
    (dict(temperature=-1.0), "temperature=-1.0"), (dict(temperature=float("nan")), "temperature=nan"),
    (dict(temperature=float("inf")), "temperature=inf"),
    (dict(estimator="softmax_max"), "draft_threshold=None"),
])
def test_bad_arguments_are_named(kwargs, field):
    torch.manual_seed(0)
    model = EarlyExitLM(ModelConfig(vocab_size=10, dim=8, num_heads=2, n_layers=4, exit_layers=(2, 4)))
    with pytest.raises(ConfigError, match=field.replace("(", r"\(").replace(".", r"\.")):
        self_speculative(model, torch.tensor([[1, 2]]), 4, **kwargs)


def test_bad_prompts_are_named():
    model = EarlyExitLM(ModelConfig(vocab_size=10, dim=8, num_heads=2, n_layers=4, exit_layers=(2, 4)))
    bad_prompts = (torch.tensor([1, 2]), torch.tensor([[1, 2], [3, 4]]), torch.tensor([[1.0, 2.0]]),
                   torch.tensor([[1, 10]]))
    for bad in bad_prompts:
        with pytest.raises(ConfigError, match="prompt="): self_speculative(model, bad, 4)
    with pytest.raises(ConfigError, match="n_new=0"): self_speculative(model, torch.tensor([[1]]), 0)
    only_top = EarlyExitLM(ModelConfig(vocab_size=10, dim=8, num_heads=2, n_layers=2, exit_layers=(2,)))
    with pytest.raises(ConfigError, match="exit_layer=None"):
        self_speculative(only_top, torch.tensor([[1]]), 3)


def test_estimator_by_name_and_training_mode_restored():
    model, _ = random_model(11)
    model.train()
    prompt = torch.randint(0, model.config.vocab_size, (1, 4))
    res = self_speculative(model, prompt, 12, estimator="saturation", draft_threshold=0.9)
    assert model.training and res.estimator == "saturation"
    model.eval()
    assert torch.equal(res.tokens, cached(model, prompt, 12).tokens)


def test_on_step_reports_every_token_and_all_the_work():
    # breaks if a step is skipped or work is reported twice (the explorer sums step.work)
    model, _ = random_model(7)
    prompt = torch.randint(0, model.config.vocab_size, (1, 5))
    steps = []
    res = self_speculative(model, prompt, 20, draft_len=3, on_step=steps.append)
    assert [s.index for s in steps] == list(range(20))
    assert [int(s.token[0]) for s in steps] == res.new_tokens[0].tolist()
    total = steps[0].work
    for s in steps[1:]: total = total + s.work
    assert total == res.decode
