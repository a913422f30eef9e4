"""Trainer: atomic, resumable checkpoints give the same result as an uninterrupted run (issue #3)."""
import pytest, torch
from eelab.config import smoke_config
from eelab.checkpoint import checkpoint_dir
from eelab.train import train_two_phase, TrainingInterrupted


# joint: layer dropout and the gradual curriculum depend on the step, which a resume must restore
JOINT = dict(layer_dropout=0.3, joint_weights="gradual", distill=0.5)


@pytest.mark.parametrize("recipe,phase", [("reference", "phase1"), ("clean", "phase2"), ("joint", "joint")])
def test_interrupted_run_resumes_to_the_same_result(phase, recipe, tmp_path, monkeypatch, capsys):
    cfg = smoke_config(recipe=recipe, seed=11, phase1_max_epochs=2, phase2_max_epochs=2, phase1_patience=0,
                       phase2_patience=0, **(JOINT if recipe == "joint" else {}))
    monkeypatch.setenv("EELAB_DATA", str(tmp_path / "straight"))
    straight = train_two_phase(cfg, progress=False)
    # a plain-text line per epoch with an ETA (a tqdm widget is invisible under papermill, issue 8)
    printed = capsys.readouterr().out
    assert f"{'joint' if recipe == 'joint' else 'phase 1'} epoch 1/2: train loss" in printed, printed
    assert "ETA at most" in printed, printed
    monkeypatch.setenv("EELAB_DATA", str(tmp_path / "interrupted"))
    with pytest.raises(TrainingInterrupted):
        train_two_phase(cfg, progress=False, interrupt_after_steps={phase: 5 if phase == "phase2" else 40})
    assert (checkpoint_dir(cfg) / f"{phase}.progress.safetensors").exists() or phase == "phase2"
    assert not any(p.name.endswith(".tmp") for p in checkpoint_dir(cfg).iterdir())   # no half-written files
    resumed = train_two_phase(cfg, progress=False)
    assert not resumed.reused
    assert resumed.metrics == straight.metrics and resumed.threshold == straight.threshold
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()):
        assert torch.equal(a, b)


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


def test_bf16_loss_and_gradients_agree_with_fp32():
    # tolerance: loss within 1% and each gradient within 5% (relative L2) of fp32. Breaks if the fused head's
    # softmax or sums ran in bf16 (errors of several %), or if autocast were not on at all (results identical)
    from eelab.model import EarlyExitLM, ModelConfig
    from eelab.losses import fused_linear_cross_entropy
    from eelab.train import _autocast, _lm_loss
    torch.manual_seed(0)
    model = EarlyExitLM(ModelConfig(vocab_size=2000, dim=32, num_heads=2, n_layers=2, exit_layers=(2,)))
    batch = (torch.randint(0, 2000, (8, 16)), torch.randint(0, 2000, (8, 16)))
    out = {}
    for precision in ("fp32", "bf16"):
        model.zero_grad(set_to_none=True)
        with _autocast("cpu", precision): loss = _lm_loss(2)(model, batch)
        loss.backward()
        out[precision] = loss, {n: p.grad.clone() for n, p in model.named_parameters()}
    (l32, g32), (l16, g16) = out["fp32"], out["bf16"]
    assert l16.dtype == torch.float32 and l16.item() != l32.item()
    assert abs(l16.item() - l32.item()) / l32.item() < 0.01
    rel = {n: ((g16[n] - g).norm() / g.norm()).item() for n, g in g32.items()}
    assert 0 < max(rel.values()) < 0.05, rel
    # the fused loss under autocast against the fp32 reference loss on the same (bf16-rounded) inputs
    h, w = torch.randn(64, 32), torch.randn(2000, 32)
    y = torch.randint(0, 2000, (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16): fused = fused_linear_cross_entropy(h, w, y)
    exact = torch.nn.functional.cross_entropy(h.bfloat16().float() @ w.bfloat16().float().t(), y)
    assert abs(fused.item() - exact.item()) < 1e-3 * exact.item()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_public_train_step_equals_the_old_private_path(precision):
    # issue 20: the benchmark times train.TrainStep; one step must be the trainer's old sequence (autocast,
    # loss, zero_grad, backward, clip, fused AdamW), to the bit: same loss, same parameters afterwards
    from eelab.model import EarlyExitLM, ModelConfig
    from eelab.train import TrainStep, _adamw, _autocast, _lm_loss
    mc = ModelConfig(vocab_size=60, dim=16, num_heads=2, n_layers=2, exit_layers=(2,))
    torch.manual_seed(3)
    new, old = EarlyExitLM(mc), EarlyExitLM(mc)
    old.load_state_dict(new.state_dict())
    batches = [(torch.randint(0, 60, (4, 8)), torch.randint(0, 60, (4, 8))) for _ in range(3)]
    step = TrainStep(new, _lm_loss(2), lr=1e-2, weight_decay=0.1, grad_clip=0.5, precision=precision)
    params = [p for p in old.parameters() if p.requires_grad]
    opt = _adamw(params, 1e-2, 0.1)
    for batch in batches:                                              # the old _run_epoch, written out
        with _autocast("cpu", precision): ref = _lm_loss(2)(old, batch)
        opt.zero_grad(set_to_none=True)
        ref.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()
        assert step(batch).item() == ref.item()
    for a, b in zip(new.parameters(), old.parameters()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(new.parameters(), EarlyExitLM(mc).parameters()))


def test_train_cli_prints_a_table_and_json_behind_a_flag(tmp_path, monkeypatch, capsys):
    # issue 19: a readable table (no raw JSON, no 16-digit floats); --json gives JSON; a joint run has no
    # phantom phase 2 (it used to report phase1/phase2 seconds with phase2: 0.0)
    import json
    from eelab.train import main
    monkeypatch.setenv("EELAB_DATA", str(tmp_path))
    main(["--config", "smoke", "--recipe", "joint", "--no-progress"])
    table = capsys.readouterr().out
    assert "deep (layer 4)" in table and "Hard PPL" in table and "time: joint" in table
    assert "phase2" not in table and "{" not in table
    main(["--config", "smoke", "--recipe", "joint", "--no-progress", "--json"])   # loads the saved run
    out = capsys.readouterr().out
    printed = json.loads(out[out.index("{"):])
    assert list(printed["seconds"]) == ["joint", "evaluation", "total"]
    assert printed["reported"]["split"] == "test"
