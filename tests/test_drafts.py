"""Draft sources (issue 18): adapters, shortlists, skip sets and the stop rule stay lossless; adapters train,
save and load; bad arguments are named."""
import json, random

import pytest, torch
from scipy.stats import chisquare
from eelab.config import ConfigError
from eelab.cache import CacheFullError
from eelab.generate import cached, full_cache
from eelab.model import EarlyExitLM, ModelConfig
from _random_models import peaky_model, random_model
from eelab.speculate import self_speculative
from eelab.drafts import (AdapterDraft, ExitAdapter, ShallowDraft, Shortlist, SkipDraft, coverage, draft_top1,
                          frequent_tokens, mixed_attention, search_skip, skip_hidden, verifier_kv)
from eelab.adapter import (adapter_logits, agreement, cache_hidden, load_adapter, main, save_adapter,
                           text_windows, train_adapter)

pytest.importorskip("transformers", reason="the HF half needs the extra: pip install eelab[hf]")
from eelab.hf import tiny_random  # noqa: E402

torch.set_num_threads(1)


def eelab_model(seed):
    "A tiny random eelab model of 3 to 5 layers whose drafts agree with the top on some tokens."
    return random_model(seed, min_layers=3)


def hf_model(seed):
    rng = random.Random(seed)
    family = "gpt2" if seed % 3 == 2 else "llama"
    return tiny_random(family, n_layers=rng.randint(3, 5), seed=seed).eval(), rng


def perturbed_adapter(model, rng, scale=0.3):
    "A random adapter: a copy of a random layer, its weights perturbed (it is not any layer of the model)."
    adapter = ExitAdapter.from_layer(model, rng.randint(1, model.n_layers - 1), rng.randrange(model.n_layers))
    g = torch.Generator().manual_seed(rng.randrange(10**6))
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(scale * p.std().nan_to_num(0.1) * torch.randn(p.shape, generator=g))
    return adapter.eval()


def random_source(model, rng, vocab_ids=None):
    "One of the draft sources, with or without a shortlist and a stop rule, at random."
    V, L = model.config.vocab_size, model.n_layers
    short = None
    if rng.random() < 0.5:
        short = Shortlist(sorted(rng.sample(range(V), rng.randint(1, V))))
    stop = rng.choice([None, None, 0.0, 0.05, 0.3, 0.9])
    kind = rng.choice(["shallow", "adapter", "skip"])
    if kind == "shallow":
        return ShallowDraft(rng.choice(model.exit_layers[:-1]), short, stop)
    if kind == "adapter": return AdapterDraft(perturbed_adapter(model, rng), short, stop)
    return SkipDraft(rng.sample(range(L), rng.randint(1, L)), short, stop)


def assert_caches_clean(model, res):
    "The model's layers' caches equal a fresh full pass over the emitted text (the last token never fed)."
    full = full_cache(model, res.tokens[:, :-1])
    for mine, ref in zip(res.cache.layers[:model.n_layers], full.layers):
        assert mine.length == ref.length
        assert torch.allclose(mine.k[:, :, :mine.length], ref.k, atol=1e-4)
        assert torch.allclose(mine.v[:, :, :mine.length], ref.v, atol=1e-4)
        assert mine.held_positions() == list(range(ref.length))


# ---- greedy: token-identical to cached, over random models, sources, prompts ----

# breaks if: a skip draft's own K/V reach the verifier, the adapter's cache drifts from the text, the
# verifier resumes at the wrong layer, a shortlisted index is emitted instead of its token id
SWEEP = [(eelab_model, s) for s in range(8)] + [(hf_model, s) for s in range(6)]


@pytest.mark.parametrize("maker, seed", SWEEP)
def test_greedy_equals_cached(maker, seed):
    model, rng = maker(seed)
    accepted = rejected = 0
    for k in range(5):
        P = 1 if k == 0 else rng.randint(2, 10)
        prompt = torch.randint(0, model.config.vocab_size, (1, P))
        n_new = rng.randint(1, 20)
        source = random_source(model, rng)
        res = self_speculative(model, prompt, n_new, draft_len=rng.randint(1, 6), draft_source=source)
        assert torch.equal(res.tokens, cached(model, prompt, n_new).tokens), type(source).__name__
        assert_caches_clean(model, res)
        assert sum(v.accepted + 1 for v in res.passes) == n_new
        if isinstance(source, AdapterDraft):                   # its own cache: one entry per text position
            assert res.cache[model.n_layers].length == res.cache[0].length
        accepted, rejected = accepted + res.accepted, rejected + res.drafted - res.accepted
    assert accepted + rejected > 0


