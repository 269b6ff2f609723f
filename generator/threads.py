"""How a build uses the CPU's threads on a machine that other processes share.

Torch splits each operation among its OpenMP threads and waits for all of them at its end. By
default an OpenMP thread that has finished spins for its next piece of work; when another
process wants the same core, the spinning threads and the competitor take turns on it. On a
2-core machine where other processes ran, two threads took 165-881 ms per image of MobileNet-v2's
forward + backward with the default policy, against 46-78 ms with OMP_WAIT_POLICY=PASSIVE, where
waiting threads sleep; with PASSIVE, two threads beside a competing CPU-bound process ran within
1.05x of two threads without it, and faster than one thread (benchmarks/threads.py). So a build
keeps torch's thread count and only changes how idle threads wait: the summation order, and with
it the pictures, do not depend on the machine's load.

libgomp reads its environment when torch is first imported, so `generator/__init__.py` calls
`passive_wait()` before anything imports torch; a policy the user has set is kept.
"""
from __future__ import annotations

import os


def passive_wait() -> None:
    """OMP_WAIT_POLICY=PASSIVE unless already set; effective only before torch is imported."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def use_threads(requested: int | None = None) -> int:
    """Set torch's thread count to `requested` (None: keep torch's own, one per physical core);
    returns the count in use."""
    import torch

    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be at least 1, not {requested}")
        torch.set_num_threads(requested)
    return torch.get_num_threads()
