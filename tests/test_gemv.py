"""Split GEMV (issue 18 §1): `split_linear` equals F.linear up to rounding, takes over only few-row fp32 CPU
products outside autograd, keeps every parameter, and greedy self-speculation under it still returns cached
decoding's tokens, for eelab and Hugging Face models and every draft source."""
import random

import pytest, torch
import torch.nn as nn
import torch.nn.functional as F
from eelab.gemv import MAX_ROWS, SplitLinear, blocks_of, split_linear, split_projections, uses_split
from eelab.generate import cached
from eelab.speculate import self_speculative
from _random_models import random_model

torch.set_num_threads(1)


@pytest.mark.parametrize("seed", range(30))
def test_split_linear_equals_linear(seed):
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    M, i, o = rng.randint(1, 2 * MAX_ROWS), rng.randint(1, 200), rng.choice([1, 3, 6, 8, 50, 576, 1000])
    shape = rng.choice([(M, i), (1, M, i), (2, (M + 1) // 2, i), (i,)])
    x, w = torch.randn(shape, generator=g), torch.randn(o, i, generator=g)
    bias = torch.randn(o, generator=g) if rng.random() < 0.5 else None
    want, got = F.linear(x, w, bias), split_linear(x, w, bias)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * i ** 0.5 * 4), (shape, o)


def test_blocks_divide_the_rows():
    assert [blocks_of(n) for n in (4, 8, 6, 10, 9, 1)] == [4, 4, 2, 2, 1, 1]


def test_other_products_take_linear_bit_for_bit():
    layer = nn.Linear(24, 40)
    split_projections(layer)
    assert type(layer) is SplitLinear
    with torch.no_grad():
        for x in (torch.randn(MAX_ROWS + 1, 24), torch.randn(1, 1, 24).bfloat16()):
            w, b = layer.weight.to(x.dtype), layer.bias.to(x.dtype)
            assert not uses_split(x, w)
            assert torch.equal(layer.to(x.dtype)(x), F.linear(x, w, b))
            layer.float()
    x = torch.randn(3, 24)
    assert uses_split(x, layer.weight.detach()) and not uses_split(x, layer.weight)   # autograd: F.linear
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))


def gradients_unchanged(switch, T: int = 9) -> bool:
    "Whether a training step with `switch` on gets F.linear's gradients exactly (autograd keeps F.linear)."
    model, _ = random_model(3)
    model.train()
    tokens = torch.randint(0, model.config.vocab_size, (2, T))
    grads = []
    for on in (False, True):
        switch(model, on)
        model.zero_grad()
        out = model(tokens)
        loss = sum(F.cross_entropy(lg[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()) for lg in out.values())
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    switch(model, False)
    return all(torch.equal(a, b) for a, b in zip(*grads))


def test_training_gradients_unchanged():
    "A training step under the switch gets F.linear's gradients exactly: autograd never takes the split path."
    assert gradients_unchanged(split_projections)


@pytest.mark.parametrize("seed", range(6))
def test_switch_keeps_parameters_and_logits(seed):
    model, _ = random_model(seed)
    state = {k: (v.data_ptr(), v.clone()) for k, v in model.state_dict().items()}
    tokens = torch.randint(0, model.config.vocab_size, (1, 12))
    with torch.no_grad(): plain = model(tokens)
    n = split_projections(model)
    assert n == sum(isinstance(m, nn.Linear) for m in model.modules()) > 0
    assert all(type(m) is SplitLinear for m in model.modules() if isinstance(m, nn.Linear))
    with torch.no_grad(): split = model(tokens)
    for k, v in model.state_dict().items():
        assert v.data_ptr() == state[k][0] and torch.equal(v, state[k][1])
    for e in plain:
        assert torch.allclose(plain[e], split[e], atol=1e-5), e
    assert split_projections(model, on=False) == n
    assert not any(type(m) is SplitLinear for m in model.modules())


def hf_model(seed):
    pytest.importorskip("transformers", reason="the HF half needs the extra: pip install eelab[hf]")
    from eelab.hf import tiny_random
    rng = random.Random(seed)
    family = "gpt2" if seed % 3 == 2 else "llama"
    return tiny_random(family, n_layers=rng.randint(3, 5), seed=seed).eval(), rng


def test_hf_model_switches_with_its_tied_head():
    model, _ = hf_model(0)
    hf = model.hf
    tied = hf.lm_head.weight is hf.model.embed_tokens.weight
    n = split_projections(model)
    assert n == sum(isinstance(m, nn.Linear) for m in hf.modules()) and type(hf.lm_head) is SplitLinear
    assert (hf.lm_head.weight is hf.model.embed_tokens.weight) == tied
    x = torch.randint(0, hf.config.vocab_size, (1, 7))
    with torch.no_grad(): ours = model.exit_logits(model.forward_layers(model.embed(x), 0, model.n_layers,
                                                                        torch.arange(7)), model.n_layers)
    split_projections(model, on=False)
    with torch.no_grad(): theirs = hf(x).logits
    assert torch.allclose(ours, theirs, atol=1e-4)


MODELS = [(random_model, s) for s in range(6)] + [(hf_model, s) for s in range(4)]


def check_lossless_under(switch, maker, seed):
    "Greedy self-speculation with `switch` on returns cached decoding's tokens, bare and with random sources."
    from test_drafts import random_source
    model, rng = maker(seed)
    switch(model)
    try:
        for k in range(4):
            prompt = torch.randint(0, model.config.vocab_size, (1, rng.randint(1, 10)))
            n_new = rng.randint(1, 20)
            source = random_source(model, rng) if k else None
            res = self_speculative(model, prompt, n_new, draft_len=rng.randint(1, 6), draft_source=source)
            assert torch.equal(res.tokens, cached(model, prompt, n_new).tokens), type(source).__name__
    finally:
        switch(model, on=False)


@pytest.mark.parametrize("maker,seed", MODELS)
def test_greedy_self_speculation_equals_cached_under_the_switch(maker, seed):
    check_lossless_under(split_projections, maker, seed)
