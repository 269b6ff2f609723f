"""Class visualization (Sec. 3): the baseline [10] (L2 + TV) beside the same problem with the
data-driven patch prior built from the class's own images, solved in one batch from the same
init and settings, so the prior is the only difference between the two pictures.

Also home of two helpers the other methods reuse: `engine_settings` (the method's engine
Settings from ctx.engine + params) and `class_prior` (the class's PatchDatabase, built once).
"""
from __future__ import annotations

import weakref
from typing import Any

from generator.energy import colour_distance
from generator.methods import ClassContext, MethodResult, Picture
from generator.optimize import Problem, Settings, settings_from, solve

VERSION = 1
DEFAULTS: dict[str, Any] = {
    "prior_images": 50,  # how many of the class's images feed the patch database
    "patch": 7,  # patch side (pixels)
    "stride": 4,  # patch stride for the database and for the image's patches
    "max_patches": 5_000,  # database size cap: exact matching costs queries x size (5k matched 20k in tuning)
    "search_dims": 32,  # match on the database's first 32 principal components (4.6x cheaper than D = 147)
    "iterations": None,  # None: the engine default (Settings.iterations)
    "prior_weight": None,  # None: the engine default (Settings.prior_weight)
}

# id(ctx.images) -> (weak reference to those images, {params key: PatchDatabase})
_PRIOR_CACHE: dict[int, tuple[weakref.ref, dict[tuple, Any]]] = {}


def engine_settings(ctx: ClassContext, params: dict[str, Any], **overrides: Any) -> Settings:
    """Settings from the catalog's engine section, then the method's non-None `iterations` /
    `prior_weight` params, then explicit overrides."""
    from_params = {k: params[k] for k in ("iterations", "prior_weight") if params.get(k) is not None}
    return settings_from(ctx.engine, **{**from_params, **overrides})


def class_prior(ctx: ClassContext, params: dict[str, Any] | None = None):
    """The class's PatchDatabase (normalized patches of its first `prior_images` images).

    Built once per class and parameter set (cached while ctx.images lives), so every method
    of a class shares one database."""
    from generator.prior import PatchDatabase

    p = {**DEFAULTS, **(params or {})}
    key = (int(p["prior_images"]), int(p["patch"]), int(p["stride"]), int(p["max_patches"]), ctx.seed, p["search_dims"])
    entry = _PRIOR_CACHE.get(id(ctx.images))
    if entry is None or entry[0]() is not ctx.images:
        forget = lambda _, ident=id(ctx.images): _PRIOR_CACHE.pop(ident, None)  # noqa: E731
        entry = _PRIOR_CACHE[id(ctx.images)] = (weakref.ref(ctx.images, forget), {})
    cache = entry[1]
    if key not in cache:
        images = ctx.images[: key[0]]
        cache[key] = PatchDatabase.from_images(
            images, patch=key[1], stride=key[2], max_patches=key[3], seed=ctx.seed, search_dims=p["search_dims"]
        )
    return cache[key]


def run(ctx: ClassContext, params: dict[str, Any]) -> MethodResult:
    params = {**DEFAULTS, **params}
    settings = engine_settings(ctx, params)
    database = class_prior(ctx, params)
    problems = [
        Problem(target_class=ctx.class_index, seed=ctx.seed, label="baseline"),
        Problem(target_class=ctx.class_index, seed=ctx.seed, prior=database, label="prior"),
    ]
    baseline, prior = solve(ctx.pathway, problems, settings, progress=ctx.progress)
    references = ctx.images[: int(params["prior_images"])]
    pictures = []
    numbers: dict[str, Any] = {}
    for solution, what in (
        (baseline, "L2 + TV regularizers only (baseline [10])"),
        (prior, f"L2 + TV + the patch prior from {len(references)} {ctx.class_name} images"),
    ):
        colour = colour_distance(solution.image, references)
        picture_numbers = {"prob": solution.prob, "score": solution.score, "colour_distance": colour}
        pictures.append(
            Picture(
                key=solution.label,
                image=solution.image,
                caption=f"{ctx.class_name}: class score maximized with {what}; "
                f"p = {solution.prob:.2f}, {settings.iterations} iterations",
                alt=f"Synthesized image that the network classifies as {ctx.class_name}, made with {what}",
                numbers=picture_numbers,
                meta={"diverged": solution.diverged, "iterations": settings.iterations},
            )
        )
        numbers.update({f"{solution.label}_{k}": v for k, v in picture_numbers.items()})
    numbers["colour_ratio"] = numbers["prior_colour_distance"] / max(numbers["baseline_colour_distance"], 1e-12)
    return MethodResult(method="classviz", params=params, seed=ctx.seed, pictures=pictures, numbers=numbers)
