"""Seeded random number generators: every random choice takes one explicitly."""
from __future__ import annotations

import random

import numpy as np


def make_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A numpy Generator from a seed (or the generator itself)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy's legacy global state and torch (for code we do not control)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass


def torch_generator(seed: int):
    """A seeded ``torch.Generator`` on the CPU."""
    import torch

    g = torch.Generator()
    g.manual_seed(seed)
    return g
