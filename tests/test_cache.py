"""Caches: crop(length) forgets exactly what was written after `length` tokens (issue 10)."""
import pytest
import torch
from eelab.cache import KVCache, LayerCache, SplitCache
from eelab.model import EarlyExitLM, ModelConfig


def kv(T, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 2, T, 4, generator=g), torch.randn(1, 2, T, 4, generator=g)


def test_layer_crop_then_append_equals_never_written():
    # breaks if crop does not move the length back, or append does not overwrite from the new length
    a, b = LayerCache(10), LayerCache(10)
    a.append(*kv(6, 1), torch.arange(6))
    a.crop(2)
    a.append(*kv(3, 2), torch.arange(2, 5))
    b.append(*[t[:, :, :2] for t in kv(6, 1)], torch.arange(2))
    b.append(*kv(3, 2), torch.arange(2, 5))
    ka, va, pa = a.append(*kv(1, 3), torch.tensor([5]))
    kb, vb, pb = b.append(*kv(1, 3), torch.tensor([5]))
    assert torch.equal(ka, kb) and torch.equal(va, vb) and torch.equal(pa, pb)


@pytest.mark.parametrize("bad", [-1, 7, 2.0, None])
def test_layer_crop_rejects_by_name(bad):
    lc = LayerCache(10)
    lc.append(*kv(6), torch.arange(6))
    with pytest.raises(ValueError, match="length="):
        lc.crop(bad)


def test_split_cache_crop_by_position():
    # upper layers skipped position 5: crop(6) must leave them at 5 entries, not 6 (a count-based crop would)
    c = SplitCache(4, 2, 16)
    for layer in c.layers: layer.append(*kv(5), torch.arange(5))
    for layer in c.lower: layer.append(*kv(2), torch.tensor([5, 6]))
    for layer in c.upper: layer.append(*kv(1), torch.tensor([6]))
    assert c.lengths == [7, 7, 6, 6]
    assert c.crop(6).lengths == [6, 6, 5, 5] and c.upper_positions == [0, 1, 2, 3, 4]
    assert c.crop(100).lengths == [6, 6, 5, 5]
    with pytest.raises(ValueError, match="length=-1"): c.crop(-1)


def test_model_cache_crop_then_continue_matches_fresh():
    # cropped back and continued with other tokens: the K/V of a run that never saw the dropped ones
    torch.manual_seed(0)
    mc = ModelConfig(vocab_size=11, dim=16, num_heads=2, n_layers=3, exit_layers=(1, 3))
    model = EarlyExitLM(mc).eval()
    x = torch.randint(0, 11, (1, 9))
    y = x.clone()
    y[0, 5:] = (x[0, 5:] + 1) % 11
    pos = torch.arange(9)
    with torch.no_grad():
        c1 = KVCache(3, 9)
        model.forward_layers(model.embed(x), 0, 3, pos, c1)
        c1.crop(5)
        model.forward_layers(model.embed(y[:, 5:]), 0, 3, pos[5:], c1)
        c2 = KVCache(3, 9)
        model.forward_layers(model.embed(y), 0, 3, pos, c2)
    for a, b in zip(c1.layers, c2.layers):
        assert a.length == b.length == 9
        assert torch.allclose(a.k[:, :, :9], b.k[:, :, :9], atol=1e-5)
        assert torch.allclose(a.v[:, :, :9], b.v[:, :, :9], atol=1e-5)
