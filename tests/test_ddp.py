"""DistributedDataParallel under torchrun (issue 11 §2): 2 gloo processes make the updates of one, and a
killed-and-resumed 2-process run ends where a straight 1-process run does."""
import glob, os, subprocess, sys
import pytest, torch
from eelab.checkpoint import read_checkpoint

ARGS = ["--config", "smoke", "--recipe", "clean", "--no-progress", "--set", "phase1_max_epochs=2",
        "phase1_patience=0", "phase2_max_epochs=1"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _train(data, launcher, *extra):
    env = {**os.environ, "EELAB_DATA": str(data), "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, "-m", "eelab.train", *ARGS, *extra], env=env, capture_output=True,
                          text=True, timeout=150)


def _weights(data):
    folder = glob.glob(str(data / "checkpoints" / "*"))[0]
    return {p: read_checkpoint(os.path.join(folder, f"{p}.safetensors"))[0] for p in ("phase1", "phase2")}


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")
def test_killed_and_resumed_two_process_run_reaches_the_weights_of_one_process(tmp_path):
    # breaks if gradients are not all-reduced (each process would follow its own half batch), if the batch
    # split overlaps or drops rows, if clean phase 2's token weights were normalised per process, or if a
    # resumed DDP run did not restore the model and AdamW state that rank 0 saved after epoch 1
    one = _train(tmp_path / "one", [sys.executable])                       # the same CLI, one process
    assert one.returncode == 0 and "in 1 process(es)" in one.stdout, one.stderr[-3000:]
    killed = _train(tmp_path / "two", TORCHRUN, "--interrupt-after", "phase1=45")   # in phase 1's epoch 2
    assert killed.returncode != 0 and "TrainingInterrupted" in killed.stderr, killed.stderr[-3000:]
    assert glob.glob(str(tmp_path / "two" / "checkpoints" / "*" / "phase1.progress.safetensors"))
    resumed = _train(tmp_path / "two", TORCHRUN)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "in 2 process(es)" in resumed.stdout and "resumed after epoch 1" in resumed.stdout
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for phase in ("phase1", "phase2"):
        assert a[phase].keys() == b[phase].keys()
        diff = max((a[phase][k] - b[phase][k]).abs().max().item() for k in a[phase])
        assert diff < 1e-5, (phase, diff)