def test_the_sweep_sees_acceptance_and_rejection_for_every_source():
    counts = {}
    for seed in range(5):
        for maker in (eelab_model, hf_model):
            model, rng = maker(seed)
            for source in (ShallowDraft(), AdapterDraft(perturbed_adapter(model, rng)),
                           SkipDraft(sorted(rng.sample(range(model.n_layers), model.n_layers - 1)))):
                res = self_speculative(model, torch.randint(0, model.config.vocab_size, (1, 5)), 16,
                                       draft_len=3, draft_source=source)
                acc, rej = counts.get(type(source).__name__, (0, 0))
                counts[type(source).__name__] = (acc + res.accepted, rej + res.drafted - res.accepted)
    assert all(acc > 10 and rej > 10 for acc, rej in counts.values()), counts


class LeakySkip(SkipDraft):
    "A WRONG skip draft: its own K/V stay in the verifier's cache (no crop before verifying)."
    def finish(self, s, token, position, d):
        d.hidden = s.model.embed(s.token_tensor([token, *d.tokens]))
        return d


def test_a_leaking_skip_draft_is_caught():
    # the equivalence test has teeth: the same check on a skip draft that leaks its K/V fails
    caught = 0
    for seed in range(6):
        model, rng = eelab_model(seed)
        prompt = torch.randint(0, model.config.vocab_size, (1, 6))
        ref = cached(model, prompt, 16)
        try:
            res = self_speculative(model, prompt, 16, draft_len=3, draft_source=LeakySkip([0]))
            assert torch.equal(res.tokens, ref.tokens)
            assert_caches_clean(model, res)
        except (AssertionError, CacheFullError): caught += 1        # wrong tokens, a dirty cache, or overflow
    assert caught == 6


def test_shallow_draft_is_the_default_draft():
    # ShallowDraft() without shortlist or stop rule: the same passes and the same counted work as today
    for seed in range(6):
        model, rng = eelab_model(seed)
        prompt = torch.randint(0, model.config.vocab_size, (1, rng.randint(1, 8)))
        e = rng.choice(model.exit_layers[:-1])
        a = self_speculative(model, prompt, 20, draft_len=3, exit_layer=e)
        b = self_speculative(model, prompt, 20, draft_len=3, draft_source=ShallowDraft(e))
        assert torch.equal(a.tokens, b.tokens) and a.passes == b.passes
        assert vars(a.draft_work) == vars(b.draft_work) and vars(a.verify_work) == vars(b.verify_work)


def test_a_shortlisted_head_counts_its_rows_not_a_full_head():
    # the draft's head over K shortlisted tokens is K rows of the head in the FLOP count, not one full head
    for seed in range(4):
        model, rng = eelab_model(seed)
        V, e = model.config.vocab_size, model.exit_layers[0]
        prompt = torch.randint(0, V, (1, rng.randint(1, 8)))
        short = Shortlist(sorted(rng.sample(range(V), rng.randint(1, V - 1))))
        full = self_speculative(model, prompt, 12, draft_len=3, draft_source=ShallowDraft(e))
        cut = self_speculative(model, prompt, 12, draft_len=3, draft_source=ShallowDraft(e, short))
        fm = cut.flops_per
        assert cut.draft_work.head_rows == len(short) * cut.drafted and full.draft_work.head_rows == 0
        assert full.draft_work.head_evals == full.drafted and cut.draft_work.head_evals == 0
        assert fm.head_row * V == fm.head          # so K rows cost K / V of a head


def test_stop_rule_extremes():
    model, _ = eelab_model(3)
    prompt = torch.randint(0, model.config.vocab_size, (1, 5))
    ref = cached(model, prompt, 20)
    never = self_speculative(model, prompt, 20, draft_len=4, draft_source=ShallowDraft(stop_below=0.0))
    always = self_speculative(model, prompt, 20, draft_len=4, draft_source=ShallowDraft(stop_below=1.0))
    assert torch.equal(never.tokens, ref.tokens) and torch.equal(always.tokens, ref.tokens)
    assert not any(v.stopped_early for v in never.passes) and never.drafted > 0
    assert always.drafted == 0 and all(v.stopped_early for v in always.passes[:-1])   # last: none to draft


