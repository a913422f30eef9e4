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
    if 0 < res.shallow_count < 64:
        deep = res.upper_cached[0]
        assert (res.logits[0][deep] - recompute_skip_pattern(model, res)).abs().max() < 1e-5
        assert res.decode.layer_forwards == res.shallow_count * e + res.deep_count * mc.n_layers


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
