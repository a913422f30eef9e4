"""Tiny random eelab models whose exits agree with the top on some tokens, not all or none (shared)."""
import random

import torch

from eelab.model import EarlyExitLM, ModelConfig


def random_model(seed, min_layers: int = 2):
    "A tiny random model, upper layers' outputs scaled so its exits agree on some tokens, not all or none."
    rng = random.Random(seed)
    heads, n_layers = rng.choice([1, 2, 4]), rng.randint(min_layers, 5)
    exits = sorted(set(rng.sample(range(1, n_layers), rng.randint(1, n_layers - 1))) | {n_layers})
    mc = ModelConfig(vocab_size=rng.choice([13, 40, 97]), dim=heads * rng.choice([4, 8]), num_heads=heads,
                     n_layers=n_layers, exit_layers=tuple(exits), norm=rng.choice(["post", "pre"]),
                     tie_embeddings=rng.random() < 0.3, separate_heads=rng.random() < 0.4)
    torch.manual_seed(seed)
    model = EarlyExitLM(mc).eval()
    scale = rng.uniform(1.0, 4.0) if mc.norm == "pre" else rng.uniform(0.1, 1.0)
    with torch.no_grad():
        for block in model.layers[exits[0]:]:
            block.attn.proj.weight.mul_(scale)
            block.ffn.down.weight.mul_(scale)
    return model, rng