def test_skip_all_layers_is_the_model():
    for maker in (eelab_model, hf_model):
        model, _ = maker(1)
        res = self_speculative(model, torch.randint(0, model.config.vocab_size, (1, 4)), 20, draft_len=4,
                               draft_source=SkipDraft(range(model.n_layers)))
        assert res.accepted == res.drafted > 0


# ---- the teacher-forced skip draft is the draft ----

def test_mixed_attention_is_causal_attention_when_the_draft_is_the_model():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 7, 8, generator=g) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(mixed_attention(q, k, v, k, v, 8 ** -0.5), ref, atol=1e-5)
    k2 = torch.randn(2, 4, 7, 8, generator=g)
    assert not torch.allclose(mixed_attention(q, k2, v, k, v, 8 ** -0.5), ref, atol=1e-3)


@pytest.mark.parametrize("maker, seed", [(eelab_model, 0), (eelab_model, 5), (hf_model, 0), (hf_model, 2)])
def test_teacher_forced_skip_predicts_the_first_draft_of_every_pass(maker, seed):
    # breaks if the search scored a different draft from the one that runs (own K/V vs the verifier's)
    model, rng = maker(seed)
    keep = sorted(rng.sample(range(model.n_layers), max(1, model.n_layers - 2)))
    res = self_speculative(model, torch.randint(0, model.config.vocab_size, (1, 6)), 24, draft_len=2,
                           draft_source=SkipDraft(keep))
    text = res.tokens[:, :-1]
    kv, _ = verifier_kv(model, text)
    top = draft_top1(model, skip_hidden(model, text, keep, kv))[0]
    firsts = [(v.drafted[0], int(top[v.position])) for v in res.passes if v.drafted]
    assert firsts and all(a == b for a, b in firsts)


def test_search_skip_path():
    model, _ = hf_model(0)
    tokens = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    path = search_skip(model, tokens, 1)
    L = model.n_layers
    assert [len(p["keep"]) for p in path] == list(range(L, 0, -1)) and path[0]["agreement"] == 1.0
    kv, logits = verifier_kv(model, tokens)
    for p in path[1:]:                                   # each recorded agreement is the set's, recomputed
        agree = (draft_top1(model, skip_hidden(model, tokens, p["keep"], kv)) == logits.argmax(-1)).float()
        assert abs(agree.mean().item() - p["agreement"]) < 1e-6
        assert p["dropped"] not in p["keep"]


# ---- sampling: the first emitted token is distributed as the full model's softmax ----

@pytest.fixture(scope="module")
def peaky():
    "A tiny model with peaky heads and a fixed prompt: the full model's p at its last position."
    model, prompt = peaky_model()
    with torch.no_grad(): p = torch.softmax(model(prompt)[4][0, -1].double(), -1)
    return model, prompt, p


def chi2_pvalue(tokens, p):
    counts = torch.bincount(tokens, minlength=len(p)).double()
    keep = p * len(tokens) >= 5
    obs = torch.cat([counts[keep], counts[~keep].sum()[None]])
    exp = torch.cat([p[keep], p[~keep].sum()[None]]) * len(tokens)
    obs, exp = (obs, exp) if exp[-1] > 0 else (obs[:-1], exp[:-1])
    return chisquare(obs.numpy(), exp.numpy()).pvalue


def draft_q(model, prompt, source) -> torch.Tensor:
    "The source's q (V,) for the first draft after the prompt, teacher-forced (temperature 1)."
    with torch.no_grad():
        if isinstance(source, SkipDraft):
            kv, _ = verifier_kv(model, prompt)
            h = skip_hidden(model, prompt, source.keep, kv)
            head_layer = model.n_layers
        elif isinstance(source, AdapterDraft):
            pos = torch.arange(prompt.shape[1])
            lower = model.forward_layers(model.embed(prompt), 0, source.adapter.after, pos)
            h = source.adapter(lower, model.rope(pos), pos)
            head_layer = model.n_layers
        else:
            h = model.forward_layers(model.embed(prompt), 0, 1, torch.arange(prompt.shape[1]))
            head_layer = 1
        head = model.head(head_layer)
        logits = head(h)[0, -1].double()
        if source.shortlist is not None:
            masked = torch.full_like(logits, float("-inf"))
            masked[source.shortlist.ids] = logits[source.shortlist.ids]
            logits = masked
        return torch.softmax(logits, -1)


