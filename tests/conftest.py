"""Shared fixtures: the real data in ../shared (skipped cleanly without it), the demo world in a
per-session cache, the builders of helpers.py, the fake atlases of benchmarks/fake_atlas.py and
the page reader of pagecheck.py (tests never import each other; they ask for these fixtures)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import helpers
import pagecheck
from benchmarks import fake_atlas

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATLAS_SHARED", REPO.parent / "shared"))


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that asks for the demo world is marked `trains`: its net is trained in the
    session, so its numbers move with the CPU kernel (CI reruns `-m trains` under another one)."""
    for item in items:
        if "demo_world" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.trains)


@pytest.fixture(scope="session", autouse=True)
def atlas_cache(tmp_path_factory) -> Path:
    """ATLAS_CACHE for the whole session (subprocesses inherit it): a fresh temporary folder, so
    tests never read or write the user's ~/.cache. ATLAS_TEST_CACHE names a folder to reuse
    instead (the demo world then trains once across sessions)."""
    reuse = os.environ.get("ATLAS_TEST_CACHE")
    cache = Path(reuse) if reuse else tmp_path_factory.mktemp("atlas-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATLAS_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path to ../shared (real Imagenette images and the trained alexnet-slim), or skip."""
    if not (SHARED / "models" / "alexnet-slim-imagenette.pt").is_file():
        pytest.skip(f"../shared not found at {SHARED} (real-data tests run only where it exists)")
    return SHARED


@pytest.fixture(scope="session")
def shared_pathway(shared):
    """The trained alexnet-slim of ../shared as a Pathway (model output order: Imagenette's)."""
    return helpers.shared_pathway(shared)


@pytest.fixture(scope="session")
def demo_world(atlas_cache):
    """The offline demo world and its trained CNN, made once per session in its ATLAS_CACHE."""
    from generator.demo import ensure_demo

    return ensure_demo(progress=False)


# Builders (functions: tests call them with the sizes and seeds they need).

@pytest.fixture(scope="session")
def tiny_alexnet():
    """helpers.tiny_alexnet(size=96, num_classes=4, seed=0, dropout=True) -> Pathway."""
    return helpers.tiny_alexnet


@pytest.fixture(scope="session")
def tiny_vit():
    """helpers.tiny_vit(size=32, patch=8, num_classes=4, seed=0) -> Pathway of a random 2-block ViT."""
    return helpers.tiny_vit


@pytest.fixture(scope="session")
def smooth_images():
    """helpers.smooth_images(n, size=32, seed=0) -> (n, 3, size, size) in [0, 1]."""
    return helpers.smooth_images


@pytest.fixture(scope="session")
def demo_net():
    """helpers.demo_net(size=48, classes=4, seed=0): a random narrow net of the demo architecture."""
    return helpers.demo_net


@pytest.fixture(scope="session")
def tiny_context():
    """helpers.tiny_context(n=8, size=48, seed=0, engine=None) -> ClassContext on random images."""
    return helpers.tiny_context


@pytest.fixture(scope="session")
def demo_context():
    """helpers.demo_context(world, class_id, n=30, engine=None, seed=0) -> a demo class's ClassContext."""
    return helpers.demo_context


@pytest.fixture(scope="session")
def wnids() -> tuple[str, ...]:
    """The classes of the tiny build world."""
    return helpers.WNIDS


@pytest.fixture
def tiny_world(tmp_path, monkeypatch):
    """The tiny build world (helpers.make_world) with the build routed to the two fake methods."""
    from generator import build as build_module

    helpers.install_fakes(monkeypatch)
    monkeypatch.setattr(build_module, "_PATHWAYS", {})
    return helpers.make_world(tmp_path / "world")


@pytest.fixture
def fake_methods(tiny_world) -> dict:
    """The fake methods' modules by name (patch entries with monkeypatch.setitem)."""
    return helpers.FAKE_METHODS


@pytest.fixture(scope="session")
def built_files():
    """helpers.built_files(output): the built classes' files, manifests without their seconds."""
    return helpers.built_files


@pytest.fixture(scope="session")
def write_weights():
    """helpers.write_weights(path, seed): new random weights for the tiny world's net."""
    return helpers.write_weights


@pytest.fixture(scope="session")
def write_fake_atlas():
    """fake_atlas.write_fake_atlas(output, n_classes=3, ...): a schema-exact fake atlas."""
    return fake_atlas.write_fake_atlas


@pytest.fixture(scope="session")
def write_large_atlas():
    """fake_atlas.write_large_atlas(output, n_classes=1000): a fake atlas at ImageNet scale."""
    return fake_atlas.write_large_atlas


@pytest.fixture(scope="session")
def write_fake_units():
    """fake_atlas.write_fake_units(output, pool5=256, fc=4096, per_class=8, top_k=9): a fake unit atlas."""
    return fake_atlas.write_fake_units


@pytest.fixture(scope="session")
def hostile_name() -> str:
    """The class name of the fake atlas that must render as text."""
    return fake_atlas.HOSTILE_NAME


@pytest.fixture(scope="session")
def pages():
    """pagecheck.pages(output) -> the atlas's HTML pages."""
    return pagecheck.pages


@pytest.fixture(scope="session")
def parse():
    """pagecheck.parse(path) -> a PageChecker (balance errors, links, images, ids, text)."""
    return pagecheck.parse


@pytest.fixture
def units_world(tiny_world):
    """The tiny build world with the unit atlas on, sized to take seconds (3 steps, top 4)."""
    import dataclasses

    from generator.units import UnitsParams

    return dataclasses.replace(tiny_world, units=UnitsParams(iterations=3, texture_iterations=3, top_k=4, per_class=2))


@pytest.fixture(scope="session")
def make_world():
    """helpers.make_world(root, images_per_class=3) -> Catalog: the tiny build world (model file,
    weights, image folder) without the fake methods, for tests that build with the real ones."""
    return helpers.make_world


@pytest.fixture(scope="session")
def tree_state():
    """helpers.tree_state(root) -> {relative path: sha256 / link target / kind}: compare two to
    prove nothing below `root` changed."""
    return helpers.tree_state


@pytest.fixture(scope="session")
def deadline():
    """helpers.deadline(seconds): a context manager that raises TimeoutError in its block
    after `seconds` (for commands that might block on a FIFO)."""
    return helpers.deadline
