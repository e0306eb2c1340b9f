"""Shared test settings: small, deterministic, CPU-first."""

from collections.abc import Iterator

import pytest
import torch

# Two cores here; tests use tiny shapes, and one thread keeps results reproducible.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread_again() -> Iterator[None]:
    """Training sets torch's process-wide thread count (--threads); no test leaks it to the next."""
    yield
    torch.set_num_threads(1)
