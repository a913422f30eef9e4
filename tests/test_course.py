"""The lab as a newcomer meets it (issue 19): each test names what a new user ran into, and fails on the
main branch of before the issue. Fast: no training, no experiment run (the committed outputs are read).

- every experiment notebook ships outputs (a smoke run, labelled so), a figure, its run time at the top, and
  ends in "What we found": answers computed by a code cell, not numbers typed into prose;
- Run All in an interactive session runs the smoke variant; `eelab-lab` (papermill) the full one;
- index.ipynb: no warning in its outputs, and the quick tour generates inside the window it trained on;
- one threshold rule across the entry points, with one error message;
- "did you mean" for a misspelt name, a hint to `tokenizer.encode` for a text prompt, the `-p exit_threshold`
  row of the training table, no unencrypted-TCP warning from the lab's kernels;
- the exercises: every checker passes the library's own function, reports a stub as not done (without
  raising) and fails typical wrong answers; every core lesson ends with its *your turn* cells.
"""
import ast, json, re, sys, warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from eelab.config import ConfigError, ExperimentConfig, SMOKE, smoke_config
from eelab.model import EarlyExitLM, ModelConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import execute_notebooks  # noqa: E402

EXPERIMENTS = sorted((ROOT / "nbs" / "experiments").glob("[0-9]*.ipynb"))
PLOTLY = "application/vnd.plotly.v1+json"


def _cells(path: Path) -> list[dict]: return json.loads(path.read_text())["cells"]
def _src(cell: dict) -> str: return "".join(cell["source"])


def _texts(out: dict) -> list[str]:
    if out.get("output_type") == "stream": return [execute_notebooks._join(out["text"])]
    return [execute_notebooks._join(v) for k, v in out.get("data", {}).items() if k.startswith("text/")]


def _outputs(path: Path) -> list[dict]:
    return [o for c in _cells(path) if c["cell_type"] == "code" for o in c.get("outputs", [])]


def tiny(n_layers=4, exits=(2, 4), context_len=None):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=12, dim=8, num_heads=2, n_layers=n_layers, exit_layers=exits,
                      context_len=context_len)
    return EarlyExitLM(cfg).eval()


# ---- experiments: outputs, figure, run time, What we found ----

def test_there_are_eight_experiments_or_more():
    assert len(EXPERIMENTS) >= 8


