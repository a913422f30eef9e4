"""Batched true exit (eelab.batch): every row equals that row alone at batch 1, work counted per row."""
import pytest
import torch
from eelab.config import ConfigError
from eelab.model import ModelConfig, EarlyExitLM, WorkMeter
from eelab.generate import true_exit, cached, FILL_POLICIES
from eelab.batch import (batched_true_exit, batched_self_speculative, left_pad, check_padding,
                         BATCH_STRATEGIES, BatchResult)
from eelab.speculate import self_speculative

N_NEW, THRESHOLD = 7, 0.05          # at 0.05 the tiny random model exits about 3 tokens in 4, not all


def tiny(seed=0, norm="post", n_layers=4, exits=(2, 4)):
    torch.manual_seed(seed)
    mc = ModelConfig(vocab_size=50, dim=32, num_heads=4, n_layers=n_layers, exit_layers=exits, norm=norm)
    return EarlyExitLM(mc).eval()


@pytest.fixture(scope="module")
def model(): return tiny()


@pytest.fixture(scope="module")
def ragged():
    "Four prompts of lengths 5, 1, 3, 7: left padded, one row has no prompt context at all."
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 50, (n,), generator=g) for n in (5, 1, 3, 7)]
    return prompts, *left_pad(prompts)


CASES = [(s, f) for s in ("all", "gather") for f in FILL_POLICIES] + [("latency", "oracle")]


@pytest.mark.parametrize("strategy,fill", CASES)
def test_each_row_equals_batch_one(model, ragged, strategy, fill):
    # breaks if a row attends to padding or to another row, if per-row positions are off by the padding,
    # if a fill writes the wrong rows/columns, or a strategy changes a row's own decision
    prompts, batch, mask = ragged
    res = batched_true_exit(model, batch, N_NEW, THRESHOLD, strategy, fill, mask, keep_logits=True)
    exited = 0
    for b, p in enumerate(prompts):
        alone = true_exit(model, p[None], N_NEW, THRESHOLD, fill=fill, keep_logits=True)
        assert torch.equal(res.row_tokens(b), alone.tokens), (b, strategy, fill)
        assert (res.logits[b] - alone.logits[0]).abs().max() < 1e-4
        assert torch.equal(res.token_exits[b], alone.token_exits[0])
        assert torch.equal(res.upper_cached[b], alone.upper_cached[0])
        exited += alone.shallow_count
        if strategy == "gather" and fill != "recompute":     # recompute: a shared window computes more
            assert res.row_work[b] == alone.decode, b        # the row's counted work is the row's alone
    assert 0 < exited < len(prompts) * N_NEW                 # both paths were exercised
    assert sum(res.row_work, WorkMeter()) == res.decode


def test_pre_norm_and_other_estimator(ragged):
    # breaks if the batched path ignores the block's norm placement or an estimator without logits
    m = tiny(seed=3, norm="pre", n_layers=3, exits=(1, 3))
    prompts, batch, mask = ragged
    res = batched_true_exit(m, batch, 5, 0.5, "gather", "propagate", mask, estimator="saturation")
    for b, p in enumerate(prompts):
        alone = true_exit(m, p[None], 5, 0.5, fill="propagate", estimator="saturation")
        assert torch.equal(res.row_tokens(b), alone.tokens)
        assert res.row_work[b] == alone.decode


def test_no_padding_and_never_exit_equal_cached(model):
    # breaks if the column-indexed cache or masks differ from plain batched cached decoding
    x = torch.randint(0, 50, (3, 4), generator=torch.Generator().manual_seed(2))
    full = cached(model, x, N_NEW, keep_logits=True)
    for strategy in BATCH_STRATEGIES:
        res = batched_true_exit(model, x, N_NEW, 2.0, strategy, keep_logits=True)
        assert torch.equal(res.tokens, full.tokens) and (res.logits - full.logits).abs().max() < 1e-4
        work, base = res.decode, full.decode             # the same layers and attention pairs, plus decisions
        assert (work.layer_forwards, work.attention_pairs) == (base.layer_forwards, base.attention_pairs)
        assert work.head_evals == 2 * base.head_evals and work.confidence_evals == x.shape[0] * N_NEW