def sources_for_sampling(model):
    rng = random.Random(0)
    half = Shortlist([0, 2, 3, 5, 7, 8])
    return dict(shortlist=ShallowDraft(1, half), stop=ShallowDraft(1, stop_below=0.3),
                adapter=AdapterDraft(perturbed_adapter(model, rng, 2.0)),
                adapter_short=AdapterDraft(perturbed_adapter(model, rng, 2.0), half),
                skip=SkipDraft([3]), skip_short=SkipDraft([1], half))


@pytest.mark.parametrize("name", ["shortlist", "stop", "adapter", "adapter_short", "skip", "skip_short"])
def test_sampling_first_token_is_the_full_softmax(peaky, name):
    # breaks if a shortlisted q is not put on its token ids, or a source's q is not the one it drew from
    model, prompt, p = peaky
    source = sources_for_sampling(model)[name]
    g = torch.Generator().manual_seed(1)
    first = torch.tensor([int(self_speculative(model, prompt, 2, draft_len=1, temperature=1.0, generator=g,
                                               draft_source=source).new_tokens[0, 0]) for _ in range(250)])
    assert chi2_pvalue(first, p) > 1e-3
    q, freq = draft_q(model, prompt, source), torch.bincount(first, minlength=len(p)).double() / len(first)
    if name != "stop":                 # teeth: the draft is far from p, and what came out is not the draft
        assert (p - q).abs().sum() / 2 > 0.15 and (freq - q).abs().sum() / 2 > (freq - p).abs().sum() / 2


def test_wrong_q_is_caught(peaky, monkeypatch):
    # the same check on a source that reports a q other than the one it drew from must fail
    import eelab.speculate as S
    model, prompt, p = peaky
    real = S.probs
    monkeypatch.setattr(S, "probs", lambda logits, t: real(logits * (1.0 if logits.shape[0] > 6 else 3.0), t))
    g = torch.Generator().manual_seed(1)
    source = ShallowDraft(1, Shortlist([0, 2, 3, 5, 7, 8]))
    first = torch.tensor([int(self_speculative(model, prompt, 2, draft_len=1, temperature=1.0, generator=g,
                                               draft_source=source).new_tokens[0, 0]) for _ in range(250)])
    monkeypatch.undo()
    assert chi2_pvalue(first, p) < 1e-3


def test_sampled_runs_are_deterministic_by_seed(peaky):
    model, prompt, _ = peaky
    src = SkipDraft([0, 2], Shortlist(range(8)), 0.1)
    run = lambda seed: self_speculative(model, prompt, 20, temperature=1.0, draft_source=src,
                                        generator=torch.Generator().manual_seed(seed)).tokens
    assert torch.equal(run(3), run(3)) and not all(torch.equal(run(3), run(s)) for s in range(4, 8))


# ---- the shortlist ----

def test_shortlist_logits_are_the_full_heads_at_its_ids():
    for maker in (eelab_model, hf_model):
        model, _ = maker(4)
        head = model.head(model.n_layers)
        h = torch.randn(3, 5, model.config.dim)
        ids = torch.tensor([0, 3, 7, 2])
        with torch.no_grad():
            assert torch.allclose(Shortlist(ids).logits(head, h), head(h)[..., ids], atol=1e-5)


def test_frequent_tokens():
    stream = torch.tensor([4, 4, 4, 1, 1, 9, 9, 2])
    sl = frequent_tokens(stream, 2)
    assert sl.ids.tolist() == [1, 4] and coverage(sl, stream) == 5 / 8
    assert frequent_tokens(stream, 3).ids.tolist() == [1, 4, 9]          # 9 and 2: 9 is more frequent


# ---- adapters: training, determinism, checkpoints ----

@pytest.fixture(scope="module")
def tiny_cache():
    model = tiny_random("llama", n_layers=4, seed=0)
    w = torch.randint(0, model.config.vocab_size, (40, 33), generator=torch.Generator().manual_seed(0))
    return model, cache_hidden(model, w[:32], [1, 2], final=True), cache_hidden(model, w[32:], [1, 2])


