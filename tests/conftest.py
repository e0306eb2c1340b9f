"""Shared test settings: small, deterministic, CPU-first."""

import torch

# Two cores here; tests use tiny shapes, and one thread keeps results reproducible.
torch.set_num_threads(1)
