"""Trainer: atomic, resumable checkpoints give the same result as an uninterrupted run (issue #3)."""
import pytest, torch
from eelab.config import smoke_config
from eelab.checkpoint import checkpoint_dir
from eelab.train import train_two_phase, TrainingInterrupted


@pytest.mark.parametrize("recipe,phase", [("reference", "phase1"), ("clean", "phase2")])
def test_interrupted_run_resumes_to_the_same_result(phase, recipe, tmp_path, monkeypatch, capsys):
    cfg = smoke_config(recipe=recipe, seed=11, phase1_max_epochs=2, phase2_max_epochs=2, phase1_patience=0, phase2_patience=0)
    monkeypatch.setenv("EELAB_DATA", str(tmp_path / "straight"))
    straight = train_two_phase(cfg, progress=False)
    # a plain-text line per epoch with an ETA (a tqdm widget is invisible under papermill, issue 8)
    printed = capsys.readouterr().out
    assert "phase 1 epoch 1/2: train loss" in printed and "ETA at most" in printed, printed
    monkeypatch.setenv("EELAB_DATA", str(tmp_path / "interrupted"))
    with pytest.raises(TrainingInterrupted):
        train_two_phase(cfg, progress=False, interrupt_after_steps={phase: 5 if phase == "phase2" else 40})
    assert (checkpoint_dir(cfg) / f"{phase}.progress.safetensors").exists() or phase == "phase2"
    assert not any(p.name.endswith(".tmp") for p in checkpoint_dir(cfg).iterdir())   # no half-written files
    resumed = train_two_phase(cfg, progress=False)
    assert not resumed.reused
    assert resumed.metrics == straight.metrics and resumed.threshold == straight.threshold
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()): assert torch.equal(a, b)


def test_no_posix_only_file_lock():
    # issue 8 §5: `import fcntl` in eelab.train broke Windows; the run lock is the portable `filelock` package
    import ast
    from pathlib import Path
    lib = Path(__file__).resolve().parents[1] / "eelab"
    for path in lib.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) else []
            assert "fcntl" not in names, f"{path.name} imports fcntl"


def test_run_lock_excludes_a_second_holder(tmp_path):
    from filelock import FileLock, Timeout
    from eelab.checkpoint import run_lock
    with run_lock(tmp_path):
        with pytest.raises(Timeout): FileLock(str(tmp_path / ".lock")).acquire(timeout=0.1)
    FileLock(str(tmp_path / ".lock")).acquire(timeout=0.1)                      # released afterwards
