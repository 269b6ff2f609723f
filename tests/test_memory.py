"""generator.nets.memory: freed tensor memory stays in the process (glibc only)."""
from __future__ import annotations

import platform

import pytest

from generator.nets import memory


def test_keep_freed_memory_is_accepted_by_glibc_and_idempotent():
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt thresholds are a glibc feature")
    assert memory.keep_freed_memory() is True
    assert memory.keep_freed_memory() is True  # a second call changes nothing and still says so
