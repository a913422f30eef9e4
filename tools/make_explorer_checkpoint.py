"""Regenerate eelab/assets/explorer-small.safetensors (+ .tokenizer.json): the explorer's shipped checkpoint.

    python tools/make_explorer_checkpoint.py            # ~1-3 minutes on 2 CPU cores

Trains with eelab's own two-phase recipe (clean) on the offline Shakespeare corpus with a small
byte-level BPE vocabulary, then copies the phase-2 model and its tokenizer into eelab/assets/ so that
`eelab.explorer.load_explorer_model()` needs no corpus, no download and no training.
"""
from __future__ import annotations
import argparse, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eelab.config import ExperimentConfig  # noqa: E402  (after the sys.path line above)
from eelab.checkpoint import save_model  # noqa: E402
from eelab.train import train_two_phase  # noqa: E402

EXPLORER_CONFIG = dict(corpus="shakespeare", tokenizer="bpe", vocab_size=2000, seq_len=32, dim=64,
                       num_heads=4, phase1_samples=4000, eval_samples=500, batch_size=64, recipe="clean",
                       phase1_max_epochs=4, phase1_patience=1, phase2_max_epochs=2, phase2_patience=1,
                       phase1_lr=3e-3, phase2_lr=1e-3, device="cpu", seed=0)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "eelab" / "assets" / "explorer-small.safetensors"))
    args = ap.parse_args(argv)
    cfg = ExperimentConfig(**EXPLORER_CONFIG)
    t0 = time.perf_counter()
    run = train_two_phase(cfg, progress=False)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    rep = run.metrics["reported"]
    save_model(out, run.model, threshold=run.threshold, config=cfg.to_dict(), reported=rep,
               training_seconds=run.seconds, tool="tools/make_explorer_checkpoint.py")
    run.corpus.tokenizer.save(out.with_name(out.name.replace(".safetensors", ".tokenizer.json")))
    out.with_suffix(".json").unlink(missing_ok=True)     # the JSON twin is redundant: metadata is in the file
    size_mb = out.stat().st_size / 1e6
    print(f"wrote {out} ({size_mb:.2f} MB), threshold {run.threshold:.4f}, "
          f"{'reused' if run.reused else 'trained'} in {seconds:.0f} s; reported {rep}")

if __name__ == "__main__": main()
