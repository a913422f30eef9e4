"""The benchmark harness (eelab.bench): the command line on the smoke config, and the invariants of its rows."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("config", "policy", "estimator", "threshold", "measured_speedup", "measured_q1", "measured_q3", "ideal_speedup",
          "efficiency", "agreement", "shallow_ratio", "cached_s", "early_s", "cached_flops", "early_flops", "repeats",
          "breakdown_early", "breakdown_cached")


@pytest.fixture(scope="module")
def smoke_cli(tmp_path_factory):
    "python -m eelab.bench --smoke, run once as a user would."
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "eelab.bench", "--smoke", "--thresholds", "0.3", "1.01", "--out", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return out, p.stdout, json.loads((out / "bench.json").read_text())


def test_cli_writes_json_figure_and_report(smoke_cli):
    out, stdout, res = smoke_cli
    assert res["schema"] == "eelab.bench/1" and [c["name"] for c in res["configs"]] == ["smoke"]
    assert (out / "bench_figure.json").exists() and json.loads((out / "bench_figure.json").read_text())["data"]
    assert "policy/estimator" in stdout and "one decode step, by part" in stdout and "targets:" in stdout
    assert not list(out.glob(".*.tmp"))                                          # atomic write left no temp file


def test_rows_invariants(smoke_cli):
    _, _, res = smoke_cli
    c = res["configs"][0]
    from eelab.bench import POLICIES
    assert {r["policy"] for r in c["rows"]} == set(POLICIES)
    assert {r["threshold"] for r in c["rows"]} >= {0.3, 1.01}
    for r in c["rows"]:
        assert all(k in r for k in FIELDS), [k for k in FIELDS if k not in r]
        assert r["repeats"] == 5 and r["measured_q1"] <= r["measured_speedup"] <= r["measured_q3"]
        assert abs(r["ideal_speedup"] - r["cached_flops"] / r["early_flops"]) < 1e-12
        assert abs(r["efficiency"] - r["measured_speedup"] / r["ideal_speedup"]) < 1e-9
        assert 0 <= r["agreement"] <= 1 and 0 <= r["shallow_ratio"] <= 1
        assert abs(sum(v["seconds"] for v in r["breakdown_early"].values()) - r["early_s"]) < 1e-9
        d = r["early_decode"]
        assert d["confidence_evals"] == r["new_tokens"]                          # one decision per generated token
        if r["threshold"] > 1:                                                   # never exits: the full model's tokens, more FLOPs
            assert r["agreement"] == 1.0 and r["same_tokens"] and r["shallow_ratio"] == 0 and r["ideal_speedup"] < 1
            assert d["head_evals"] == 2 * r["new_tokens"]                        # shallow head for the decision, then the deep one


def test_configs_and_guard():
    from eelab.bench import bench_config, exit_kwargs, targets
    from eelab.config import ExperimentConfig
    s = bench_config("scale")
    assert (s.dim, s.phase1_layers, s.phase2_layers, s.tokenizer, s.vocab_size) == (256, 4, 8, "bpe", 8000)
    assert bench_config("reference", "full") == ExperimentConfig()
    with pytest.raises(ValueError): bench_config("huge")
    with pytest.raises(ValueError): bench_config("scale", "forever")
    assert exit_kwargs("skip") == {"fill": "skip", "estimator": None}
    rows = [dict(policy="skip", estimator="softmax_max", threshold=0.5, measured_speedup=1.6, agreement=0.96, shallow_ratio=0.5, efficiency=0.95),
            dict(policy="skip", estimator="softmax_max", threshold=0.2, measured_speedup=2.0, agreement=0.80, shallow_ratio=0.8, efficiency=0.92)]
    t = targets(dict(rows=rows))
    assert t["efficiency_met"] and t["speedup_met"] and t["best"]["threshold"] == 0.5
    src = (ROOT / "eelab" / "bench.py").read_text()
    assert 'if __name__ == "__main__" and not _in_notebook(): main()' in src
