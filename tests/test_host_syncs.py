"""No host syncs in the decode loops (issue 20): work is counted on the device and read once per generation.

On CUDA, reading a tensor's value on the host (`.item()`, `.tolist()`, `.cpu()`, `bool(t)`, `int(t)`,
`float(t)`, `.nonzero()`) waits for every kernel queued before it: one such read per layer per token is
one stall per layer per token. A CPU run cannot see a stall, so these tests count the reads themselves,
inside each generator's per-token loop, against a budget that names each read that remains and why:

- `no_cache`, `cached`, `fake_exit`: none. The sampled token stays on the device (it is the next step's
  input there); the per-token record (exits, confidences) is copied to the host once, after the loop.
- `true_exit`: one per token, the confidence: it decides whether the upper layers run.
- `batched_true_exit`: one per step, the rows' exit decisions (B bools): they decide which rows run the
  upper layers, fill, or take which head; everything else about the rows is derived on the host from them.
- `self_speculative`: per verify pass one (the accepted count and the verifier's token, read together: they
  decide what is emitted and where the caches are cropped), and one per drafted token (the draft's id,
  kept in a Python list by `propose`), plus one per draft decision when an estimator stops the draft.
- `batched_self_speculative`: one per round (whether every row has its tokens: it decides whether another
  round runs). Drafts, acceptance, emitted tokens and positions stay on the device.

Counted work is summed where it runs; a count that is a device value (attention pairs under a mask, a
batch's per-row meters) is read once, after the loop (`WorkMeter.read`, `RowMeters.rows`).
"""

import collections
import contextlib

import pytest
import torch

import eelab.generate
import eelab.speculate
from eelab.batch import BATCH_STRATEGIES, RowMeters, batched_self_speculative, batched_true_exit, left_pad
from eelab.generate import FILLS, cached, fake_exit, no_cache, true_exit
from eelab.hf import tiny_random
from eelab.model import EarlyExitLM, ModelConfig
from eelab.speculate import self_speculative

