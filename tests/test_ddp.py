"""DistributedDataParallel under torchrun (issue 11 §2): 2 gloo processes make the updates of one."""
import glob, os, subprocess, sys
import pytest, torch
from eelab.checkpoint import read_checkpoint

ARGS = ["--config", "smoke", "--recipe", "clean", "--set", "phase1_max_epochs=1", "phase2_max_epochs=1",
        "--no-progress"]


def _train(tmp_path, name, launcher):
    env = {**os.environ, "EELAB_DATA": str(tmp_path / name), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, "-m", "eelab.train", *ARGS], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    folder = glob.glob(str(tmp_path / name / "checkpoints" / "*"))[0]
    files = {p: os.path.join(folder, f"{p}.safetensors") for p in ("phase1", "phase2")}
    return done.stdout, {p: read_checkpoint(f) for p, f in files.items()}


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")
def test_two_gloo_processes_reach_the_weights_of_one(tmp_path):
    # breaks if gradients are not all-reduced (each process would follow its own half batch), if the batch
    # split overlaps or drops rows, or if clean phase 2's token weights were normalised per process
    one_out, one = _train(tmp_path, "one", [sys.executable])       # the same CLI, one process
    two_out, two = _train(tmp_path, "two", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                            "--nproc_per_node=2"])
    assert "in 2 process(es)" in two_out and "in 1 process(es)" in one_out
    for phase in ("phase1", "phase2"):
        (a, _), (b, _) = one[phase], two[phase]
        assert a.keys() == b.keys()
        diff = max((a[k] - b[k]).abs().max().item() for k in a)
        assert diff < 1e-5, (phase, diff)
