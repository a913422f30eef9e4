"""Generator equivalences over a seeded sweep of random model configs (issue #2, section 7)."""
import random
import pytest, torch
from eelab.model import EarlyExitLM, ModelConfig
from eelab.generate import no_cache, cached, true_exit, fake_exit, recompute_skip_pattern
from eelab.estimators import max_softmax
from eelab.cost import flop_model, full_depth_work
from eelab.model import WorkMeter
from eelab.generate import FILL_POLICIES, full_cache
from eelab.config import ConfigError


def random_configs(n, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        heads = rng.choice([1, 2, 4])
        head_dim = rng.choice([4, 8, 16])
        n_layers = rng.randint(2, 6)
        exits = sorted(set(rng.sample(range(1, n_layers), rng.randint(1, n_layers - 1))) | {n_layers})
        yield ModelConfig(vocab_size=rng.choice([17, 64, 300]), dim=heads * head_dim, num_heads=heads,
                          n_layers=n_layers,
                          exit_layers=tuple(exits), norm=rng.choice(["post", "pre"]),
                          tie_embeddings=rng.random() < 0.3, separate_heads=rng.random() < 0.3)


CONFIGS = list(random_configs(8))


def _config_id(mc): return f"L{mc.n_layers}x{mc.dim}-{mc.norm}-exits{'_'.join(map(str, mc.exit_layers))}"


@pytest.mark.parametrize("mc", CONFIGS, ids=_config_id)
@pytest.mark.parametrize("batch", [1, 4])
def test_cached_equals_no_cache(mc, batch):
    torch.manual_seed(mc.n_layers * 100 + mc.dim)
    model = EarlyExitLM(mc).eval()
    prompt = torch.randint(0, mc.vocab_size, (batch, 5))
    for exit_layer in (mc.exit_layers[0], mc.n_layers):
        a = no_cache(model, prompt, 64, exit_layer=exit_layer, keep_logits=True)
        b = cached(model, prompt, 64, exit_layer=exit_layer, keep_logits=True)
        assert torch.equal(a.tokens, b.tokens)
        assert (a.logits - b.logits).abs().max() < 1e-5


@pytest.mark.parametrize("mc", [mc for mc in CONFIGS if len(mc.exit_layers) > 1][:4], ids=str)
def test_true_exit_limits_and_skip_pattern(mc):
    torch.manual_seed(1)
    model = EarlyExitLM(mc).eval()
    prompt = torch.randint(0, mc.vocab_size, (1, 6))
    e = mc.exit_layers[0]
    gen = lambda: torch.Generator().manual_seed(7)
    assert torch.equal(true_exit(model, prompt, 64, 1.5, 1.0, gen(), exit_layer=e).tokens,
                       cached(model, prompt, 64, 1.0, gen()).tokens)
    assert torch.equal(true_exit(model, prompt, 64, 0.0, 1.0, gen(), exit_layer=e).tokens,
                       cached(model, prompt, 64, 1.0, gen(), exit_layer=e).tokens)
    # a threshold in the middle of this model's confidences: some tokens exit, some go deep
    with torch.no_grad():
        conf = max_softmax(model(torch.randint(0, mc.vocab_size, (4, 32)))[e]).flatten()
    threshold = float(conf.median())
    res = true_exit(model, prompt, 64, threshold, 1.0, gen(), exit_layer=e, keep_logits=True)
    # both checks hold for any skip pattern, so they run unconditionally (a mixed pattern makes them sharper)
    assert res.decode.layer_forwards == res.shallow_count * e + res.deep_count * mc.n_layers
    deep = res.upper_cached[0]
    assert torch.allclose(res.logits[0][deep], recompute_skip_pattern(model, res), atol=1e-5)


def test_true_exit_needs_batch_one():
    model = EarlyExitLM(ModelConfig(vocab_size=20, dim=16, num_heads=2))
    with pytest.raises(ConfigError, match="batch size 1"):
        true_exit(model, torch.zeros(2, 3, dtype=torch.long), 4, 0.5)


def test_fake_exit_batch_picks_per_row():
    torch.manual_seed(3)
    model = EarlyExitLM(ModelConfig(vocab_size=40, dim=16, num_heads=2)).eval()
    prompt = torch.randint(0, 40, (4, 5))
    with torch.no_grad():
        conf = max_softmax(model(prompt)[2]).flatten()
    res = fake_exit(model, prompt, 16, float(conf.median()))
    assert torch.equal(res.token_exits, torch.where(res.confidences >= float(conf.median()), 2, 4))
    assert res.decode.layer_forwards == 4 * 16 * 4


# ---- KV fill policies (issue: upper-cache gaps) ----


@torch.no_grad()
def _mid_threshold(model, e, V):
    torch.manual_seed(11)
    return float(max_softmax(model(torch.randint(0, V, (4, 32)))[e]).flatten().median())


@pytest.mark.parametrize("mc", [mc for mc in CONFIGS if len(mc.exit_layers) > 1][:4], ids=str)
def test_fill_policies_match_definitions(mc):
    torch.manual_seed(2)
    model = EarlyExitLM(mc).eval()
    e, L, n, P = mc.exit_layers[0], mc.n_layers, 40, 5
    prompt = torch.randint(0, mc.vocab_size, (1, P))
    th = _mid_threshold(model, e, mc.vocab_size)
    runs = {f: true_exit(model, prompt, n, th, exit_layer=e, keep_logits=True, fill=f) for f in FILL_POLICIES}
    orc, rec, pro = runs["oracle"], runs["recompute"], runs["propagate"]
    fed = orc.tokens[:, :-1]
    with torch.no_grad():
        full = model(fed)[L][0, P - 1:]
    deep = orc.token_exits[0] == L
    assert (orc.logits[0][deep] - full[deep]).abs().max() < 1e-4 if deep.any() else True
    ref = full_cache(model, fed)
    for i in range(e, L):
        assert (orc.cache[i].k[:, :, :ref[i].length] - ref[i].k).abs().max() < 1e-4
        assert (orc.cache[i].v[:, :, :ref[i].length] - ref[i].v).abs().max() < 1e-4
    # recompute == oracle under greedy decoding; its upper cache == the full model's at the positions it holds
    assert torch.equal(rec.tokens, orc.tokens) and torch.equal(rec.token_exits, orc.token_exits)
    assert (rec.logits - orc.logits).abs().max() < 1e-4
    for i in range(e, L):
        held = rec.cache[i].held_positions()
        assert held == sorted(held)
        assert (rec.cache[i].k[:, :, :len(held)] - ref[i].k[:, :, held]).abs().max() < 1e-4
    # propagate: K/V at skipped positions = projection of the exit hidden state at the true position
    with torch.no_grad():
        pf = pro.tokens[:, :-1]
        h = model.forward_layers(model.embed(pf), 0, e, torch.arange(pf.shape[1]))
        skipped = [P - 1 + int(i) for i in (pro.token_exits[0] == e).nonzero().squeeze(1)]
        for i in range(e, L):
            assert pro.cache[i].held_positions() == list(range(pf.shape[1]))
            if skipped:
                k, v = model.layers[i].kv_project(h[:, skipped], model.rope(torch.tensor(skipped)))
                assert (pro.cache[i].k[:, :, skipped] - k).abs().max() < 1e-4
                assert (pro.cache[i].v[:, :, skipped] - v).abs().max() < 1e-4
    assert bool(pro.upper_cached.all())
    # counted work
    for f, r in runs.items():
        S, D = r.shallow_count, r.deep_count
        done = int(r.upper_cached.sum()) - D if f == "recompute" else 0
        want = dict(skip=S * e + D * L, propagate=S * e + D * L, recompute=n * e + (D + done) * (L - e),
                    oracle=n * L)[f]
        assert r.decode.layer_forwards == want, f
        assert r.decode.kv_fills == (S * (L - e) if f == "propagate" else 0)
        assert r.decode.head_evals == S + 2 * D
        fm, d = flop_model(model), r.decode     # FLOPs: layers, pairs, heads, fills at 4 C^2, softmax at 3 V
        assert r.decode_flops == (d.layer_forwards * fm.layer + d.attention_pairs * fm.attention_pair
                                  + d.head_evals * fm.head
                                  + d.kv_fills * 4 * mc.dim ** 2 + n * 3 * mc.vocab_size)


def test_recompute_leftover_queue_is_not_processed():
    torch.manual_seed(4)
    model = EarlyExitLM(ModelConfig(vocab_size=30, dim=16, num_heads=2)).eval()
    r = true_exit(model, torch.randint(0, 30, (1, 4)), 10, 0.0, fill="recompute")   # everything exits
    assert r.unprocessed == 10 and not r.upper_cached.any()
    assert r.decode.layer_forwards == 10 * 2 and r.cache[2].length == 3       # only the prefill is up there
    assert r.summary()["unprocessed"] == 10


def test_invalid_fill():
    model = EarlyExitLM(ModelConfig(vocab_size=20, dim=16, num_heads=2))
    with pytest.raises(ConfigError, match="fill"):
        true_exit(model, torch.zeros(1, 3, dtype=torch.long), 4, 0.5, fill="bogus")


def test_estimator_without_logits_pays_one_head():
    class Const:
        name, needs_logits = "const", False
        def __init__(self, c): self.c = c
        def __call__(self, state): return self.c
        def flops(self, model): return 5
    torch.manual_seed(5)
    model = EarlyExitLM(ModelConfig(vocab_size=50, dim=16, num_heads=2)).eval()
    prompt = torch.randint(0, 50, (1, 4))
    for c in (0.0, 1.0):
        r = true_exit(model, prompt, 12, 0.5, estimator=Const(c))
        assert r.decode.head_evals == 12 and r.estimator == "const" and r.decode.estimator_flops == 12 * 5
        fm, d = flop_model(model), r.decode
        assert r.decode_flops == (d.layer_forwards * fm.layer + d.attention_pairs * fm.attention_pair
                                  + 12 * fm.head + 12 * 5)
    never, always = (true_exit(model, prompt, 12, 0.5, estimator=Const(c)).tokens for c in (0.0, 1.0))
    assert torch.equal(never, cached(model, prompt, 12).tokens)
    assert torch.equal(always, cached(model, prompt, 12, exit_layer=2).tokens)


# ---- cost model: counted cost beside the reference's formula (issue 8 §4, issue 9 §1) ----


def _small(seed=6, **kw):
    torch.manual_seed(seed)
    return EarlyExitLM(ModelConfig(**{**dict(vocab_size=40, dim=16, num_heads=2), **kw})).eval()


def test_counted_cost_beside_reference_cost():
    # fails if counted_cost is missing, or derived from the layer formula instead of counted FLOPs
    model = _small()
    prompt = torch.randint(0, 40, (1, 5))
    base = cached(model, prompt, 20)
    assert base.decode == full_depth_work(4, 4, 20) == base.full_depth and base.counted_cost == 1.0
    th = _mid_threshold(model, 2, 40)
    for r in (fake_exit(model, prompt, 20, th), true_exit(model, prompt, 20, th, fill="oracle")):
        assert 0 < r.shallow_count < 20 and r.savings > 0           # the formula claims a saving...
        assert r.counted_cost > 1 and r.summary()["counted_cost"] == r.counted_cost   # ...counted work: no
    skip = true_exit(model, prompt, 20, th)
    assert skip.counted_cost == skip.decode_flops / base.decode_flops


# ---- on_step (issue 9 §2) ----
@pytest.mark.parametrize("fill", FILL_POLICIES)
def test_on_step_matches_result(fill):
    # fails if steps are missed or doubled, if a step's work is not that step's, if exits/confidences differ
    model = _small(7)
    prompt = torch.randint(0, 40, (1, 4))
    steps = []
    r = true_exit(model, prompt, 24, _mid_threshold(model, 2, 40), fill=fill, on_step=steps.append)
    assert [s.index for s in steps] == list(range(24))
    assert sum((s.work for s in steps), WorkMeter()) == r.decode
    assert all(s.work.confidence_evals == 1 and s.work.layer_forwards >= 2 for s in steps)
    assert torch.equal(torch.stack([s.exit for s in steps], 1), r.token_exits)
    assert torch.equal(torch.stack([s.confidence for s in steps], 1), r.confidences)
    assert torch.equal(torch.stack([s.token for s in steps], 1), r.new_tokens)
    went_up = {s.index for s in steps if s.upper_cached[0]} | {i for s in steps for i in s.entered_upper}
    assert went_up == set(r.upper_cached[0].nonzero().flatten().tolist())


@pytest.mark.parametrize("method", ["no_cache", "cached", "fake_exit"])
def test_on_step_every_generator(method):
    # fails if a generator ignores on_step, or if asking for steps changes the tokens or the counted work
    from eelab.generate import generate
    model = _small(8)
    prompt = torch.randint(0, 40, (2, 3))
    steps = []
    kw = dict(threshold=0.5) if method == "fake_exit" else {}
    r = generate(model, prompt, 6, method=method, on_step=steps.append, **kw)
    assert len(steps) == 6 and sum((s.work for s in steps), WorkMeter()) == r.decode
    assert torch.equal(torch.stack([s.exit for s in steps], 1), r.token_exits)
    assert torch.equal(torch.stack([s.confidence for s in steps], 1).isnan(), r.confidences.isnan())
    # without on_step the same run counts the same work and makes the same tokens
    plain = generate(model, prompt, 6, method=method, **kw)
    assert plain.decode == r.decode and torch.equal(plain.tokens, r.tokens)


# ---- bad input to the Python API (issue 8 §4): each case failed or answered silently before ----
@pytest.mark.parametrize("threshold", [float("nan"), -0.5, float("inf"), None, "0.5", True])
@pytest.mark.parametrize("method", [true_exit, fake_exit])
def test_bad_threshold(method, threshold):
    # before: NaN never exited, negative/inf silently always/never, None and str raised a raw TypeError
    model = _small()
    with pytest.raises(ConfigError, match="threshold"):
        method(model, torch.zeros(1, 3, dtype=torch.long), 4, threshold)


def test_threshold_extremes_documented():
    # 0 always exits, anything above 1 never does; 1.0 is not "never": a confidence rounds to exactly 1.0
    model = _small()
    prompt = torch.randint(0, 40, (1, 3))
    assert true_exit(model, prompt, 8, 0).deep_count == 0
    assert true_exit(model, prompt, 8, 1.0000001).shallow_count == 0
    assert max_softmax(torch.tensor([0.0, 40.0])).item() == 1.0


@pytest.mark.parametrize("temperature", [-1.0, float("nan"), float("inf"), None])
def test_bad_temperature(temperature):
    # before: negative sampled the inverted distribution, NaN emitted the last id, inf was uniform
    with pytest.raises(ConfigError, match="temperature"):
        cached(_small(), torch.zeros(1, 3, dtype=torch.long), 4, temperature)


@pytest.mark.parametrize("prompt, n_new, field", [
    (torch.zeros(3, dtype=torch.long), 4, "prompt"),          # 1-D: was "not enough values to unpack"
    (torch.zeros(1, 3), 4, "prompt"),                         # float ids: were truncated or crashed
    (torch.zeros(1, 3, dtype=torch.long), 2.5, "n_new"),     # was a raw TypeError
    (torch.zeros(1, 3, dtype=torch.long), 0, "n_new"),
    (torch.full((1, 3), 99), 4, "prompt"),                    # ids outside the vocabulary
])
def test_bad_prompt_and_n_new(prompt, n_new, field):
    # before: a raw ValueError, TypeError or RuntimeError from deep inside, none naming the field
    for method in (no_cache, cached):
        with pytest.raises(ConfigError, match=field):
            method(_small(), prompt, n_new)


def test_exit_layer_zero_is_rejected():
    # was silently the default exit
    model = _small()
    p = torch.zeros(1, 3, dtype=torch.long)
    for call in (lambda: true_exit(model, p, 4, 0.5, exit_layer=0),
                 lambda: fake_exit(model, p, 4, 0.5, exit_layer=0),
                 lambda: cached(model, p, 4, exit_layer=0), lambda: no_cache(model, p, 4, exit_layer=0)):
        with pytest.raises(ConfigError, match="exit_layer"):
            call()


def test_longer_than_trained_context_warns_once():
    model = _small(context_len=8)
    p = torch.zeros(1, 4, dtype=torch.long)
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        true_exit(model, p, 5, 0.5)                               # 4 + 5 - 1 = 8 positions fed: fine
        assert not caught
        true_exit(model, p, 9, 0.5)                               # 12 positions: one warning, not one a token
    assert len(caught) == 1 and "trained on 8" in str(caught[0].message)


def test_mode_restored_when_generator_raises():
    # the model was left in eval mode when a step raised
    model = _small().train()
    class Broken:
        name, needs_logits = "broken", False
        def flops(self, model): return 0
        def __call__(self, state): raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        true_exit(model, torch.zeros(1, 3, dtype=torch.long), 4, 0.5, estimator=Broken())
    assert model.training
    cached(model, torch.zeros(1, 3, dtype=torch.long), 2)
    assert model.training