READS = ("item", "cpu", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero")


@contextlib.contextmanager
def counting_reads(window=None):
    "Count host reads of tensors; with `window` ([bool]), only while window[0] is True."
    counts = collections.Counter()
    original = {name: getattr(torch.Tensor, name) for name in READS}

    def counted(name, method):
        def read(self, *args, **kwargs):
            if window is None or window[0]:
                counts[name] += 1
            return method(self, *args, **kwargs)

        return read

    for name, method in original.items():
        setattr(torch.Tensor, name, counted(name, method))
    try:
        yield counts
    finally:
        for name, method in original.items():
            setattr(torch.Tensor, name, method)


def reads_inside(monkeypatch, module, name, run) -> int:
    "Host reads made inside calls of module.name (the generator's loop or one pass of it) during run()."
    window, inner = [False], getattr(module, name)

    def wrapped(*args, **kwargs):
        window[0] = True
        try:
            return inner(*args, **kwargs)
        finally:
            window[0] = False

    monkeypatch.setattr(module, name, wrapped)
    with counting_reads(window) as counts:
        result = run()
    monkeypatch.setattr(module, name, inner)
    return sum(counts.values()), result


def reads_per_token(monkeypatch, generate_fn, n1=3, n2=9) -> float:
    "Reads inside `decode_n_tokens` per extra token: what the loop reads per step (fixed reads cancel)."
    a, _ = reads_inside(monkeypatch, eelab.generate, "decode_n_tokens", lambda: generate_fn(n1))
    b, _ = reads_inside(monkeypatch, eelab.generate, "decode_n_tokens", lambda: generate_fn(n2))
    return (b - a) / (n2 - n1)


def tiny(seed=0):
    torch.manual_seed(seed)
    return EarlyExitLM(ModelConfig(vocab_size=50, dim=32, num_heads=4, n_layers=4, exit_layers=(2, 4))).eval()


@pytest.fixture(scope="module", params=["eelab", "llama"])
def model(request):
    return tiny() if request.param == "eelab" else tiny_random("llama", 4, (2, 4))


@pytest.fixture(scope="module")
def prompt(model):
    return torch.randint(0, model.config.vocab_size, (1, 6), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def threshold(model, prompt):
    "The median confidence of the model's own tokens: some exit, some do not."
    return float(fake_exit(model, prompt, 12, 0.0).confidences.median())


BUDGET_PER_TOKEN = dict(no_cache=0, cached=0, fake_exit=0, true_exit=1)


@pytest.mark.parametrize("method", list(BUDGET_PER_TOKEN))
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_generators_read_only_their_decisions(monkeypatch, model, prompt, threshold, method, temperature):
    def generate(n):
        g = torch.Generator().manual_seed(2)
        kw = dict(temperature=temperature, generator=g)
        if method in ("fake_exit", "true_exit"):
            return getattr(eelab.generate, method)(model, prompt, n, threshold, **kw)
        return getattr(eelab.generate, method)(model, prompt, n, **kw)

    assert reads_per_token(monkeypatch, generate) == BUDGET_PER_TOKEN[method]


@pytest.mark.parametrize("fill", list(FILLS))
def test_true_exit_fills_read_only_the_confidence(monkeypatch, model, prompt, threshold, fill):
    # recompute's flushes attend over several queued tokens under a mask: its pair count stays on the device
    res = true_exit(model, prompt, 9, threshold, fill=fill)
    assert 0 < res.shallow_count < res.n_new  # both paths ran
    assert reads_per_token(monkeypatch, lambda n: true_exit(model, prompt, n, threshold, fill=fill)) == 1


@pytest.mark.parametrize("strategy", BATCH_STRATEGIES)
@pytest.mark.parametrize("fill", ["skip", "propagate", "recompute", "oracle"])
def test_batched_true_exit_reads_one_decision_vector_per_step(monkeypatch, strategy, fill):
    if strategy == "latency" and fill != "oracle":
        pytest.skip("latency runs every layer: oracle only")
    m = tiny()
    prompts = [torch.randint(0, 50, (n,), generator=torch.Generator().manual_seed(n)) for n in (5, 1, 3, 7)]
    batch, mask = left_pad(prompts)
    run = lambda n: batched_true_exit(m, batch, n, 0.05, strategy, fill, mask)  # noqa: E731
    assert reads_per_token(monkeypatch, run) == 1


@pytest.mark.parametrize("reuse", [True, False])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_speculation_reads_per_pass(monkeypatch, model, prompt, reuse, temperature):
    g = torch.Generator().manual_seed(3)
    reads, res = reads_inside(
        monkeypatch,
        eelab.speculate,
        "speculate_once",
        lambda: self_speculative(model, prompt, 20, 3, temperature=temperature, generator=g, reuse=reuse),
    )
    assert len(res.passes) > 1
    assert reads == len(res.passes) + res.drafted  # one per pass (accept) + one per drafted id (propose)


def test_adaptive_speculation_reads_each_draft_decision(monkeypatch, model, prompt):
    reads, res = reads_inside(
        monkeypatch,
        eelab.speculate,
        "speculate_once",
        lambda: self_speculative(model, prompt, 20, 4, draft_threshold=0.1, estimator="softmax_max"),
    )
    decisions = res.drafted + sum(p.stopped_early for p in res.passes)  # each propose decided once
    assert any(p.stopped_early for p in res.passes) or res.drafted
    assert reads == len(res.passes) + res.drafted + decisions


def test_batched_speculation_reads_once_per_round():
    m = tiny()
    prompts = [torch.randint(0, 50, (n,), generator=torch.Generator().manual_seed(n)) for n in (5, 1, 3, 7)]
    batch, mask = left_pad(prompts)
    counts, rounds = [], []
    for n in (4, 12):
        with counting_reads() as c:
            res = batched_self_speculative(m, batch, n, 3, padding_mask=mask)
        counts.append(sum(c.values()))
        rounds.append(res.accepted.shape[0])
    assert rounds[1] > rounds[0]
    assert counts[1] - counts[0] == rounds[1] - rounds[0]


# The counter catches a new sync: each check above fails when one is added.


def test_a_read_added_to_a_step_is_caught(monkeypatch):
    m = tiny()
    x = torch.randint(0, 50, (1, 5))
    plain = reads_per_token(monkeypatch, lambda n: cached(m, x, n))
    exit_logits = type(m).exit_logits

    def logging_exit_logits(h, exit_layer, meter=None):  # a debug print of the logits' max: one read
        logits = exit_logits(m, h, exit_layer, meter)
        float(logits.max())
        return logits

    monkeypatch.setattr(m, "exit_logits", logging_exit_logits)
    assert reads_per_token(monkeypatch, lambda n: cached(m, x, n)) == plain + 1
    assert reads_per_token(monkeypatch, lambda n: no_cache(m, x, n)) == 1
    assert reads_per_token(monkeypatch, lambda n: fake_exit(m, x, n, 0.05)) == 2  # both heads


def test_the_old_row_meters_would_fail(monkeypatch):
    "RowMeters.add as it was (amounts and rows moved to the host): a read per layer per step, caught."

    def add_on_host(self, name, rows, amount):
        if isinstance(amount, torch.Tensor):
            amount = amount.cpu()
        f = self.FIELDS.index(name)
        if rows is None:
            self.counts[f] += amount
        else:
            self.counts[f, rows.cpu()] += amount

    m = tiny()
    batch, mask = left_pad([torch.arange(3), torch.arange(5)])
    monkeypatch.setattr(RowMeters, "add", add_on_host)
    run = lambda n: batched_true_exit(m, batch, n, 0.05, "gather", None, mask)  # noqa: E731
    per_step = reads_per_token(monkeypatch, run)
    assert per_step > 1 + m.n_layers
