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


def peaky_model():
    "(model, prompt): 4 layers, exits 1 and 4, heads scaled 2.5x (peakier than a random init's)."
    torch.manual_seed(0)
    mc = ModelConfig(vocab_size=12, dim=16, num_heads=2, n_layers=4, exit_layers=(1, 4), separate_heads=True)
    model = EarlyExitLM(mc).eval()
    with torch.no_grad():
        for e in (1, 4): model.head(e).proj.weight.mul_(2.5)
    return model, torch.tensor([[3, 1, 4, 1, 5]])
