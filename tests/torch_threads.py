"""Torch held to one thread, for the tests whose tensors are tiny."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_torch_thread() -> Iterator[None]:
    # Tensors this small gain nothing from a second thread, which on a busy two-core machine spins
    # for twenty times the CPU time of the work.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