def test_all_runs_the_upper_layers_for_everyone(model):
    # breaks if `all` lets confident rows skip while a neighbour is unconfident (that would be gather)
    x = torch.randint(0, 50, (4, 3), generator=torch.Generator().manual_seed(4))
    res = {s: batched_true_exit(model, x, N_NEW, THRESHOLD, s) for s in ("all", "gather")}
    assert torch.equal(res["all"].tokens, res["gather"].tokens)
    L, e, B = model.n_layers, model.config.shallow_exit, x.shape[0]
    deep = res["gather"].token_exits == L                                   # (B, n_new)
    steps_with_a_deep_row = int(deep.any(0).sum())
    assert 0 < steps_with_a_deep_row < N_NEW and (~deep).any(0)[deep.any(0)].any()   # mixed steps exist
    assert res["all"].decode.layer_forwards == B * N_NEW * e + B * steps_with_a_deep_row * (L - e)
    assert res["gather"].decode.layer_forwards == B * N_NEW * e + int(deep.sum()) * (L - e)


def test_gather_upper_work_is_the_deep_rows(model, ragged):
    # breaks if gather runs (or counts) upper layers for rows that exited
    _, batch, mask = ragged
    res = batched_true_exit(model, batch, N_NEW, THRESHOLD, "gather", "skip", mask)
    L, e = model.n_layers, model.config.shallow_exit
    for b, work in enumerate(res.row_work):
        n_deep = int((res.token_exits[b] == L).sum())
        assert work.layer_forwards == N_NEW * e + n_deep * (L - e)
    assert res.decode.head_evals == res.token_exits.numel() + res.deep_count   # shallow head: every token


def test_latency_saves_nothing_and_releases_exits_first(model, ragged):
    # breaks if latency skips upper layers, or if exiting rows are released after the upper pass
    _, batch, mask = ragged
    res = batched_true_exit(model, batch, N_NEW, THRESHOLD, "latency", None, mask)
    assert res.fill == "oracle" and res.decode.layer_forwards == batch.shape[0] * N_NEW * model.n_layers
    lat, shallow = res.token_latency, res.token_exits < model.n_layers
    assert lat.shape == res.token_exits.shape and (lat > 0).all()
    mixed = shallow.any(0) & (~shallow).any(0)                              # steps with both kinds of row
    assert mixed.any()
    for i in mixed.nonzero().squeeze(1).tolist():
        assert lat[shallow[:, i], i].max() < lat[~shallow[:, i], i].min()


def test_bad_input_named(model, ragged):
    _, batch, mask = ragged
    with pytest.raises(ConfigError, match="batch_strategy.*all, gather, latency"):
        batched_true_exit(model, batch, 2, 0.5, "calm", padding_mask=mask)
    with pytest.raises(ConfigError, match="padding_mask"):
        batched_true_exit(model, batch, 2, 0.5, padding_mask=mask[:, 1:])
    with pytest.raises(ConfigError, match="padding_mask"):
        batched_true_exit(model, batch, 2, 0.5, padding_mask=mask.long())
    with pytest.raises(ConfigError, match="left padding"):
        check_padding(batch, mask.flip(1))
    with pytest.raises(ConfigError, match="fill.*oracle"):
        batched_true_exit(model, batch, 2, 0.5, "latency", "skip", mask)
    with pytest.raises(ConfigError, match="fill"):
        batched_true_exit(model, batch, 2, 0.5, "gather", "copy", mask)
    with pytest.raises(ConfigError, match="batched_true_exit"):
        true_exit(model, batch, 2, 0.5)                       # true_exit's batch error names the batched path


def test_on_step_work_sums_to_decode(model, ragged):
    # breaks if a step's work is lost or counted twice when someone listens, or steps arrive out of order
    _, batch, mask = ragged
    steps = []
    res = batched_true_exit(model, batch, N_NEW, THRESHOLD, "gather", "recompute", mask, on_step=steps.append)
    assert [s.index for s in steps] == list(range(N_NEW))
    assert sum((s.work for s in steps), WorkMeter()) == res.decode
    assert torch.equal(torch.stack([s.token for s in steps], 1), res.new_tokens)
    assert torch.equal(torch.stack([s.exit for s in steps], 1), res.token_exits)


