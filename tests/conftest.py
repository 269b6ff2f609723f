"""Shared fixtures: the real data in ../shared (skipped cleanly without it) and the demo world."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATLAS_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path to ../shared (real Imagenette images and the trained alexnet-slim), or skip."""
    if not (SHARED / "models" / "alexnet-slim-imagenette.pt").is_file():
        pytest.skip(f"../shared not found at {SHARED} (real-data tests run only where it exists)")
    return SHARED


@pytest.fixture(scope="session")
def demo_world():
    """The offline demo world and its trained CNN, made once per machine and cached."""
    from generator.demo import ensure_demo

    return ensure_demo()
