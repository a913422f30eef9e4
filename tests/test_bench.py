"""The benchmark harness (eelab.bench): the command line on the smoke config, and its rows' invariants."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("config", "policy", "estimator", "threshold", "measured_speedup", "measured_q1", "measured_q3",
          "ideal_speedup", "efficiency", "agreement", "shallow_ratio", "cached_s", "early_s", "cached_flops",
          "early_flops", "repeats", "breakdown_early", "breakdown_cached", "step_seconds")


@pytest.fixture(scope="module")
def smoke_cli(tmp_path_factory):
    "python -m eelab.bench --smoke, run once as a user would."
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "eelab.bench", "--smoke", "--thresholds", "0.3", "1.01", "--out", str(out),
           "--batch-sizes", "1", "3"]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    # issue 19: the smoke run generates within the smoke model's trained positions: no warning at all
    assert "Warning" not in p.stderr, p.stderr[-3000:]
    return out, p.stdout, json.loads((out / "bench.json").read_text())


def test_cli_writes_json_figure_and_report(smoke_cli):
    out, stdout, res = smoke_cli
    assert res["schema"] == "eelab.bench/3" and [c["name"] for c in res["configs"]] == ["smoke"]
    assert json.loads((out / "bench_figure.json").read_text())["data"]
    assert "policy/estimator" in stdout and "one decode step, by part" in stdout and "targets:" in stdout
    assert "self-speculation" in stdout and "ceiling" in stdout and (out / "spec_figure.json").exists()
    assert not list(out.glob(".*.tmp"))  # atomic write left no temp file
    # a long run says where it is: a line as each config starts and ends, both before the report
    starts, done = stdout.index("bench: smoke (1/1) starts"), stdout.index("bench: smoke done in ")
    assert starts < done < stdout.index("policy/estimator")
    # and a line as each row is done (the SmolLM2 run was silent for an hour)
    row = stdout.index("bench: smoke: true exit skip/softmax_max at 0.3: ")
    assert starts < row < stdout.index("bench: smoke: self-spec exit 2 draft 1 reuse: ") < done
    # every table is followed by its legend
    for legend in ("eff: measured / ideal", "tok/pass: tokens per verify pass", "p50/p90 ms: time per token",
                   "% roof: tok/s / roof tok/s", "noise: the IQR spans more than 1.5x"):
        assert legend in stdout, legend


def test_batch_table(smoke_cli):
    "--batch-sizes adds issue 14's table: the full model and every strategy per batch size."
    _, stdout, res = smoke_cli
    rows = res["configs"][0]["batch_rows"]
    assert "batch table" in stdout
    names = {"full", "all", "gather", "latency", "self_spec d=2"}
    for B in (1, 3):
        at_b = {r["strategy"]: r for r in rows if r["batch"] == B}
        assert set(at_b) == names, (B, set(at_b))
        assert at_b["full"]["agreement"] == 1.0 and at_b["full"]["flops_vs_full"] == 1.0
        assert at_b["self_spec d=2"]["agreement"] == 1.0  # lossless
        assert at_b["latency"]["flops_vs_full"] >= 1.0  # every row runs every layer
        assert all(r["tokens_per_s"] > 0 and r["p50_ms"] <= r["p90_ms"] for r in at_b.values())


def test_rows_invariants(smoke_cli):
    _, _, res = smoke_cli
    c = res["configs"][0]
    from eelab.bench_spec import POLICIES
    assert {r["policy"] for r in c["rows"]} == set(POLICIES)
    assert {r["threshold"] for r in c["rows"]} >= {0.3, 1.01}
    for r in c["rows"]:
        assert all(k in r for k in FIELDS), [k for k in FIELDS if k not in r]
        assert r["repeats"] == 5 and r["measured_q1"] <= r["measured_speedup"] <= r["measured_q3"]
        assert abs(r["ideal_speedup"] - r["cached_flops"] / r["early_flops"]) < 1e-12
        assert abs(r["efficiency"] - r["measured_speedup"] / r["ideal_speedup"]) < 1e-9
        assert 0 <= r["agreement"] <= 1 and 0 <= r["shallow_ratio"] <= 1
        assert abs(sum(v["seconds"] for v in r["breakdown_early"].values()) - r["early_s"]) < 1e-9
        assert all(v > 0 for v in r["step_seconds"].values())                   # per-step times from on_step
        d = r["early_decode"]
        assert d["confidence_evals"] == r["new_tokens"]  # one decision per generated token
        if r["threshold"] > 1:  # never exits: the full model's tokens, more FLOPs
            assert r["agreement"] == 1.0 and r["same_tokens"] and r["shallow_ratio"] == 0
            assert r["ideal_speedup"] < 1
            assert d["head_evals"] == 2 * r["new_tokens"]  # shallow head for the decision, then the deep one
            assert list(r["step_seconds"]) == [str(c["config"]["phase2_layers"])]


def test_configs_and_guard():
    from eelab.bench_spec import bench_config
    from eelab.bench_decode import exit_kwargs
    from eelab.bench_rows import targets
    from eelab.config import ExperimentConfig
    s = bench_config("scale")
    assert (s.dim, s.phase1_layers, s.phase2_layers, s.tokenizer, s.vocab_size) == (256, 2, 8, "bpe", 8000)
    assert (s.recipe, s.exit_every) == ("joint", 2)
    assert bench_config("reference", "full") == ExperimentConfig()
    with pytest.raises(ValueError, match="config='huge'"): bench_config("huge")
    with pytest.raises(ValueError, match="budget='forever'"): bench_config("scale", "forever")
    assert exit_kwargs("skip") == {"fill": "skip", "estimator": None}
    row = dict(policy="skip", estimator="softmax_max")
    rows = [dict(row, threshold=0.5, measured_speedup=1.6, agreement=0.96, shallow_ratio=0.5,
                 efficiency=0.95, measured_q1=1.5, measured_q3=1.7),
            dict(row, threshold=0.2, measured_speedup=2.0, agreement=0.80, shallow_ratio=0.8,
                 efficiency=0.92, measured_q1=1.9, measured_q3=2.1)]
    t = targets(rows)
    assert t["efficiency_met"] and t["speedup_met"] and t["best"]["threshold"] == 0.5
    src = (ROOT / "eelab" / "bench.py").read_text()
    assert 'if __name__ == "__main__" and not _in_notebook(): main()' in src


SPEC_FIELDS = ("exit_layer", "draft_len", "reuse", "measured_speedup", "measured_q1", "measured_q3",
               "ideal_speedup", "efficiency", "acceptance_rate", "tokens_per_pass", "same_tokens",
               "thrown_away_share",
               "predicted_speedup", "cached_s", "spec_s", "cached_flops", "spec_flops", "passes")


def test_speculation_rows(smoke_cli):
  # breaks if a self-speculation row is missing, not lossless, or its ratios do not come from its own numbers
    _, _, res = smoke_cli
    from eelab.bench_spec import DRAFT_LENS
    c = res["configs"][0]
    rows = c["spec_rows"]
    assert {(r["draft_len"], r["reuse"]) for r in rows} == {(d, r) for d in DRAFT_LENS for r in (True, False)}
    for r in rows:
        assert all(k in r for k in SPEC_FIELDS), [k for k in SPEC_FIELDS if k not in r]
        assert r["same_tokens"] is True                                          # lossless on every prompt
        assert r["measured_q1"] <= r["measured_speedup"] <= r["measured_q3"]
        assert abs(r["ideal_speedup"] - r["cached_flops"] / r["spec_flops"]) < 1e-12
        assert abs(r["efficiency"] - r["measured_speedup"] / r["ideal_speedup"]) < 1e-9
        assert 0 <= r["acceptance_rate"] <= 1 and r["tokens_per_pass"] >= 1 and r["predicted_speedup"] > 0
        assert sum(n + 1 for m, n, stopped in r["passes"]) == r["new_tokens"]
    t = c["spec_targets"]
    assert t["all_lossless"] is True and t["median_reuse_gain"] > 0
    ce = c["ceiling"]
    assert abs(sum(ce["histogram"].values()) - 1) < 1e-9 and ce["layer_speedup"] >= 1
    shallowest = min(ce["histogram"], key=int)                                   # JSON keys are strings
    assert ce["histogram"][shallowest] == ce["agreement"][shallowest]


def test_bad_cli_argument_fails_before_training(tmp_path, monkeypatch, capsys):
    # issue 8 section 6: an unknown estimator used to be found after 35 minutes of training
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EELAB_DATA": str(tmp_path / "data")}
    cmd = [sys.executable, "-m", "eelab.bench", "--configs", "smoke", "--estimators", "softmax_max", "nope",
           "--out", str(tmp_path)]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "estimators='nope'" in p.stderr, p.stderr[-500:]
    from eelab.bench import main
    monkeypatch.setenv("EELAB_DATA", str(tmp_path / "data"))
    bad = ((["--thresholds", "nan"], "threshold=nan"), (["--draft-lens", "4", "0"], "draft_lens=0"),
           (["--repeats", "0"], "repeats=0"), (["--draft-threshold", "-0.5"], "draft_threshold=-0.5"))
    for args, field in bad:
        with pytest.raises(SystemExit) as e: main(["--configs", "smoke", *args, "--out", str(tmp_path)])
        assert e.value.code == 2 and field in capsys.readouterr().err, args
    assert not (tmp_path / "data").exists() and not (tmp_path / "bench.json").exists()     # nothing trained


def test_learned_estimator_trains_on_given_windows():
    import torch
    from eelab.bench_spec import check_args
    from eelab.bench_decode import exit_kwargs
    from eelab.model import EarlyExitLM, ModelConfig
    check_args(estimators=["learned"])
    torch.manual_seed(0)
    mc = ModelConfig(vocab_size=20, dim=16, num_heads=2, n_layers=4, exit_layers=(2, 4))
    model = EarlyExitLM(mc).eval()
    kw = exit_kwargs("skip", "learned", model, windows=torch.randint(0, 20, (8, 9)))
    assert kw["estimator"].name == "learned" and kw["estimator"].history


def test_ceiling_by_hand():
    # the first agreeing exit, counted by brute force over every token
    import torch
    from eelab.bench_profile import ceiling
    from eelab.model import EarlyExitLM, ModelConfig
    torch.manual_seed(1)
    mc = ModelConfig(vocab_size=7, dim=8, num_heads=2, n_layers=3, exit_layers=(1, 2, 3))
    model = EarlyExitLM(mc).eval()
    windows = torch.randint(0, 7, (5, 11))
    ce = ceiling(model, windows, batch_size=2)
    with torch.no_grad(): out = model(windows[:, :-1])
    top = {e: out[e].argmax(-1).flatten().tolist() for e in (1, 2, 3)}
    first = [next(e for e in (1, 2, 3) if top[e][i] == top[3][i]) for i in range(50)]
    assert ce["tokens"] == 50 and ce["histogram"] == {e: first.count(e) / 50 for e in (1, 2, 3)}
    assert abs(ce["layer_speedup"] - 3 / (sum(first) / 50)) < 1e-12


def test_each_estimator_on_its_own_grid():
    # issue 13 §3: saturation is benchmarked on its own range (0.95-0.999), softmax_max around the recipe's
    # threshold; rows exist exactly at each estimator's thresholds (breaks if a shared grid is used)
    import torch
    from eelab.bench import estimator_thresholds
    from eelab.bench_decode import bench_model
    from eelab.estimators import Saturation
    from eelab.model import EarlyExitLM, ModelConfig
    grids = estimator_thresholds(["softmax_max", "saturation"], 0.2)
    assert grids["saturation"] == sorted(set(Saturation.thresholds(5)) | {2.0})
    assert 0.2 in grids["softmax_max"] and 0.999 not in grids["softmax_max"]
    assert estimator_thresholds(["saturation"], 0.2, given=[0.5])["saturation"] == [0.5]
    torch.manual_seed(0)
    mc = ModelConfig(vocab_size=20, dim=16, num_heads=2, n_layers=4, exit_layers=(2, 4))
    model, prompt = EarlyExitLM(mc).eval(), torch.randint(0, 20, (1, 4))
    rows = bench_model(model, [prompt], 4, grids, ["skip"], list(grids), repeats=1, warmup=0)
    for est, grid in grids.items():
        assert sorted(r["threshold"] for r in rows if r["estimator"] == est) == grid, est


@pytest.fixture(scope="module")
def hf_tiny_cli(tmp_path_factory):
    "python -m eelab.bench --configs hf-tiny: a tiny random Llama through the transformers path, no training."
    out = tmp_path_factory.mktemp("bench-hf")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "eelab.bench", "--configs", "hf-tiny", "--repeats", "2", "--warmup", "0",
           "--new-tokens", "6", "--prompts", "2", "--thresholds", "0.05", "1.01", "--policies", "skip",
           "--draft-lens", "2", "--out", str(out)]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout, json.loads((out / "bench.json").read_text())["configs"][0]


def test_hf_config_runs_untrained(hf_tiny_cli):
    # breaks if HF configs train, lose a table, stop being lossless, or the best-settings lines go missing
    stdout, c = hf_tiny_cli
    assert c["name"] == "hf-tiny" and c["pretrained"] and c["train_seconds"] == 0
    assert "no training" in stdout and "best settings: cached decoding" in stdout and "ceiling" in stdout
    assert c["cached_tokens_per_s"] > 0 and c["config"]["exit_layers"] == [1, 2, 4]
    by_t = {r["threshold"]: r for r in c["rows"]}
    assert set(by_t) >= {0.05, 1.01}
    assert by_t[1.01]["shallow_ratio"] == 0 and by_t[1.01]["same_tokens"] and by_t[1.01]["agreement"] == 1
    assert by_t[0.05]["shallow_ratio"] == 1 and by_t[0.05]["ideal_speedup"] > 1  # 0.05 < 1/32: always exits
    assert {(r["exit_layer"], r["reuse"]) for r in c["spec_rows"]} == {(e, u) for e in (1, 2) for u in (0, 1)}
    assert all(r["same_tokens"] for r in c["spec_rows"])                       # lossless on every prompt
    assert c["ceiling"]["tokens"] == 16 * 64 and abs(sum(c["ceiling"]["histogram"].values()) - 1) < 1e-9


def test_hf_config_names_checked_before_loading(monkeypatch):
    # breaks if a bad argument of an HF config is found only after the (slow) model load
    import eelab.bench as bench
    from eelab.bench_spec import check_args
    from eelab.config import ConfigError
    check_args(["smollm2", "hf-tiny", "smoke"])
    with pytest.raises(ConfigError, match="configs='smollm3'"): check_args(["smollm2", "smollm3"])
    monkeypatch.setattr(bench, "load_hf_config", lambda name: pytest.fail("loaded before checking"))
    spec = bench.BenchSpec
    with pytest.raises(ConfigError, match="repeats=0"): bench.run_bench(spec(("smollm2",), repeats=0))
    with pytest.raises(ConfigError, match="budget='x'"): bench.run_bench(spec(("smollm2",), budget="x"))


def test_train_step_flops_by_hand():
    # issue 11 §3: a step's FLOPs counted by hand from the matmul weights (breaks if a layer, the attention
    # pairs, a trained exit's head or the 3x of forward + backward goes missing)
    import torch
    from eelab.bench_train import train_step_flops, train_work
    from eelab.train import first_step
    from eelab.config import smoke_config
    from eelab.model import EarlyExitLM, ModelConfig, WorkMeter
    mc = ModelConfig(vocab_size=11, dim=8, num_heads=2, n_layers=3, exit_layers=(1, 2, 3),
                     separate_heads=True)
    model, B, T = EarlyExitLM(mc), 3, 7
    per_token = sum(2 * m.weight.numel() for m in model.layers[1].modules() if isinstance(m, torch.nn.Linear))
    pairs = B * sum(range(1, T + 1))                                         # causal: query t sees t keys
    heads = sum(2 * model.head(e).proj.weight.numel() for e in (1, 2, 3))   # per token
    forward = 3 * B * T * per_token + 3 * pairs * 4 * 8 + B * T * heads
    assert train_step_flops(model, B, T) == 3 * forward == train_step_flops(mc, B, T)
    assert train_step_flops(model, B, T, exits=(3,)) == 3 * (forward - B * T * 2 * 2 * 11 * 8)
    meter = WorkMeter()
    model.forward_hidden(torch.randint(0, 11, (B, T)), meter=meter)          # the model's own count
    assert train_work(mc, B, T, ()) == meter
    fs = first_step(smoke_config(dim=16), vocab_size=20)
    phase1, exits = fs.model, fs.exits
    assert exits == [phase1.n_layers] == [smoke_config().phase1_layers]     # phase 1: one exit, one head


@pytest.mark.parametrize("recipe", ["reference", "joint"])
def test_train_steps_fp32_and_bf16_run(recipe):
    # both precisions take real optimizer steps of the trainer's model and report finite, positive numbers
    import math
    from eelab.bench_train import train_step_flops, train_step_times
    from eelab.train import first_step
    from eelab.config import smoke_config
    cfg = smoke_config(dim=16, batch_size=4, seq_len=8, recipe=recipe)
    peaks = dict(fp32=1e10, bf16=2e10)
    rows = train_step_times(cfg, vocab_size=30, repeats=2, warmup=1, peaks=peaks, config_name="tiny")
    fs = first_step(cfg, 30)
    model, exits, distilled = fs.model, fs.exits, fs.distilled
    assert [r["precision"] for r in rows] == ["fp32", "bf16"]
    assert exits == list(model.exit_layers if recipe == "joint" else model.exit_layers[-1:])
    for r in rows:
        for k in ("step_s", "tokens_per_s", "achieved_flops", "peak_fraction", "loss", "speedup_vs_fp32"):
            assert 0 < r[k] < math.inf, (k, r[k])
        assert r["step_flops"] == train_step_flops(model, 4, 8, exits, distilled) and r["exits"] == exits
        assert r["tokens_per_s"] == 32 / r["step_s"] and r["repeats"] == 2
        assert abs(r["peak_fraction"] - r["achieved_flops"] / peaks[r["precision"]]) < 1e-12
    assert rows[0]["speedup_vs_fp32"] == 1.0


def test_peak_flops_positive():
    import math
    from eelab.bench_profile import peak_flops
    for dtype in ("fp32", "bf16"):
        assert 0 < peak_flops(dtype, n=64, repeats=2, warmup=1) < math.inf


def test_bad_train_steps_arguments(tmp_path, capsys):
    # a bad precision is named before anything runs, in the library and on the command line
    from eelab.bench import main
    from eelab.bench_spec import check_args
    from eelab.bench_train import train_step_times
    from eelab.config import ConfigError, smoke_config
    with pytest.raises(ConfigError, match="train_steps='fp16'"): check_args(train_steps=["bf16", "fp16"])
    check_args(train_steps=[])                                                # []: fp32 and bf16
    with pytest.raises(ConfigError, match=r"precisions=\(\)"):
        train_step_times(smoke_config(), 20, precisions=())
    with pytest.raises(ConfigError, match="repeats=0"): train_step_times(smoke_config(), 20, repeats=0)
    for args, field in ((["--train-steps", "fp32", "fp8"], "train_steps='fp8'"),
                        (["--train-steps-only", "--repeats", "0"], "repeats=0")):
        with pytest.raises(SystemExit) as e: main(["--configs", "smoke", *args, "--out", str(tmp_path)])
        assert e.value.code == 2 and field in capsys.readouterr().err, args
    assert not (tmp_path / "bench.json").exists()


def test_train_steps_only_cli_report(tmp_path, capsys):
    # --train-steps-only: the table alone (no training, no figures), in bench.json and in format_report
    from eelab.bench import main
    from eelab.bench_report import format_report
    res = main(["--smoke", "--train-steps-only", "--configs", "smoke", "hf-tiny", "--out", str(tmp_path)])
    stdout = capsys.readouterr().out
    t = json.loads((tmp_path / "bench.json").read_text())["train_steps"]
    assert res["configs"] == [] and not (tmp_path / "bench_figure.json").exists()
    assert [(r["config"], r["precision"]) for r in t["rows"]] == [("smoke", "fp32"), ("smoke", "bf16")]
    assert set(t["peaks"]) == {"fp32", "bf16"} and all(r["repeats"] == 5 for r in t["rows"])
    report = format_report(res)
    assert "training steps" in stdout and report in stdout and "% peak" in report
    for r in t["rows"]:
        assert f"{r['config']:<10}{r['precision']:<6}{1e3 * r['step_s']:>9.1f}" in report


def test_auto_budget_takes_the_trained_scale_model(private_data_dir):
    # breaks if the benchmark's `scale` ignores the model `make scale` trained, or claims one not there
    from pathlib import Path
    from eelab.bench_spec import bench_config, resolve_budget, check_args
    from eelab.checkpoint import checkpoint_dir
    from eelab.config import scale_config
    assert bench_config("scale", "full") == scale_config()
    assert resolve_budget("scale", "auto") == "brief"                 # a fresh data folder: nothing trained
    assert bench_config("scale", "auto") == bench_config("scale", "brief")
    marker = checkpoint_dir(scale_config()) / "phase2.safetensors"
    marker.parent.mkdir(parents=True)
    Path(marker).touch()                                             # what has_run looks for
    assert resolve_budget("scale", "auto") == "full"
    assert bench_config("scale", "auto") == scale_config()
    assert resolve_budget("scale", "brief") == "brief" and resolve_budget("smoke", "auto") == "brief"
    with pytest.raises(ValueError, match="budget='most'"): check_args(["scale"], "most")


def test_spec_generates_the_command_line():
    # issue 20: the CLI is BenchSpec's fields; a spec written out as flags parses back to itself
    from dataclasses import fields
    from eelab.bench_spec import BenchSpec, spec_from_argv, spec_parser
    flags = {a.dest for a in spec_parser()._actions if a.dest != "help"}
    assert flags == {f.name for f in fields(BenchSpec)}
    assert spec_from_argv([]) == BenchSpec()
    spec = BenchSpec(configs=("smoke", "hf-tiny"), budget="full", repeats=7, warmup=2, new_tokens=5,
                     prompts=3, thresholds=(0.2, 1.01), policies=("skip", "oracle"),
                     draft_lens=(2, "adaptive"),
                     draft_threshold=0.4, speculation=False, batch_sizes=(1, 4), train_steps=("bf16",),
                     html=True, out="x")
    argv = ["--configs", "smoke", "hf-tiny", "--train-budget", "full", "--repeats", "7", "--warmup", "2",
            "--new-tokens", "5", "--prompts", "3", "--thresholds", "0.2", "1.01", "--policies", "skip",
            "oracle",
            "--draft-lens", "2", "adaptive", "--draft-threshold", "0.4", "--no-speculation", "--batch-sizes",
            "1", "4", "--train-steps", "bf16", "--html", "--out", "x"]
    assert spec_from_argv(argv) == spec
    assert BenchSpec.from_json(spec.to_json()) == spec


def test_typed_rows_round_trip(smoke_cli):
    # every row of bench.json is a typed row written by asdict: read back, it is the same row, field for field
    import dataclasses
    from eelab.bench_report import as_plain
    from eelab.bench_rows import BatchRow, DecodeRow, ExitRow, SpecRow
    c = smoke_cli[2]["configs"][0]
    for key, cls in (("rows", ExitRow), ("spec_rows", SpecRow), ("batch_rows", BatchRow),
                     ("decode_rows", DecodeRow)):
        assert c[key], key
        for r in c[key]:
            row = cls.from_dict(r)
            assert list(r) == [f.name for f in dataclasses.fields(cls)]
            assert as_plain(row) == r and json.loads(json.dumps(row)) == r
    with pytest.raises(TypeError): ExitRow.from_dict({**c["rows"][0], "agreemnt": 1.0})   # unknown field


def test_noise_rule():
    # issue 19: an IQR spanning more than NOISE_FACTOR (1.5x) is noise: marked, and never ranked best
    from eelab.bench_report import exit_lines
    from eelab.bench_rows import NOISE_FACTOR, best_row, is_noise, spec_targets, targets
    assert NOISE_FACTOR == 1.5
    assert not is_noise(1.0, 1.5) and is_noise(1.0, 1.5001) and is_noise(2.0, 3.1) and is_noise(0.0, 0.5)
    assert not is_noise(1.0, 1.9, factor=2.0)
    row = dict(policy="skip", estimator="softmax_max", agreement=1.0, shallow_ratio=0.5, efficiency=1.0,
               ideal_speedup=1.2)
    steady = dict(row, threshold=0.5, measured_speedup=1.2, measured_q1=1.1, measured_q3=1.3)
    wild = dict(row, threshold=0.3, measured_speedup=3.0, measured_q1=0.5, measured_q3=4.0)
    assert best_row([steady, wild])["threshold"] == 0.5 and best_row([wild]) is None
    t = targets([steady, wild])
    assert t["best"]["threshold"] == 0.5 and t["noisy_rows"] == 1
    lines = exit_lines([steady, wild], t)
    assert not lines[1].endswith("noise") and lines[2].endswith("noise")
    spec = dict(exit_layer=2, draft_len=2, reuse=True, acceptance_rate=0.5, tokens_per_pass=1.5,
                same_tokens=True, efficiency=1.0, measured_speedup=2.0, measured_q1=0.5, measured_q3=3.0)
    assert spec_targets([spec])["best"] is None and spec_targets([spec])["noisy_rows"] == 1


def test_roof_fraction_from_measured_numbers(hf_tiny_cli):
    # issue 18 §1: cached decoding beside HF generate in the same run, and as a fraction of the bandwidth roof
    import torch
    from eelab.bench import load_hf_config
    from eelab.bench_profile import read_bandwidth, roof_fraction, weight_bytes
    assert roof_fraction(100.0, 10 ** 6, 1e9) == 0.1 and roof_fraction(50.0, 2 * 10 ** 6, 1e9) == 0.1
    model, _ = load_hf_config("hf-tiny")
    by_hand = sum(p.numel() * p.element_size() for p in model.layers.parameters())
    head = model.head(model.n_layers)
    by_hand += sum(p.numel() * p.element_size() for p in head.parameters())
    table = model.embed.weight
    if all(table.data_ptr() != p.data_ptr() for p in head.parameters()):
        by_hand += table.shape[1] * table.element_size()
    assert weight_bytes(model) == by_hand
    assert 1e8 < read_bandwidth(8 * 2 ** 20, repeats=3) < 1e13
    stdout, c = hf_tiny_cli
    rows = {r["method"]: r for r in c["decode_rows"]}
    from eelab.rows import kernel_available
    kernel = {"cached_rows"} if kernel_available() else set()
    assert set(rows) == {"hf_generate", "cached", "cached_split"} | kernel
    assert "vs generate" in stdout and "% roof" in stdout
    for r in rows.values():
        assert r["weight_bytes"] == by_hand and r["same_tokens"] is True       # greedy: the same tokens
        assert r["roof_fraction"] == r["tokens_per_s"] * r["weight_bytes"] / r["bandwidth"]
        assert r["roof_tokens_per_s"] == r["bandwidth"] / r["weight_bytes"]
        assert r["tokens_per_s_q1"] <= r["tokens_per_s"] <= r["tokens_per_s_q3"]
    assert rows["hf_generate"]["vs_generate"] == 1.0 and rows["cached"]["vs_generate"] > 0
    assert rows["cached_split"]["vs_generate"] > 0
    assert c["cached_tokens_per_s"] == rows["cached"]["tokens_per_s"]
    assert torch.is_tensor(model.embed.weight)


def test_smollm2_gets_a_small_default_grid():
    # issue 18: the default grid did not finish in 60 minutes on SmolLM2; it now gets a small one, and a
    # field given on the command line keeps its value
    from eelab.bench_spec import CONFIG_GRIDS, BenchSpec, spec_for, spec_from_argv
    small = spec_for(spec_from_argv(["--configs", "smollm2"]), "smollm2")
    assert small.policies == ("skip",) and len(small.thresholds) == 2 and small.repeats == 5
    assert len(small.draft_lens) == 2 and small.new_tokens == 16
    assert spec_for(spec_from_argv(["--configs", "smollm2", "--repeats", "9"]), "smollm2").repeats == 9
    assert spec_for(BenchSpec(), "scale") == BenchSpec() and set(CONFIG_GRIDS) == {"smollm2"}