@pytest.mark.parametrize("draft_len", [1, 3, 5])
def test_batched_self_speculation_is_cached_decoding(model, ragged, draft_len):
    # breaks if a rejected draft's K/V stays visible (a hole not un-held), a row's position does not advance
    # by its own accepted count, or the verifier's token after the accepted drafts is not the one emitted
    prompts, batch, mask = ragged
    spec = batched_self_speculative(model, batch, 9, draft_len, padding_mask=mask)
    for b, p in enumerate(prompts):
        assert torch.equal(spec.row_tokens(b), cached(model, p[None], 9).tokens), (b, draft_len)
    rounds = spec.accepted                                                 # (rounds, B)
    assert rounds.shape[1] == len(prompts) and (rounds <= draft_len).all()
    assert len(set(rounds.flatten().tolist())) > 1                         # rows accept ragged lengths


def test_batched_self_speculation_trained_like_model_and_errors():
    # a pre-norm model whose shallow head agrees more often with the top (shared head, one layer apart)
    m = tiny(seed=5, norm="pre", n_layers=3, exits=(2, 3))
    x = torch.randint(0, 50, (5, 4), generator=torch.Generator().manual_seed(6))
    spec = batched_self_speculative(m, x, 12, 4)
    assert torch.equal(spec.tokens, cached(m, x, 12).tokens)
    with pytest.raises(ConfigError, match="draft_len"):
        batched_self_speculative(m, x, 2, 0)
    with pytest.raises(ConfigError, match="padding_mask"):
        batched_self_speculative(m, x, 2, 2, padding_mask=torch.ones(5, 3, dtype=torch.bool))


@pytest.mark.parametrize("draft_len", [1, 3])
def test_batched_self_speculation_rounds_are_each_rows_passes(model, ragged, draft_len):
    # breaks if a row's draft or verifier differs from self-speculation at batch 1 (speculate's verbs): each
    # row's accepted count in every round is that row's own accepted count in the same pass, alone
    prompts, batch, mask = ragged
    spec = batched_self_speculative(model, batch, 9, draft_len, padding_mask=mask)
    rounds = spec.accepted.shape[0]
    for b, p in enumerate(prompts):
        long_enough = (rounds + 1) * (draft_len + 1)                     # its drafts are never capped early
        alone = self_speculative(model, p[None], long_enough, draft_len)
        assert spec.accepted[:, b].tolist() == [v.accepted for v in alone.passes[:rounds]], b


def test_batched_self_speculation_result_and_work(model, ragged):
    # breaks if the result is not a GenerationResult (tables, plots take one), or work goes uncounted per row
    prompts, batch, mask = ragged
    d, n_new = 3, 9
    spec = batched_self_speculative(model, batch, n_new, d, padding_mask=mask)
    assert isinstance(spec, BatchResult) and spec.method == "self_speculative"
    assert spec.token_exits.shape == (len(prompts), n_new) and (spec.token_exits == model.n_layers).all()
    rounds, L, e = spec.accepted.shape[0], model.n_layers, model.config.shallow_exit
    for b, work in enumerate(spec.row_work):  # every row feeds d + 1 inputs per round through every layer
        assert work.layer_forwards == rounds * (d + 1) * L
        assert work.head_evals == rounds * (d + d + 1)  # d shallow heads, d + 1 deep ones
    assert sum(spec.row_work, WorkMeter()) == spec.decode
    assert spec.prefill.layer_forwards == mask[:, :-1].numel() * L  # padding columns run (masked)
    assert spec.token_latency.shape == (len(prompts), n_new) and (spec.token_latency > 0).all()
    assert spec.round_seconds.shape == (rounds,)
    assert spec.tokens_per_pass == pytest.approx(float((spec.accepted + 1).float().mean()))
    assert 0 < spec.counted_cost and e < L