@pytest.mark.parametrize("nb", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_is_rerun_by_papermill_in_pytest(nb):
    # nbs/experiments/.notest keeps nbdev_test out of this folder, so an experiment without a papermill test
    # here would run nowhere in `make test`: breaks if a new experiment has none
    assert (ROOT / "nbs" / "experiments" / ".notest").exists()
    runners = [p for p in (ROOT / "tests").glob("test_experiment*.py") if f'"{nb.stem}"' in p.read_text()]
    assert runners, f"{nb.name}: no tests/test_experiment*.py runs it (eelab.lab.run_experiment)"


@pytest.mark.parametrize("nb", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_ships_smoke_outputs_with_a_figure(nb):
    # breaks if the notebook is committed without outputs, without a plotly figure, with outputs that would
    # churn (timings, stderr), or without saying that its outputs are a smoke run's
    outputs = _outputs(nb)
    assert outputs, f"{nb.name}: no outputs; run `python tools/execute_notebooks.py {nb.relative_to(ROOT)}`"
    assert any(PLOTLY in o.get("data", {}) for o in outputs), f"{nb.name}: no plotly figure in the outputs"
    for out in outputs:
        assert out.get("name") != "stderr", f"{nb.name}: stderr committed"
        for text in _texts(out):
            assert execute_notebooks.mask_text(text) == text, f"{nb.name}: unmasked timing: {text[:200]!r}"
    texts = "\n".join(t for o in outputs for t in _texts(o))
    if "full run" not in texts:
        assert "smoke run" in texts and "**Smoke run.**" in texts, f"{nb.name}: outputs not labelled as smoke"


@pytest.mark.parametrize("nb", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_states_its_run_time_at_the_top(nb):
    top = "\n".join(_src(c) for c in _cells(nb)[:3] if c["cell_type"] == "markdown")
    assert "**Run time.**" in top and "smoke" in top and "full run" in top, f"{nb.name}: no run time on top"


@pytest.mark.parametrize("nb", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_ends_in_computed_findings(nb):
    # breaks if the last section is not "What we found", if its answers are typed into prose (numbers in its
    # Markdown), or if they are not computed by a code cell from the run's values, with its output committed
    cells = _cells(nb)
    heads = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and _src(c).startswith("## ")]
    assert heads and _src(cells[heads[-1]]).startswith("## What we found"), f"{nb.name}: not the last section"
    section = cells[heads[-1]:]
    prose = "\n".join(_src(c) for c in section if c["cell_type"] == "markdown")
    assert not re.search(r"\d+(\.\d+)?\s*(%|x\b)|\d+\.\d+", prose), f"{nb.name}: numbers typed into the prose"
    code = [c for c in section if c["cell_type"] == "code"]
    assert code and "findings(" in _src(code[-1]) and "{" in _src(code[-1]), f"{nb.name}: not computed"
    shown = [t for o in code[-1].get("outputs", []) for t in _texts(o)]
    assert any(t.lstrip().startswith(("1. ", "**Smoke run.**")) for t in shown), f"{nb.name}: none shown"


def test_findings_label_a_smoke_run():
    from eelab.report import findings
    assert findings(["a"], smoke=True).data.startswith("**Smoke run.**")
    assert findings(["a"], smoke=False).data == "1. a"


# ---- Run All never starts the full run unasked ----

def test_run_all_is_a_smoke_run_and_eelab_lab_a_full_one(monkeypatch):
    # breaks if `smoke = None` means the full (20-minute) run when nobody passed parameters
    from eelab.report import resolve_parameters
    monkeypatch.delenv("IN_TEST", raising=False)
    params = dict(dim=64, num_heads=4, corpus="shakespeare", new_tokens=32, smoke=None)
    assert resolve_parameters(params, passed=set())[2] is True                  # Run All in Jupyter/Colab
    assert resolve_parameters(params, passed={"out_dir"})[2] is False           # eelab-lab passes out_dir
    assert resolve_parameters(dict(params, smoke=False), passed=set())[2] is False   # asked for explicitly


@pytest.mark.parametrize("nb", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_smoke_default_is_the_shared_one(nb):
    # breaks if a notebook decides `smoke=None` by itself from IN_TEST alone (Run All would train in full)
    source = "\n".join(_src(c) for c in _cells(nb) if c["cell_type"] == "code")
    assert "in_test() if smoke is None" not in source, nb.name
    assert "resolve_parameters(" in source or "smoke_default(" in source, nb.name


# ---- index.ipynb ----

def test_index_outputs_carry_no_warning():
    for out in _outputs(ROOT / "index.ipynb"):
        assert out.get("name") != "stderr"
        assert not any("Warning" in t for t in _texts(out)), "index.ipynb: a warning in the committed outputs"


def test_index_quick_tour_generates_inside_its_training_window():
    # breaks if the tour generates more positions than its model was trained on (the UserWarning's cause)
    from eelab.generate import check_inputs
    cells = [_src(c) for c in _cells(ROOT / "index.ipynb") if c["cell_type"] == "code"]
    tour = next(s for s in cells if "train_two_phase(smoke_config(" in s)
    seq_len = int(re.search(r"SEQ_LEN = (\d+)", tour).group(1)) if "SEQ_LEN" in tour else SMOKE["seq_len"]
    assert "seq_len=SEQ_LEN" in tour or "SEQ_LEN" not in tour
    gen = next(s for s in cells if "true_exit(run.model" in s)
    n_prompt = int(re.search(r"valid\[:(\d+)\]", gen).group(1))
    n_new = int(re.search(r"true_exit\(run\.model, prompt, (\d+)", gen).group(1))
    model = tiny(context_len=seq_len)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_inputs(model, torch.zeros(1, n_prompt, dtype=torch.long), n_new)


def test_index_says_when_early_exit_pays_and_links_the_reasons():
    text = "\n".join(_src(c) for c in _cells(ROOT / "index.ipynb"))
    assert "## When does early exit pay?" in text
    for link in ("(nbs/02a_cost.ipynb)", "(nbs/experiments/003_honest_exit.ipynb)"):
        assert link in text, link
    shown = [t for o in _outputs(ROOT / "index.ipynb") for t in _texts(o)]
    assert any("early exit pays above" in t for t in shown), "the break-even line is not committed"


def test_index_notebook_table_is_a_path_with_links_and_minutes():
    first = next(_src(c) for c in _cells(ROOT / "index.ipynb") if "| step | notebook |" in _src(c))
    rows = [r for r in first.splitlines() if re.match(r"\| \d+ \|", r)]
    assert len(rows) >= 20
    for r in rows:
        step, notebook, minutes, can = [x.strip() for x in r.strip("|").split("|")]
        path = re.fullmatch(r"\[[^]]+\]\(([^)]+)\)", notebook).group(1)
        assert (ROOT / path).is_file(), path
        assert re.fullmatch(r"<? ?\d+", minutes), r
        assert can, r
    # every experiment is a step of the path: breaks if a new one is added to nbs/experiments but not here
    listed = {re.search(r"\(([^)]+)\)", r).group(1) for r in rows}
    missing = [nb.name for nb in EXPERIMENTS if nb.relative_to(ROOT).as_posix() not in listed]
    assert not missing, f"index's path lacks {missing}"


# ---- one threshold rule ----

GOOD = [0, 0.3, 1, 1.5, 2.0, np.float64(0.7)]          # 2.0: eelab.config.NEVER_EXIT
BAD = [-0.1, float("nan"), float("inf"), True, "0.5", None]


def _entry_points():
    from eelab.generate import true_exit, fake_exit
    from eelab.speculate import self_speculative
    from eelab.batch import batched_true_exit
    from eelab.calibrate import check_grid, check_draft_grid
    from eelab.explorer import check_explorer_args
    m, p = tiny(), torch.tensor([[1, 2, 3]])
    return {
        "true_exit": lambda t: true_exit(m, p, 3, t),
        "fake_exit": lambda t: fake_exit(m, p, 3, t),
        "batched_true_exit": lambda t: batched_true_exit(m, p.repeat(2, 1), 3, t),
        "self_speculative(draft_threshold)": lambda t: self_speculative(m, p, 3, draft_threshold=t,
                                                                       estimator="softmax_max"),
        "Explorer": lambda t: check_explorer_args("", 8, t, "true exit", 0.0, 0),
        "ExperimentConfig(exit_threshold)": lambda t: ExperimentConfig(exit_threshold=t),
        "calibrate grid": lambda t: check_grid([t]),
        "calibrate draft grid": lambda t: check_draft_grid([t]),
    }


@pytest.mark.parametrize("name", list(_entry_points()))
def test_every_entry_point_takes_the_same_thresholds(name):
    # breaks where an entry point has its own range (Explorer refused 2, self_speculative 1.5)
    from eelab.config import THRESHOLD_RULE
    run = _entry_points()[name]
    for t in GOOD: run(t)
    for t in BAD:
        if t is None and "ExperimentConfig" in name: continue          # None: the mined threshold
        with pytest.raises(ConfigError) as err: run(t)
        assert THRESHOLD_RULE in str(err.value) or "threshold" in str(err.value), (name, t, str(err.value))


def test_the_rule_is_stated_once_in_its_error():
    from eelab.config import NEVER_EXIT, THRESHOLD_RULE, check_threshold
    with pytest.raises(ConfigError, match=re.escape(THRESHOLD_RULE)): check_threshold("threshold", -1)
    assert "NEVER_EXIT" in THRESHOLD_RULE and check_threshold("x", NEVER_EXIT) == NEVER_EXIT > 1


def test_never_exit_exits_nothing_and_zero_everything():
    from eelab.config import NEVER_EXIT
    from eelab.generate import true_exit
    m, p = tiny(), torch.tensor([[1, 2, 3]])
    assert true_exit(m, p, 6, NEVER_EXIT).shallow_count == 0
    assert true_exit(m, p, 6, 0).shallow_count == 6


def test_training_table_shows_the_threshold_that_generated():
    # breaks if `-p exit_threshold 2` generates at 2.0 while the table prints only the mined threshold
    from eelab.report import training_table
    phase = dict(ppl=10.0, acc=0.3, hard_ppl=20.0)
    results = dict(corpus=dict(name="synthetic"), recipe="clean",
                   metrics=dict(reported=dict(split="test", phase1=phase, phase2=phase)),
                   training=dict(threshold=0.09, exit_threshold_used=2.0,
                                 epochs=dict(phase1=[3, 3], phase2=[3, 3])))
    table = training_table(results)
    used = [r for r in table.index if "used" in r]
    assert used and table.loc[used[0]].iloc[-1] in (2.0, "2", "2.0"), table.to_string()
    results["training"]["exit_threshold_used"] = 0.09
    assert not [r for r in training_table(results).index if "used" in r]


# ---- names and hints ----

def test_a_misspelt_name_gets_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'dim'"): ExperimentConfig.from_dict({"dimm": 128})
    with pytest.raises(ConfigError, match="did you mean 'clean'"): smoke_config(recipe="clena")
    with pytest.raises(ConfigError) as err: ExperimentConfig.from_dict({"zzzz": 1})
    assert "did you mean" not in str(err.value)


def test_a_misspelt_lab_parameter_gets_a_suggestion():
    from eelab.lab import plan_runs
    with pytest.raises(ConfigError, match="did you mean 'dim'"):
        plan_runs(["002_true_exit"], ["clean"], {"dimm": 128}, True, ROOT / "_runs" / "unused")


def test_a_text_prompt_hints_at_tokenizer_encode():
    from eelab.generate import true_exit
    with pytest.raises(ConfigError, match=r"tokenizer\.encode"): true_exit(tiny(), "ROMEO:", 8, 0.5)


def test_lab_kernels_do_not_warn_about_tcp(tmp_path):
    # breaks if the lab's kernels run over TCP: ipykernel then warns once per notebook
    import os, nbformat, papermill as pm
    from eelab.lab import local_kernel_manager
    if os.name == "nt": pytest.skip("no IPC sockets on Windows")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    nb.metadata["kernelspec"] = dict(name="python3", display_name="Python 3", language="python")
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    import io, contextlib
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        pm.execute_notebook(str(src), str(out), kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
                            stderr_file=err, kernel_manager_class=local_kernel_manager())
    assert "42" in out.read_text() and "TCP" not in err.getvalue()
    assert not list(tmp_path.glob("*ipc*"))                       # no socket files in the working folder


# ---- exercises ----

def _stub(*args, **kwargs): raise NotImplementedError


CHECKER_NAMES = ["check_cache_append", "check_next_token", "check_greedy_accept", "check_p_value",
                 "check_ltt_index", "check_upper_rows", "check_left_pad"]


def _checker(name):
    from eelab import exercises
    return getattr(exercises, name)


def test_every_checker_is_listed():
    from eelab.exercises import CHECKERS
    assert sorted(c.__name__ for cs in CHECKERS.values() for c in cs) == sorted(CHECKER_NAMES)


def _library_answer(checker):
    from eelab import exercises as ex
    from eelab.batch import left_pad
    from eelab.generate import next_token
    from eelab.speculate import greedy_accept
    return {"check_cache_append": ex._layer_append, "check_next_token": next_token,
            "check_greedy_accept": greedy_accept, "check_p_value": ex._binary_p_value,
            "check_ltt_index": ex._ltt_index, "check_upper_rows": ex._upper_rows,
            "check_left_pad": left_pad}[checker]


@pytest.mark.parametrize("name", CHECKER_NAMES)
def test_checker_passes_the_library_and_reports_a_stub(name):
    checker = _checker(name)
    g = checker(_library_answer(name))
    assert g.done and g.passed, g.message
    stub = checker(_stub)                                          # the shipped cell: must not raise
    assert not stub.done and not stub.passed and "not done yet" in stub.message


def _wrong_answers():
    from eelab.batch import left_pad
    from eelab.generate import next_token
    from eelab.speculate import greedy_accept
    from eelab.cache import CacheFullError
    from scipy.stats import binom

    def append_only_new(ks, vs, length, k, v):
        if length + k.shape[2] > ks.shape[2]: raise CacheFullError("full")
        return k, v, length + k.shape[2]

    def append_no_overflow_check(ks, vs, length, k, v):
        end = length + k.shape[2]
        ks[:, :, length:end], vs[:, :, length:end] = k, v
        return ks[:, :, :end], vs[:, :, :end], end

    def counts_every_match(deep, drafts):
        n = (drafts == deep[..., :-1]).long().sum(-1)
        return n, deep.gather(-1, n[..., None]).squeeze(-1)

    def gather_for_all(exits, strategy, fill):
        write = ~exits | (exits & (fill == "oracle"))
        return (torch.ones_like(exits) if strategy == "latency" else write), write

    def pads_right(prompts, pad_id=0):
        t, m = left_pad(prompts, pad_id)
        return t.flip(-1), m.flip(-1)

    return {
        "check_cache_append": [append_only_new, append_no_overflow_check],
        "check_next_token": [lambda l, t=0, g=None: l.argmin(-1),
                              lambda l, t=0, g=None: next_token(l, 1.0 if t else 0.0, g),
                              lambda l, t=0, g=None: l.argmax(-1)],
        "check_greedy_accept": [counts_every_match, lambda d, x: (greedy_accept(d, x)[0], d[..., 0])],
        "check_p_value": [lambda r, n, d: binom.sf(np.round(np.asarray(r) * n), n, d),
                           lambda r, n, d: np.asarray(r) * 0 + d],
        "check_ltt_index": [lambda p, eps: max((i for i, x in enumerate(p) if x <= eps), default=0),
                             lambda p, eps: len(p) - 1],
        "check_upper_rows": [gather_for_all, lambda e, s, f: (~e, ~e)],
        "check_left_pad": [pads_right],
    }


@pytest.mark.parametrize("name", CHECKER_NAMES)
def test_checker_fails_typical_wrong_answers_and_says_where(name):
    checker = _checker(name)
    for wrong in _wrong_answers()[name]:
        g = checker(wrong)
        assert g.done and not g.passed, (name, g.message)
        assert "wrong on" in g.message and ("expected" in g.message or "raised" in g.message), g.message


CORE = ["03_cache", "04_generate", "11_speculate", "13_calibrate", "14_batch"]


@pytest.mark.parametrize("lesson", CORE)
def test_core_lesson_ends_with_your_turn(lesson):
    # breaks if a core lesson has no exercise, or one whose checker is not the library's
    from eelab.exercises import CHECKERS
    cells = _cells(ROOT / "nbs" / f"{lesson}.ipynb")
    turn = [i for i, c in enumerate(cells)
            if c["cell_type"] == "markdown" and _src(c).startswith("## Your turn")]
    assert turn, f"{lesson}: no 'Your turn' section"
    code = "\n".join(_src(c) for c in cells[turn[-1]:] if c["cell_type"] == "code")
    for checker in CHECKERS[lesson]:
        assert f"{checker.__name__}(" in code, (lesson, checker.__name__)
    assert "raise NotImplementedError" in code                     # the stub the learner replaces
    tree = ast.parse(code)
    assert any(isinstance(n, ast.FunctionDef) and n.name.startswith("my_") for n in ast.walk(tree))


def test_noise_is_called_noise():
    from eelab.report import timing_verdict
    assert timing_verdict(dict(median=1.31, q1=0.14, q3=13.33)).startswith("noise")
    assert timing_verdict(dict(median=1.45, q1=1.40, q3=1.50)).startswith("1.45x faster")
    assert timing_verdict(dict(median=1.0, q1=0.99, q3=1.01)).startswith("no measurable")
