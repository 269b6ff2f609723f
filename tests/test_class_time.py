"""benchmarks/class_time.py and benchmarks/engine_profile.py on a tiny net: the image-iterations a
solve runs are counted exactly, and a profiled solve's time is split among the engine's parts."""
from __future__ import annotations

import torch

from benchmarks import engine_profile
from benchmarks.class_time import IterationCounter
from generator.engine import solve as solve_module
from generator.engine.patch_database import PatchDatabase
from generator.engine.patch_prior import PatchPrior
from generator.engine.settings import Settings
from generator.engine.solve import Problem, solve
from generator.engine.terms import L2, TV, ClassScore

SETTINGS = Settings(iterations=4, prior_stride=8)  # the engine's Fourier parameterization and transforms


def problems(database: PatchDatabase) -> list[Problem]:
    terms = ClassScore(1) + 30.0 * L2() + 300.0 * TV()
    return [Problem(terms + [PatchPrior(database, stride=8, normalize="photos")], seed=s) for s in range(3)]


def database(size: int) -> PatchDatabase:
    photos = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    return PatchDatabase.from_images(photos, patch=5, stride=4, max_patches=500, search_dims=8, normalize="photos")


def test_the_counter_sees_every_optimization_step_and_nothing_else(tiny_alexnet) -> None:
    pathway = tiny_alexnet(size=64)
    counter = IterationCounter(pathway)
    solve(pathway, problems(database(64)), SETTINGS, progress=False)
    with torch.no_grad():
        pathway(torch.rand(5, 3, 64, 64))  # a plain forward (features, the final evaluation) is no iteration
    counter.close()
    assert dict(counter.batches) == {3: 4} and counter.images == 12
    solve(pathway, problems(database(64))[:1], SETTINGS, progress=False)
    assert counter.images == 12  # closed: it counts no more


def test_the_profile_charges_a_solve_to_the_engine_parts(tiny_alexnet) -> None:
    pathway = tiny_alexnet(size=64)
    setup = problems(database(64))
    undo = engine_profile.instrument()
    engine_profile._wrap(solve_module, "solve", "engine:solve", undo)
    try:
        seconds, parts, unknown = engine_profile.profiled(
            lambda: solve_module.solve(pathway, setup, SETTINGS, progress=False))
    finally:
        engine_profile.restore(undo)
    assert solve_module.solve is solve  # restored
    assert seconds > 0 and set(parts) <= set(engine_profile.PARTS)
    for part in ("model", "parameterization", "transforms", "prior", "regularizers", "optimizer"):
        assert parts.get(part, 0.0) > 0, part
    assert sum(parts.values()) <= seconds * 1.01
    assert set(unknown) <= {"torch::autograd::AccumulateGrad"}