@pytest.mark.parametrize("loss", ["top1", "kl"])
def test_training_raises_held_out_agreement(tiny_cache, loss):
    model, cache, held = tiny_cache
    short = frequent_tokens(cache["top1"], 20, model.config.vocab_size)
    for shortlist in (None, short):
        adapter, curve = train_adapter(model, cache, 1, 3, loss, shortlist, epochs=6, lr=3e-3,
                                       eval_cache=held, eval_every=256)
        assert curve[0]["tokens"] == 0 and curve[-1]["tokens"] == 6 * cache["top1"].numel()
        assert [p["tokens"] for p in curve] == sorted(p["tokens"] for p in curve)
        assert curve[-1]["agreement"] > curve[0]["agreement"] + 0.1, curve
        assert curve[-1]["agreement"] == agreement(model, adapter, held[1], held["top1"], shortlist)
    assert all(p.requires_grad for p in model.parameters())             # the model's flags are restored


def test_training_is_fixed_by_the_seed_and_leaves_the_model_alone(tiny_cache):
    model, cache, _ = tiny_cache
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a, _ = train_adapter(model, cache, 2, epochs=2, seed=5)
    b, _ = train_adapter(model, cache, 2, epochs=2, seed=5)
    c, _ = train_adapter(model, cache, 2, epochs=2, seed=6)
    same = lambda x, y: all(torch.equal(u, v) for u, v in zip(x.state_dict().values(),
                                                             y.state_dict().values()))
    assert same(a, b) and not same(a, c)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_budget_stops_training(tiny_cache):
    model, cache, _ = tiny_cache
    _, curve = train_adapter(model, cache, 1, epochs=1000, budget_s=0.5)
    assert curve[-1]["train_seconds"] < 5 and curve[-1]["tokens"] < 1000 * cache["top1"].numel()


