"""Trainer: atomic, resumable checkpoints give the same result as an uninterrupted run (issue #3)."""
import os
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
