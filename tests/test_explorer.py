"""The live exit explorer (issues #4, #8 §3), driven through its handlers without a browser.

Each test names what breaks it; the real-browser layout check (one laptop screen) is tests/test_browser.py.
"""
import math

import pytest, torch
from eelab.config import ConfigError
from eelab.estimators import Saturation
from eelab.explorer import (Explorer, record, exit_colours, legend_html, load_explorer_model, asset_path,
                            SHALLOW, DEEP, SKIPPED, DISCARDED)
from eelab.generate import generate
from eelab.model import EarlyExitLM, ModelConfig
from eelab.data import CharTokenizer

TOK = CharTokenizer(["<unk>", "<pad>"] + list("abcdefghijklmnopqrstuvwxyz :."))


def tiny(exits=(2, 4), n_layers=4, seed=0):
    torch.manual_seed(seed)
    mc = ModelConfig(vocab_size=TOK.vocab_size, dim=32, num_heads=2, n_layers=n_layers, exit_layers=exits)
    return EarlyExitLM(mc).eval()


@pytest.mark.parametrize("method", ["cached", "fake_exit", "true_exit"])
def test_record_is_the_generators_own_steps(method):
    # breaks if the explorer re-derives exits/confidences/work instead of taking the generator's steps
    model = tiny()
    kw = dict(threshold=0.05) if method != "cached" else {}
    trace, res = record(model, TOK, "romeo:", 30, method, 0.05, temperature=1.0, seed=3)
    plain = generate(model, torch.tensor([TOK.encode("romeo:")]), 30, method=method, temperature=1.0,
                     generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(res.tokens, plain.tokens) and trace.exits == plain.token_exits[0].tolist()
    c = trace.counters()
    assert c["layer_forwards"] == res.decode.layer_forwards
    assert c["head_evals"] == res.decode.head_evals and c["confidence_evals"] == res.decode.confidence_evals
    # the counters use eelab.cost, exactly as the result does
    assert c["counted_cost"] == pytest.approx(res.counted_cost)
    assert c["reference_cost"] == pytest.approx(res.reference_cost)


def test_explorer_handlers():
    ex = Explorer(tiny(), TOK, prompt="juliet:", n_new=24, threshold=0.05)
    bars = ex.fig.data[0]
    assert bars.name == "confidence" and len(bars.x) == 24 and ex.step_slider.value == ex.play.value == 24
    assert list(bars.marker.color) == [SHALLOW if x < 4 else DEEP for x in ex.result.token_exits[0].tolist()]
    first = list(bars.marker.color)
    ex.set_threshold(0.0)
    assert set(ex.fig.data[0].marker.color) == {SHALLOW}
    ex.set_threshold(1.0)
    assert set(ex.fig.data[0].marker.color) == {DEEP} and ex.fig.layout.shapes[0].y0 == 1.0
    ex.set_threshold(0.05)
    assert list(ex.fig.data[0].marker.color) == first
    ex.play_to(5)
    assert len(ex.fig.data[0].x) == 5 and ex.play.value == 5
    ex.step()
    ex.back()
    ex.back()
    assert ex.k == 4
    ex.set_mode("full")
    assert ex.result.method == "cached" and ex.k == 24
    ex.set_n_new(10)
    assert len(ex.fig.data[0].x) == 10 and ex.play.max == 10
    live = ex.run_live()
    assert len(ex.fig.data[0].x) == 10 and live.method == "cached"
    static = ex.static_figure()
    assert static.data[0].name != "confidence" and len(static.data[0].x) == 10


BAD = [("n_new", -5), ("n_new", 2.5), ("n_new", 1000), ("threshold", float("nan")), ("threshold", -0.1),
       ("threshold", "0.5"), ("mode", "fast"), ("temperature", -1.0), ("seed", -1), ("prompt", 3)]


@pytest.mark.parametrize("name, bad", BAD)
def test_bad_arguments_name_the_field(name, bad):
    # breaks if a bad argument reaches a widget (TraitError) or the generator (raw TypeError)
    with pytest.raises(ConfigError, match=f"{name}="):
        Explorer(tiny(), TOK, **{"n_new": 4, name: bad})


BAD_SETS = [("set_n_new", -5), ("set_threshold", -0.5), ("set_threshold", float("nan")), ("set_mode", "fast"),
            ("set_prompt", None)]


@pytest.mark.parametrize("setter, bad", BAD_SETS)
def test_setters_name_the_field(setter, bad):
    # breaks if a setter lets a slider clamp the value silently (or raise a TraitError)
    ex = Explorer(tiny(), TOK, n_new=4, threshold=0.05)
    before = ex.result.tokens.clone()
    with pytest.raises(ConfigError, match=setter.removeprefix("set_") + "="):
        getattr(ex, setter)(bad)
    assert torch.equal(ex.result.tokens, before)


def test_a_threshold_above_one_never_exits_and_the_slider_keeps_it():
    # breaks if the slider clamps a "never exit" threshold (eelab.config's one rule allows any value >= 0)
    ex = Explorer(tiny(), TOK, n_new=4, threshold=0.05)
    ex.set_threshold(2.0)
    assert ex.threshold == 2.0 and ex.result.shallow_count == 0


def test_counters_show_the_current_regeneration():
    # breaks if "last regenerate + redraw" shows the previous regeneration's time (or none)
    ex = Explorer(tiny(), TOK, n_new=8, threshold=0.05)
    assert "last regenerate" not in ex.counters_html.value            # nothing regenerated yet
    for v in (0.0, 0.3):
        ex.set_threshold(v)
        shown = f"last regenerate + redraw</td><td><b>{ex.redraw_seconds * 1000:.0f} ms"
        assert shown in ex.counters_html.value


def test_live_generation_time_excludes_drawing_and_delays():
    # breaks if the live run's "generation time" includes the redraws and the sleeps between tokens
    ex = Explorer(tiny(), TOK, n_new=8, threshold=0.05)
    ex.run_live(delay=0.05)
    assert ex.trace.seconds < 8 * 0.05 and ex.trace.seconds <= ex.result.seconds
    assert f"{ex.trace.seconds * 1000:.0f} ms, 8 tokens (model only)" in ex.counters_html.value


def test_live_confidence_is_the_estimators_own():
    # breaks if the live bars recompute softmax max instead of the confidence the generator decided with
    ex = Explorer(tiny(), TOK, n_new=8, threshold=0.5, estimator=Saturation())
    partials = []
    show = ex.show
    ex.show = lambda k, trace=None: (partials.append(trace), show(k, trace))
    res = ex.run_live()
    live = [t for t in partials if t is not None]
    assert [t.n for t in live] == list(range(1, 9))
    assert live[-1].confidences == pytest.approx(res.confidences[0].tolist())
    assert res.estimator == "saturation"


def test_replay_shows_no_future_labels():
    # breaks if the x axis labels every token of the generation while replaying the first k
    ex = Explorer(tiny(), TOK, n_new=12, threshold=0.05)
    ex.play_to(3)
    assert list(ex.fig.layout.xaxis2.tickvals) == [0, 1, 2] and len(ex.fig.layout.xaxis2.ticktext) == 3
    ex.play_to(12)
    assert len(ex.fig.layout.xaxis2.ticktext) == 12


def test_full_mode_says_why_there_are_no_bars():
    # breaks if full mode shows an empty bar chart without a word
    ex = Explorer(tiny(), TOK, n_new=6, threshold=0.05, mode="full")
    note = ex.fig.layout.annotations[0]
    assert note.visible and "no exit decision" in note.text and not ex.fig.layout.shapes[0].visible
    ex.set_mode("true exit")
    assert not ex.fig.layout.annotations[0].visible and ex.fig.layout.shapes[0].visible


def test_legend_and_wrapping_text():
    # breaks if the depth strip's colours are unexplained, or the tokens cannot wrap (no break opportunity)
    ex = Explorer(tiny(), TOK, n_new=20, threshold=0.05)
    legend = ex.legend.value
    assert all(c in legend for c in (SHALLOW, DEEP, SKIPPED, DISCARDED))
    assert "skipped" in legend and "thrown away" in legend
    assert legend == legend_html(exit_colours((2, 4)), 4) and ex.widget.children[2] is ex.legend
    assert ex.text.value.count("<wbr>") == 19 and "overflow-wrap:anywhere" in ex.text.value


def test_counted_cost_beside_the_formula():
    # breaks if a saving is shown from the reference's formula alone: fake exit runs every layer
    ex = Explorer(tiny(), TOK, n_new=16, threshold=0.05, mode="fake exit")
    c = ex.trace.counters()
    assert c["shallow"] > 0 and c["reference_cost"] < 1 <= c["counted_cost"]
    html = ex.counters_html.value
    assert "cost: counted FLOPs" in html and "cost: reference's formula" in html
    assert "reference's formula" in ex.static_figure().layout.title.text


def test_more_exits_get_a_colour_each():
    cols = exit_colours((1, 2, 3))
    assert cols[1] == SHALLOW and cols[3] == DEEP and len(set(cols.values())) == 3
    ex = Explorer(tiny((1, 2, 3), 3), TOK, n_new=12, threshold=0.04)
    assert list(ex.fig.data[0].marker.color) == [cols[x] for x in ex.result.token_exits[0].tolist()]


def test_shipped_checkpoint():
    path = asset_path("explorer-small.safetensors")
    assert path.exists() and path.stat().st_size <= 5_000_000
    model, tok, threshold = load_explorer_model()
    assert model.exit_layers == (2, 4) and model.config.vocab_size == tok.vocab_size and 0 < threshold < 1
    assert not math.isnan(threshold)


def test_static_view_needs_no_javascript():
    # breaks if the static fallback depends on plotly.js (GitHub shows no JavaScript): it must be a plain SVG
    from eelab.explorer import trace_svg
    ex = Explorer(tiny(), TOK, n_new=10, threshold=0.05)
    svg = trace_svg(ex.trace)
    assert svg.startswith("<svg") and "<script" not in svg
    assert svg.count("<rect") == 1 + 10 + 10 * 4 and "stroke-dasharray" in svg     # bars, strip, threshold


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_self_spec_mode_draws_the_results_accept_pattern(temperature):
    # breaks if the colours, struck-out drafts, verify blocks or counters are re-derived instead of being the
    # result's own accept pattern (eelab.speculate), or if the greedy text is not the full model's
    from eelab.explorer import ACCEPTED, VERIFIED
    model = tiny()
    ex = Explorer(model, TOK, prompt="romeo:", n_new=30, mode="self-spec", temperature=temperature,
                  draft_len=3)
    res = ex.result
    assert res.method == "self_speculative" and res.draft_len == 3 and 0 < res.accepted < res.drafted
    pattern = res.from_draft[0].tolist()
    assert list(ex.fig.data[0].marker.color) == [ACCEPTED if d else VERIFIED for d in pattern]
    spans = ex.text.value.split("<wbr>")
    struck = [s for s in spans if "line-through" in s]
    assert len(struck) == res.drafted - res.accepted and len(spans) == 30 + len(struck)
    blocks = [s for s in ex.fig.layout.shapes if s.name.startswith("verify pass")]
    assert [round(b.x1 - b.x0) for b in blocks] == [v.accepted + 1 for v in res.passes]
    assert {(b.y0, b.y1) for b in blocks} == {(2.5, 4.5)}               # the upper layers 3-4
    c = ex.trace.spec_counters()
    assert (c["passes"], c["drafted"], c["accepted"]) == (len(res.passes), res.drafted, res.accepted)
    assert c["acceptance_rate"] == pytest.approx(res.acceptance_rate)
    assert c["tokens_per_pass"] == pytest.approx(res.tokens_per_pass)
    assert ex.trace.counters()["counted_cost"] == pytest.approx(res.counted_cost)
    assert f"{res.accepted} of {res.drafted} drafts kept" in ex.static_figure().layout.title.text
    html = ex.counters_html.value
    assert f"{res.acceptance_rate:.1%} ({res.accepted} of {res.drafted} drafts kept)" in html
    assert f"{res.tokens_per_pass:.2f} tokens per pass" in html
    full = generate(model, res.tokens[:, :res.prompt_len], 30, method="cached")
    if temperature == 0:
        assert torch.equal(res.tokens, full.tokens) and ex.trace.same_as_full
        assert "= the full model's greedy text (checked)" in html
    else:
        assert ex.trace.same_as_full is None and "sampled from the full model's distribution" in html


def test_self_spec_controls_and_replay():
    # breaks if the draft-length slider shows outside self-spec (or the threshold slider inside it), if a bad
    # draft length reaches the slider, or if replay counts passes that have not finished yet
    ex = Explorer(tiny(), TOK, n_new=20, threshold=0.05, mode="self-spec", temperature=0.0)
    assert (ex.draft_slider.layout.display, ex.threshold_slider.layout.display) == (None, "none")
    for bad in (0, 9, 2.0):
        with pytest.raises(ConfigError, match="draft_len="):
            ex.set_draft_len(bad)
    ex.set_draft_len(1)
    assert ex.result.draft_len == 1 and all(len(v.drafted) <= 1 for v in ex.result.passes)
    first_end = ex.result.passes[0].accepted + 1
    ex.play_to(first_end - 1)
    assert ex.trace.spec_counters(ex.k)["passes"] == 0               # pass 0 ends with its verifier's token
    ex.play_to(first_end)
    assert ex.trace.spec_counters(ex.k)["passes"] == 1
    assert [s.name for s in ex.fig.layout.shapes[1:]] == ["verify pass 0"]     # drawn as far as shown
    live = ex.run_live()
    assert torch.equal(live.tokens, ex.result.tokens) and ex.trace.same_as_full
    ex.set_mode("true exit")
    assert (ex.draft_slider.layout.display, ex.threshold_slider.layout.display) == ("none", None)
    assert not any(s.name.startswith("verify pass") for s in ex.fig.layout.shapes)


def test_batch_lanes_wanted_versus_ran():
    # breaks if a lane's colours are not its row's exits, if "ran the upper layers" is not what the rows
    # counted (eelab.batch's row_work), or if the counters do not show why `all` stops saving
    from eelab.explorer import LaneExplorer, lane_counters, LANE_CODES
    model = tiny()
    prompts = ["romeo:", "juliet: a", "king", "the queen: o"]
    lx = LaneExplorer(model, TOK, prompts=prompts, n_new=12, threshold=0.07, strategy="all")
    got = {}
    for strategy in ("all", "gather", "latency"):
        lx.set_strategy(strategy)
        lanes, res = lx.lanes, lx.result
        assert res.batch_strategy == strategy and lanes.exits == res.token_exits.tolist()
        for b, w in enumerate(res.row_work):          # the per-(row, step) rule == each row's counted work
            assert w.layer_forwards == 12 * 2 + sum(lanes.ran_upper[b]) * 2
        assert lx.text.value.count("<div style=\"white-space:nowrap") == 4
        z = [list(row) for row in lx.fig.data[0].z]
        assert all((z[b][t] == 2) == (x == 4) for b, row in enumerate(lanes.exits) for t, x in enumerate(row))
        got[strategy] = c = lane_counters(lanes, res)
        assert f"<b>{c['ran']:.1%} (" in lx.counters_html.value
    assert got["all"]["ran"] > got["all"]["wanted"] > 0      # confident rows dragged through the upper layers
    assert got["gather"]["ran"] == pytest.approx(got["gather"]["wanted"]) and got["latency"]["ran"] == 1.0
    assert got["gather"]["counted_cost"] < got["all"]["counted_cost"] <= got["latency"]["counted_cost"]
    assert LANE_CODES[1] == DISCARDED
    with pytest.raises(ConfigError, match="strategy="):
        lx.set_strategy("any")
    with pytest.raises(ConfigError, match="prompts="):
        LaneExplorer(model, TOK, prompts="romeo:")


def test_calibrated_preset_moves_the_slider_and_states_the_guarantee():
    # breaks if the preset's threshold is not Learn-then-Test's on the given windows (eelab.calibrate run
    # on its own), if it leaves the mode or the slider elsewhere, or if the guarantee stays after a move
    from eelab.calibrate import calibrate
    from eelab.explorer import sampled_windows
    model = tiny()
    windows = sampled_windows(model, n=60, length=8, seed=1)
    assert windows.shape == (60, 9)
    ex = Explorer(model, TOK, n_new=8, threshold=0.5, mode="full", calibration_windows=windows)
    for delta, epsilon in ((0.2, 0.1), (0.1, 0.05)):
        cal = ex.calibrate(delta, epsilon)
        own = calibrate(model, windows, "softmax_max", "skip", delta=delta, epsilon=epsilon)
        assert (cal.threshold, cal.risk, cal.n) == (own.threshold, own.risk, 60)
        assert ex.method == "true_exit" and ex.threshold == min(own.threshold, 1.0) == ex.result.threshold
        assert (ex.delta_pick.value, ex.epsilon_pick.value) == (delta, epsilon)
        words = (f"With probability ≥ {1 - epsilon:.0%}, at most {delta:.0%} of tokens differ from the "
                 "full model")
        assert own.threshold <= 1 and words in ex.legend.value          # an exit threshold was certified
        assert "eelab-guarantee" in ex.legend.value
    ex.set_threshold(0.0 if ex.threshold > 0 else 0.5)
    assert "eelab-guarantee" not in ex.legend.value
    with pytest.raises(ConfigError, match="delta="):
        ex.calibrate(1.5, 0.05)
    with pytest.raises(ConfigError, match="calibration_windows="):
        Explorer(model, TOK, n_new=4).calibrate()
    with pytest.raises(ConfigError, match="calibration_windows="):
        Explorer(model, TOK, n_new=4, calibration_windows=torch.rand(3, 5))
    assert Explorer(model, TOK, n_new=4).calibration_box.layout.display == "none"     # no windows, no preset


def test_explorer_loads_a_trained_run_and_names_the_command_when_missing(private_data_dir):
    # breaks if load_explorer_model accepts an unknown model name, if a missing scale model fails with
    # anything but the command that trains it, or if a trained run comes back with other weights/threshold
    from eelab.config import smoke_config
    from eelab.explorer import load_trained_model
    from eelab.train import train_two_phase
    with pytest.raises(ConfigError) as err:
        load_explorer_model(which="large")
    assert err.value.field == "which" and "'scale'" in str(err.value)
    with pytest.raises(FileNotFoundError, match="make scale"):
        load_explorer_model(which="scale")                      # a fresh data folder: nothing trained
    cfg = smoke_config(recipe="joint", phase2_layers=6, exit_every=2, phase1_max_epochs=1)
    run = train_two_phase(cfg, progress=False)
    model, tokenizer, threshold = load_trained_model(cfg)
    assert model.exit_layers == (2, 4, 6) and threshold == pytest.approx(run.threshold)
    assert tokenizer.vocab_size == run.corpus.tokenizer.vocab_size
    x = torch.randint(0, tokenizer.vocab_size, (1, 8))
    for e, logits in model(x).items():
        assert torch.equal(logits, run.model.eval()(x)[e])