@pytest.mark.parametrize("maker", [eelab_model, hf_model])
def test_checkpoint_round_trip(tmp_path, maker):
    model, rng = maker(2)
    adapter = perturbed_adapter(model, rng)
    path = save_adapter(tmp_path / "a.safetensors", adapter, model, note="x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.safetensors"]    # no temporary left
    loaded, meta = load_adapter(path, model)
    assert meta["note"] == "x" and json.loads((tmp_path / "a.json").read_text())["after"] == adapter.after
    assert (loaded.after, loaded.init_from) == (adapter.after, adapter.init_from)
    for (k, u), v in zip(adapter.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(u, v), k
    prompt = torch.randint(0, model.config.vocab_size, (1, 5))
    a = self_speculative(model, prompt, 16, draft_source=AdapterDraft(adapter))
    b = self_speculative(model, prompt, 16, draft_source=AdapterDraft(loaded))
    assert a.passes == b.passes
    other = tiny_random("llama", n_layers=model.n_layers + 1, seed=0)
    with pytest.raises(ConfigError, match="adapter"): load_adapter(path, other)


def test_adapter_logits_match_the_running_draft(tiny_cache):
    # the trained (teacher-forced) draft is the one AdapterDraft runs: same top-1 at every pass start
    model, _, _ = tiny_cache
    adapter = perturbed_adapter(model, random.Random(0))
    res = self_speculative(model, torch.randint(0, model.config.vocab_size, (1, 6)), 20, draft_len=2,
                           draft_source=AdapterDraft(adapter))
    text = res.tokens[:, :-1]
    h = model.forward_layers(model.embed(text), 0, adapter.after, torch.arange(text.shape[1]))
    top = adapter_logits(model, adapter, h).argmax(-1)[0]
    firsts = [(v.drafted[0], int(top[v.position])) for v in res.passes if v.drafted]
    assert firsts and all(a == b for a, b in firsts)


def test_command(tmp_path):
    runs = main(["--model", "tiny-llama", "--after", "1", "2", "--tokens", "1024", "--eval-tokens", "256",
                 "--seq-len", "32", "--shortlist", "12", "--eval-every", "512", "--out", str(tmp_path)])
    assert set(runs) == {1, 2}
    model = tiny_random("llama", n_layers=4, seed=0)
    for after, run in runs.items():
        adapter, meta = load_adapter(run["path"], model)
        assert adapter.after == after and meta["shortlist"] == 12 and meta["curve"] == run["curve"]
    assert len(json.loads((tmp_path / "shortlist.json").read_text())) == 12
    assert text_windows(model.tokenizer, "test", 256, 32).shape == (8, 32)
    # what the command saved drafts losslessly, in self_speculative and in the explorer's self-spec mode
    from eelab.adapter import saved_draft
    from eelab.explorer import Explorer
    draft, x = saved_draft(model, tmp_path, after=2), torch.tensor([model.tokenizer.encode("ROMEO:")])
    assert draft.adapter.after == 2 and len(draft.shortlist) == 12
    assert saved_draft(model, tmp_path, after=1, shortlist=False).shortlist is None
    ex = Explorer(model, model.tokenizer, prompt="ROMEO:", n_new=10, temperature=0.0, mode="self-spec",
                  draft_len=3, spec_options=dict(draft_source=draft))
    assert torch.equal(ex.result.tokens, cached(model, x, 10).tokens) and ex.result.drafted > 0
    with pytest.raises(ConfigError, match="after=3"): saved_draft(model, tmp_path, after=3)
    # a model loaded with no early exit at all (only its top) drafts with the adapter or a skip set: the
    # sources need no exit head of the model's own (broke: self_speculative resolved the shallowest exit)
    top_only = tiny_random("llama", n_layers=4, seed=0, exit_layers=(4,))
    for source in (saved_draft(top_only, tmp_path, after=2), SkipDraft([0, 1, 3])):
        got = self_speculative(top_only, x, 10, 3, draft_source=source)
        assert torch.equal(got.tokens, cached(top_only, x, 10).tokens), type(source).__name__
    ex = Explorer(top_only, top_only.tokenizer, prompt="ROMEO:", n_new=6, temperature=0.0, mode="self-spec",
                  draft_len=3, spec_options=dict(draft_source=saved_draft(top_only, tmp_path, after=2)))
    assert torch.equal(ex.result.tokens, cached(top_only, x, 6).tokens)
    with pytest.raises(ConfigError, match="exit_layer"): self_speculative(top_only, x, 4, 3)


# ---- errors by name ----

@pytest.mark.parametrize("make, field", [
    (lambda m: SkipDraft([]), "keep"), (lambda m: SkipDraft([0, 0]), "keep"),
    (lambda m: SkipDraft("01"), "keep"), (lambda m: ShallowDraft(stop_below=1.5), "stop_below"),
    (lambda m: ShallowDraft(stop_below=True), "stop_below"),
    (lambda m: ShallowDraft(shortlist=[1, 2]), "shortlist"), (lambda m: Shortlist([]), "shortlist"),
    (lambda m: Shortlist([0.5]), "shortlist"), (lambda m: ExitAdapter.from_layer(m, 0, 0), "after"),
    (lambda m: ExitAdapter.from_layer(m, 4, 0), "after"),
    (lambda m: ExitAdapter.from_layer(m, 1, 9), "init_from"),
    (lambda m: frequent_tokens(torch.tensor([1]), 0), "k"),
    (lambda m: search_skip(m, torch.tensor([[1, 2]]), 0), "n_keep"),
])
def test_bad_source_arguments_are_named(make, field):
    model = EarlyExitLM(ModelConfig(vocab_size=10, dim=8, num_heads=2, n_layers=4, exit_layers=(2, 4)))
    with pytest.raises(ConfigError, match=f"{field}="): make(model)


@pytest.mark.parametrize("kwargs, field", [
    (dict(draft_source=SkipDraft([5])), "keep"), (dict(draft_source=ShallowDraft(3)), "exit_layer"),
    (dict(draft_source=ShallowDraft(shortlist=Shortlist([3, 10]))), "shortlist"),
    (dict(draft_source=SkipDraft([0]), reuse=False), "reuse"),
    (dict(draft_source=SkipDraft([0]), exit_layer=2), "exit_layer"),
    (dict(draft_source=SkipDraft([0]), draft_threshold=0.5), "draft_threshold"),
])
def test_bad_self_speculative_arguments_are_named(kwargs, field):
    torch.manual_seed(0)
    model = EarlyExitLM(ModelConfig(vocab_size=10, dim=8, num_heads=2, n_layers=4, exit_layers=(2, 4)))
    with pytest.raises(ConfigError, match=f"{field}="):
        self_speculative(model, torch.tensor([[1, 2]]), 4, **kwargs)


@pytest.mark.parametrize("kwargs, field", [(dict(loss="mse"), "loss"), (dict(epochs=0), "epochs"),
                                           (dict(batch_size=1.5), "batch_size"), (dict(lr=0), "lr"),
                                           (dict(budget_s=-1), "budget_s"), (dict(after=3), "after")])
def test_bad_training_arguments_are_named(tiny_cache, kwargs, field):
    model, cache, _ = tiny_cache
    with pytest.raises(ConfigError, match=f"{field}="): train_adapter(model, cache, **({"after": 1} | kwargs))
