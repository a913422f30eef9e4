"""eelab-lab as a newcomer meets it (issue 8 §1).

Every parameter is settable or refused by name, before any training."""

from pathlib import Path
import pytest
from eelab import lab


def test_unknown_parameter_fails_before_anything_runs(tmp_path, capsys):
    # papermill alone logs "Passed unknown parameter" and runs on: this fails if the lab does not check names
    out = tmp_path / "out"
    assert lab.main(["--experiments", "001_kv_cache", "-p", "foo", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "foo=1" in err and "seq_len" in err and "num_heads" in err
    assert not out.exists()  # nothing ran, nothing was written


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["-p", "dim", "65", "--smoke"], "dim=65"),  # 65 % 2 heads
        (["-p", "dim", "abc"], "dim='abc'"),
        (["-p", "out_dir", "x"], "--out"),
        (["-p", "recipe", "fast"], "recipe='fast'"),
    ],
)
def test_bad_values_fail_by_name_before_anything_runs(argv, needle, tmp_path, capsys):
    out = tmp_path / "out"
    assert lab.main(["--experiments", "001_kv_cache", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and err.startswith("eelab-lab: ConfigError:") and "\n" not in err
    assert not out.exists()


def test_plan_smoke_recipe_and_explicit_values(tmp_path):
    # -p smoke True / -p recipe clean crashed with "multiple values for keyword argument"
    runs = lab.plan_runs(
        ["001_kv_cache"], ["reference", "clean"], dict(smoke=True, recipe="clean"), False, tmp_path
    )
    assert [(r.experiment, r.recipe, r.parameters) for r in runs] == [
        ("001_kv_cache", "clean", dict(smoke=True, recipe="clean"))
    ]
    # explicit values are passed even when equal to the notebook default; --smoke does not replace them
    runs = lab.plan_runs(["002_true_exit"], ["reference"], dict(dim=40, num_heads=4), True, tmp_path)
    assert runs[0].parameters == dict(dim=40, num_heads=4, smoke=True, recipe="reference")
    # 003 takes no recipe: run once, without one, even with two recipes
    runs = lab.plan_runs(["001_kv_cache", "003_honest_exit"], ["reference", "clean"], {}, True, tmp_path)
    assert [(r.experiment, r.recipe) for r in runs] == [
        ("001_kv_cache", "reference"),
        ("001_kv_cache", "clean"),
        ("003_honest_exit", None),
    ]
    assert "recipe" not in runs[-1].parameters and runs[-1].out_dir == tmp_path / "003_honest_exit"
    # a parameter only some experiments have goes only to those
    runs = lab.plan_runs(
        ["001_kv_cache", "003_honest_exit"], ["reference"], dict(n_prompts=4), False, tmp_path
    )
    assert "n_prompts" not in runs[0].parameters and runs[1].parameters["n_prompts"] == 4


def test_help_says_explicit_parameters_win(capsys):
    with pytest.raises(SystemExit):
        lab.main(["--help"])
    assert "Explicit parameters always win" in capsys.readouterr().out


def test_experiments_are_the_notebooks_and_their_own_tables_print(tmp_path, monkeypatch, capsys):
    (tmp_path / "nbs" / "experiments").mkdir(parents=True)
    (tmp_path / "nbs" / "experiments" / "004_new.ipynb").write_text("{}")
    monkeypatch.setattr(lab, "repo_root", lambda: tmp_path)
    assert lab.experiment_names() == ["004_new"]  # fails with a hand-kept tuple
    table = dict(index=["plain", "speculative"], columns=["tokens/s"], data=[[120.5], [150.25]])
    lab.print_tables(dict(experiment="004_new", recipe="clean", tables={"speed": table}), "clean")
    printed = capsys.readouterr().out
    assert "== 004_new (clean recipe): speed ==" in printed and "150.25" in printed


def test_config_error_inside_a_notebook_is_one_line(tmp_path, capsys, monkeypatch):
    # batch_size passes the config's own checks but is larger than the smoke corpus: train_two_phase raises
    # ConfigError inside the kernel. Without the lab's handling this is a 60-line PapermillExecutionError.
    monkeypatch.setenv("EELAB_DATA", str(tmp_path / "data"))
    out = tmp_path / "out"
    argv = [
        "--smoke",
        "--experiments",
        "001_kv_cache",
        "--recipes",
        "reference",
        "--out",
        str(out),
        "-p",
        "config",
        "{'batch_size': 100000}",
    ]
    assert lab.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eelab-lab: ConfigError: batch_size=100000") and "\n" not in err
    assert "traceback in" in err and (out / "reference" / "001_kv_cache" / "001_kv_cache.ipynb").exists()


def test_package_data_is_declared_the_supported_way(tmp_path):
    # issue 8 §5: setuptools warned "Package 'eelab.assets' is absent from the `packages` configuration" (and
    # would ignore it in future); the explorer's checkpoint must still be in the build.
    import shutil, subprocess, sys

    root = Path(__file__).resolve().parents[1]
    for name in ("setup.py", "settings.ini", "README.md", "pyproject.toml"):
        shutil.copy(root / name, tmp_path)
    shutil.copytree(root / "eelab", tmp_path / "eelab", ignore=shutil.ignore_patterns("__pycache__"))
    res = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py"], cwd=tmp_path, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "absent from the `packages` configuration" not in res.stderr + res.stdout
    assert (tmp_path / "build" / "lib" / "eelab" / "assets" / "explorer-small.safetensors").is_file()


def test_cited_reference_figures_are_in_the_project():
    # issue 8 §2: notebooks cited experiments.md / shakespeare-anchor.md, which were not in the repository
    import re

    root = Path(__file__).resolve().parents[1]
    notebooks = [*root.glob("nbs/*.ipynb"), *root.glob("nbs/experiments/*.ipynb")]
    cited = {m for nb in notebooks for m in re.findall(r"nbs/reference/[\w.-]+\.md", nb.read_text())}
    assert cited and all((root / p).is_file() for p in cited), cited
    bare = [
        nb.name
        for nb in notebooks
        if re.search(r"(?<!nbs/reference/)\b(experiments|shakespeare-anchor)\.md", nb.read_text())
    ]
    assert not bare, f"cite nbs/reference/<file>.md: {bare}"
    for nb in ("001_kv_cache", "002_true_exit"):  # flaws are numbered in 003, not before it
        assert not re.search(r"flaws? \d", (root / "nbs" / "experiments" / f"{nb}.ipynb").read_text()), nb


def test_speed_table_shows_one_consistent_pair():
    # issue 8 §2: "Standard 0.2843 s (1.0x) / Early-exit 0.4452 s (1.07x)": slower, labelled faster
    from eelab.report import speed_table

    spread = lambda median, q1, q3: dict(median=median, q1=q1, q3=q3, min=q1, max=q3, repeats=3)
    results = dict(
        corpus=dict(name="synthetic"),
        recipe="reference",
        true_exit=dict(reference_cost=0.75),
        speed=dict(
            standard_s=spread(0.2843, 0.28, 0.29),
            early_exit_s=spread(0.4452, 0.44, 0.45),
            speedup=spread(0.64, 0.62, 0.66),
        ),
    )
    table = speed_table(results)
    col = table.columns[-1]
    assert "synthetic" in col  # the header names the corpus
    assert table.loc["Standard (cached) generation: time", col].startswith("0.2843 s")
    assert table.loc["Early-exit generation: time", col].startswith("0.4452 s")
    speedup = table.index[table.index.str.startswith("Speedup of early exit")][0]
    assert "0.64x" in table.loc[speedup, col] and ">1 = faster" in speedup
    assert table.loc[speedup, col].startswith("noise")            # 3 rounds: too few to be a result
    assert table.loc["Ratio of the median times", col] == "0.64x"
