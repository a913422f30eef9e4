"""Generator equivalences over a seeded sweep of random model configs (issue #2, section 7)."""
import random
import pytest, torch
from eelab.model import EarlyExitLM, ModelConfig
from eelab.generate import no_cache, cached, true_exit, fake_exit, recompute_skip_pattern, max_softmax
from eelab.config import ConfigError


def random_configs(n, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        heads = rng.choice([1, 2, 4])
        head_dim = rng.choice([4, 8, 16])
        n_layers = rng.randint(2, 6)
        exits = sorted(set(rng.sample(range(1, n_layers), rng.randint(1, n_layers - 1))) | {n_layers})
        yield ModelConfig(vocab_size=rng.choice([17, 64, 300]), dim=heads * head_dim, num_heads=heads, n_layers=n_layers,
                          exit_layers=tuple(exits), norm=rng.choice(["post", "pre"]),
                          tie_embeddings=rng.random() < 0.3, separate_heads=rng.random() < 0.3)


CONFIGS = list(random_configs(8))


@pytest.mark.parametrize("mc", CONFIGS, ids=lambda mc: f"L{mc.n_layers}x{mc.dim}-{mc.norm}-exits{'_'.join(map(str, mc.exit_layers))}")
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
    conf = max_softmax(model(prompt)[2]).flatten()
    res = fake_exit(model, prompt, 16, float(conf.median()))
    assert torch.equal(res.exit_layers, torch.where(res.confidences >= float(conf.median()), 2, 4))
    assert res.decode.layer_forwards == 4 * 16 * 4


# ---- KV fill policies (issue: upper-cache gaps) ----
from eelab.generate import FILL_POLICIES, kv_project, full_cache


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
    deep = orc.exit_layers[0] == L
    assert (orc.logits[0][deep] - full[deep]).abs().max() < 1e-4 if deep.any() else True
    ref = full_cache(model, fed)
    for i in range(e, L):
        assert (orc.cache[i].k[:, :, :ref[i].length] - ref[i].k).abs().max() < 1e-4
        assert (orc.cache[i].v[:, :, :ref[i].length] - ref[i].v).abs().max() < 1e-4
    # recompute == oracle under greedy decoding; its upper cache == the full model's at the positions it holds
    assert torch.equal(rec.tokens, orc.tokens) and torch.equal(rec.exit_layers, orc.exit_layers)
    assert (rec.logits - orc.logits).abs().max() < 1e-4
    for i in range(e, L):
        held = rec.cache[i].held_positions()
        assert held == sorted(held)
        assert (rec.cache[i].k[:, :, :len(held)] - ref[i].k[:, :, held]).abs().max() < 1e-4
    # propagate: K/V at skipped positions = projection of the exit hidden state at the true position
    with torch.no_grad():
        pf = pro.tokens[:, :-1]
        h = model.forward_layers(model.embed(pf), 0, e, torch.arange(pf.shape[1]))
        skipped = [P - 1 + int(i) for i in (pro.exit_layers[0] == e).nonzero().squeeze(1)]
        for i in range(e, L):
            assert pro.cache[i].held_positions() == list(range(pf.shape[1]))
            if skipped:
                k, v = kv_project(model.layers[i], h[:, skipped], model.rope(torch.tensor(skipped)))
                assert (pro.cache[i].k[:, :, skipped] - k).abs().max() < 1e-4
                assert (pro.cache[i].v[:, :, skipped] - v).abs().max() < 1e-4
    assert bool(pro.upper_cached.all())
    # counted work
    for f, r in runs.items():
        S, D = r.shallow_count, r.deep_count
        done = int(r.upper_cached.sum()) - D if f == "recompute" else 0
        want = dict(skip=S * e + D * L, propagate=S * e + D * L, recompute=n * e + (D + done) * (L - e), oracle=n * L)[f]
        assert r.decode.layer_forwards == want, f
        assert r.kv_fill_forwards == (S * (L - e) if f == "propagate" else 0)
        assert r.decode.head_evals == S + 2 * D
        assert r.decode_flops == r.flops_per.of(r.decode) + r.kv_fill_forwards * 4 * mc.dim ** 2


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
        assert r.decode.head_evals == 12 and r.estimator == "const" and r.estimator_flops_per_eval == 5
        assert r.decode_flops == r.flops_per.of(r.decode) + 12 * (5 - r.flops_per.softmax)
    assert torch.equal(true_exit(model, prompt, 12, 0.5, estimator=Const(0.0)).tokens, cached(model, prompt, 12).tokens)
    assert torch.equal(true_exit(model, prompt, 12, 0.5, estimator=Const(1.0)).tokens, cached(model, prompt, 12, exit_layer=2).tokens)
