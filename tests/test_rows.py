"""The few-row kernel (issue 18 §1, `02d_rows`): `rows_linear` equals F.linear up to rounding (fp32) or
one bf16 rounding step of the fp32 product of the same bf16 numbers (bf16), is batch- and thread-invariant
bit for bit, takes over only 1..8-row CPU products of one kernel dtype outside autograd (a compiled single
row stays Inductor's), keeps every parameter, keys its build by what it depends on, and greedy
self-speculation under it still returns cached decoding's tokens, for eelab and Hugging Face models, in
fp32 and bf16, and every draft source."""
import random

import pytest, torch
import torch.nn as nn
import torch.nn.functional as F
import eelab.rows as rows
from eelab.gemv import SplitLinear, split_projections
from eelab.rows import MAX_KERNEL_ROWS, RowsLinear, kernel_available, row_projections, rows_linear, uses_rows
from _random_models import random_model
from test_gemv import MODELS, check_lossless_under, gradients_unchanged

torch.set_num_threads(1)
pytestmark = pytest.mark.skipif(not kernel_available(), reason="the few-row kernel needs a C++ compiler")


@pytest.mark.parametrize("seed", range(30))
def test_rows_linear_equals_linear_and_is_batch_invariant(seed):
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    M, i, o = rng.randint(1, MAX_KERNEL_ROWS), rng.randint(1, 200), rng.choice([1, 3, 8, 50, 576, 1000])
    shape = rng.choice([(M, i), (1, M, i), (i,)] + ([(2, M // 2, i)] if M % 2 == 0 else []))
    x, w = torch.randn(shape, generator=g), torch.randn(o, i, generator=g)
    bias = torch.randn(o, generator=g) if rng.random() < 0.5 else None
    want, got = F.linear(x, w, bias), rows_linear(x, w, bias)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * i ** 0.5 * 4), (shape, o)
    flat = x.reshape(-1, i)
    for r in range(flat.shape[0]):                      # each row alone: the same bits as within the batch
        assert torch.equal(rows_linear(flat[r:r + 1], w, bias), got.reshape(-1, o)[r:r + 1]), (shape, r)


@pytest.mark.parametrize("seed", range(12))
def test_bf16_is_one_rounding_step_from_the_fp32_product_and_batch_invariant(seed):
    "bf16 widens exactly, sums in fp32 and rounds once: within half a bf16 step (and fp32 sums) of it."
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    M, i, o = rng.randint(1, MAX_KERNEL_ROWS), rng.randint(1, 200), rng.choice([1, 3, 8, 50, 576])
    x = torch.randn(rng.choice([(M, i), (1, M, i)]), generator=g).bfloat16()
    w = torch.randn(o, i, generator=g).bfloat16()
    got, exact = rows_linear(x, w), F.linear(x.float(), w.float())
    assert got.dtype == torch.bfloat16 and got.shape == exact.shape
    step = exact.abs().clamp_min(1e-30) * 2 ** -8                      # half a bf16 step, and fp32 sums
    assert ((got.float() - exact).abs() <= step + 1e-5 * i).all(), (M, i, o)
    flat = x.reshape(-1, i)
    for r in range(flat.shape[0]):
        assert torch.equal(rows_linear(flat[r:r + 1], w), got.reshape(-1, o)[r:r + 1]), (M, r)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_threads_do_not_change_the_bits(dtype):
    x, w = torch.randn(4, 300).to(dtype), torch.randn(700, 300).to(dtype)
    before = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            torch.set_num_threads(t)
            outs.append(rows_linear(x, w))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(*outs)


def test_bad_inputs_name_what_they_got():
    w = torch.randn(16, 8)
    cases = ((torch.randn(MAX_KERNEL_ROWS + 1, 8), "1..8 rows"), (torch.randn(2, 7), "in_features, 8"),
             (torch.randn(2, 8).double(), "both float32 or both bfloat16"))
    for x, words in cases:
        with pytest.raises(RuntimeError, match=words):
            torch.ops.eelab.few_rows(x, w.to(x.dtype))
    with pytest.raises(RuntimeError, match="got BFloat16 and Float"):
        torch.ops.eelab.few_rows(torch.randn(2, 8).bfloat16(), w)


def test_other_products_go_where_they_went():
    layer = nn.Linear(24, 40)
    row_projections(layer)
    assert type(layer) is RowsLinear
    with torch.no_grad():
        for x in (torch.randn(MAX_KERNEL_ROWS + 1, 24), torch.randn(40, 24)):
            assert not uses_rows(x, layer.weight)
        big = torch.randn(40, 24)
        assert torch.equal(layer(big), F.linear(big, layer.weight, layer.bias))
        layer.bfloat16()
        for T in (1, MAX_KERNEL_ROWS):                                  # bf16 few rows: the kernel
            xb = torch.randn(1, T, 24).bfloat16()
            assert uses_rows(xb, layer.weight)
            assert torch.equal(layer(xb), rows_linear(xb, layer.weight, layer.bias))
        xb = torch.randn(1, MAX_KERNEL_ROWS + 1, 24).bfloat16()         # more: F.linear (split is fp32 only)
        assert torch.equal(layer(xb), F.linear(xb, layer.weight, layer.bias))
        assert not uses_rows(xb[:, :2], layer.weight.half())            # other or mixed dtypes: no
        assert not uses_rows(xb[:, :2].float(), layer.weight)
        layer.float()
    x = torch.randn(3, 24)
    assert not uses_rows(x, layer.weight)                               # autograd: F.linear
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    row_projections(layer, on=False)
    assert type(layer) is nn.Linear


def test_training_gradients_unchanged():
    "A training step under the switch gets F.linear's gradients exactly: autograd never takes the kernel."
    assert gradients_unchanged(row_projections, T=5)


@pytest.mark.parametrize("seed", range(4))
def test_switch_keeps_parameters_and_logits_from_split_and_back(seed):
    model, _ = random_model(seed)
    state = {k: (v.data_ptr(), v.clone()) for k, v in model.state_dict().items()}
    tokens = torch.randint(0, model.config.vocab_size, (1, 6))
    with torch.no_grad(): plain = model(tokens)
    split_projections(model)                                           # from split, as the benchmark does
    n = row_projections(model)
    assert n == sum(isinstance(m, nn.Linear) for m in model.modules()) > 0
    assert all(type(m) is RowsLinear for m in model.modules() if isinstance(m, nn.Linear))
    with torch.no_grad(): switched = model(tokens)
    for k, v in model.state_dict().items():
        assert v.data_ptr() == state[k][0] and torch.equal(v, state[k][1])
    for e in plain:
        assert torch.allclose(plain[e], switched[e], atol=1e-5), e
    assert row_projections(model, on=False) == n
    assert not any(type(m) in (RowsLinear, SplitLinear) for m in model.modules())
    row_projections(model)                                             # and split_projections clears rows too
    assert split_projections(model) == n and all(type(m) is SplitLinear for m in model.modules()
                                                 if isinstance(m, nn.Linear))
    assert split_projections(model, on=False) == n and not any(type(m) is RowsLinear for m in model.modules())


def test_a_subclass_with_its_own_forward_is_left_alone():
    class Scaled(nn.Linear):
        def forward(self, x): return 2 * super().forward(x)
    model = nn.Sequential(nn.Linear(4, 4), Scaled(4, 4))
    assert row_projections(model) == 1 and type(model[1]) is Scaled
    row_projections(model, on=False)
    class ScaledRows(RowsLinear):                  # inherits RowsLinear, not its mark: a forward of its own
        def forward(self, x): return 2 * super().forward(x)
    assert row_projections(nn.Sequential(ScaledRows(4, 4))) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_fp32_one_row_keeps_inductors_gemv_and_more_rows_call_the_kernel(dtype):
    graphs = []
    def recording(gm, example_inputs):
        graphs.append({str(node.target) for node in gm.graph.nodes if node.op == "call_function"})
        return gm
    layer = RowsLinear(16, 24).to(dtype)
    compiled = torch.compile(layer, backend=recording, dynamic=False)
    with torch.no_grad():
        for T in (1, 3, 9):
            x = torch.randn(1, T, 16).to(dtype)
            if dtype == torch.float32 and T == 1:                    # Inductor's GEMV against the kernel
                assert torch.allclose(compiled(x), layer(x), atol=1e-5)
            else:                                                    # the same product compiled or not
                assert torch.equal(compiled(x), layer(x))
    one_row = dtype == torch.bfloat16                      # Inductor's own bf16 GEMV is slow: the kernel
    assert [any("few_rows" in t for t in g) for g in graphs] == [one_row, True, False]


def test_the_build_is_keyed_by_what_it_depends_on(monkeypatch, tmp_path):
    compiler = rows.find_compiler()
    a = rows.kernel_path(compiler, tmp_path)
    assert rows.kernel_path(compiler, tmp_path) == a and a.parent == tmp_path
    monkeypatch.setattr(torch, "__version__", "0.0.0-other")
    assert rows.kernel_path(compiler, tmp_path) != a
    monkeypatch.undo()
    monkeypatch.setattr(rows, "ROWS_SOURCE", rows.ROWS_SOURCE + "\n// changed\n")
    assert rows.kernel_path(compiler, tmp_path) != a


def test_no_compiler_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(rows, "find_compiler", lambda: None)
    with pytest.raises(RuntimeError, match="needs a C\\+\\+ compiler on PATH"):
        rows.build_kernel(tmp_path)


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError, match="failed"):
        rows.build_kernel(tmp_path, compiler="false")                  # `false` exits 1, writes nothing
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("maker,seed", MODELS)
def test_greedy_self_speculation_equals_cached_under_the_switch(maker, seed):
    check_lossless_under(row_projections, maker, seed)


def in_bf16(maker):
    "The same random models, cast to bf16 (the kernel's other dtype)."
    def make(seed):
        model, rng = maker(seed)
        return model.to(torch.bfloat16), rng
    return make


@pytest.mark.parametrize("maker,seed", [(in_bf16(m), s) for m, s in MODELS[:3] + MODELS[6:8]])
def test_greedy_self_speculation_equals_cached_in_bf16_under_the_switch(maker, seed):
    "bf16 verification runs the same bf16 products as decoding, row for row: still token-identical."
    check_lossless_under(row_projections, maker, seed)


def stepped(model, ids, context, chunks):
    "The top layer's hidden states of ids[:, context:] fed after `context` cached tokens, in `chunks`."
    from eelab.cache import KVCache
    L = model.n_layers
    cache, outs, p = KVCache(L, ids.shape[1]), [], context
    with torch.no_grad():
        model.forward_layers(model.embed(ids[:, :context]), 0, L, torch.arange(context), cache)
        for c in chunks:
            h = model.embed(ids[:, p:p + c])
            outs.append(model.forward_layers(h, 0, L, torch.arange(p, p + c), cache))
            p += c
    return torch.cat(outs, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("maker,seed", MODELS[:3] + MODELS[6:9])
def test_a_verification_step_equals_decoding_bit_for_bit(maker, seed, dtype):
    "Breaks if a few-token cached step is not the one-token steps' arithmetic (masked attention, MKL rows)."
    model, rng = maker(seed)
    model.to(dtype)
    row_projections(model)
    try:
        T, context = rng.randint(2, MAX_KERNEL_ROWS), rng.randint(1, 12)
        ids = torch.randint(0, model.config.vocab_size, (1, context + T))
        assert torch.equal(stepped(model, ids, context, [T]), stepped(model, ids, context, [1] * T))
    finally:
        row_projections(model, on=False)
