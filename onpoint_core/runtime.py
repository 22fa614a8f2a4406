"""Device, seeding and determinism helpers shared by the three trainers.

Nothing here runs at import: environment variables and global torch settings are changed only
inside the context managers, and restored on exit, so importing the package never alters the
caller's process.
"""

from __future__ import annotations

import contextlib
import os

import torch


def pick_device(local_rank=None):
    """CUDA (the local rank's GPU under torchrun) when present, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank or 0)
    return torch.device("cpu")


@contextlib.contextmanager
def seeded(seed):
    """Fork the global torch RNGs, CUDA's included (restored on exit, so callers keep theirs), and seed them."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


@contextlib.contextmanager
def deterministic():
    """Deterministic kernels inside the block, restoring the caller's global settings after.

    cuBLAS has deterministic kernels only when CUBLAS_WORKSPACE_CONFIG is set before its first
    use, so it is set here (CUDA only) rather than at import.
    """
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    prev_fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)   # warn, not fail, where CUDA has no such kernel
    # Filling every torch.empty with NaN costs ~15% on CPU and buys nothing here (we never read it).
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.utils.deterministic.fill_uninitialized_memory = prev_fill
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev_cudnn
