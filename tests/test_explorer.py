"""The live exit explorer (issue #4), driven through its handlers without a browser."""
import pytest, torch
from eelab.explorer import Explorer, record, exit_colours, load_explorer_model, asset_path, SHALLOW, DEEP
from eelab.generate import generate
from eelab.model import EarlyExitLM, ModelConfig
from eelab.data import CharTokenizer

TOK = CharTokenizer(["<unk>", "<pad>"] + list("abcdefghijklmnopqrstuvwxyz :."))


def tiny(exits=(2, 4), n_layers=4, seed=0):
    torch.manual_seed(seed)
    return EarlyExitLM(ModelConfig(vocab_size=TOK.vocab_size, dim=32, num_heads=2, n_layers=n_layers, exit_layers=exits)).eval()


@pytest.mark.parametrize("method", ["cached", "fake_exit", "true_exit"])
def test_recorder_is_transparent_and_counts_per_token(method):
    model = tiny()
    kw = dict(threshold=0.05) if method != "cached" else {}
    trace, res = record(model, TOK, "romeo:", 30, method, 0.05, temperature=1.0, seed=3)
    plain = generate(model, torch.tensor([TOK.encode("romeo:")]), 30, method=method, temperature=1.0,
                     generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(res.tokens, plain.tokens) and torch.equal(res.exit_layers, plain.exit_layers)
    c = trace.counters()
    assert c["layer_forwards"] == res.decode.layer_forwards
    assert c["head_evals"] == res.decode.head_evals and c["confidence_evals"] == res.decode.confidence_evals
    assert c["reference_cost"] == pytest.approx(res.reference_cost)


def test_explorer_handlers():
    ex = Explorer(tiny(), TOK, prompt="juliet:", n_new=24, threshold=0.05)
    bars = ex.fig.data[0]
    assert bars.name == "confidence" and len(bars.x) == 24 and ex.step_slider.value == ex.play.value == 24
    assert list(bars.marker.color) == [SHALLOW if x < 4 else DEEP for x in ex.result.exit_layers[0].tolist()]
    first = list(bars.marker.color)
    ex.set_threshold(0.0); assert set(ex.fig.data[0].marker.color) == {SHALLOW}
    ex.set_threshold(1.0); assert set(ex.fig.data[0].marker.color) == {DEEP}
    assert ex.fig.layout.shapes[0].y0 == 1.0
    ex.set_threshold(0.05); assert list(ex.fig.data[0].marker.color) == first
    ex.play_to(5); assert len(ex.fig.data[0].x) == 5 and ex.play.value == 5
    ex.step(); ex.back(); ex.back(); assert ex.k == 4
    ex.set_mode("full"); assert ex.result.method == "cached" and ex.k == 24
    ex.set_n_new(10); assert len(ex.fig.data[0].x) == 10 and ex.play.max == 10
    live = ex.run_live(); assert len(ex.fig.data[0].x) == 10 and live.method == "cached"
    static = ex.static_figure()
    assert static.data[0].name != "confidence" and len(static.data[0].x) == 10


def test_more_exits_get_a_colour_each():
    cols = exit_colours((1, 2, 3))
    assert cols[1] == SHALLOW and cols[3] == DEEP and len(set(cols.values())) == 3
    ex = Explorer(tiny((1, 2, 3), 3), TOK, n_new=12, threshold=0.04)
    assert list(ex.fig.data[0].marker.color) == [cols[x] for x in ex.result.exit_layers[0].tolist()]


def test_shipped_checkpoint():
    path = asset_path("explorer-small.safetensors")
    assert path.exists() and path.stat().st_size <= 5_000_000
    model, tok, threshold = load_explorer_model()
    assert model.exit_layers == (2, 4) and model.config.vocab_size == tok.vocab_size and 0 < threshold < 1
