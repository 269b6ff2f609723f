"""Class visualization (Sec. 3): the baseline [10] (L2 + TV) beside the same problem with the
data-driven patch prior built from the class's own images, solved in one batch from the same
init and settings, so the prior is the only difference between the two pictures.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Mapping

import torch

from generator.engine.solve import solve
from generator.methods import ClassContext, ClassvizParams, MethodResult, Picture, spec
from generator.methods.common import (
    class_prior,
    class_problem,
    distribution_layers,
    distribution_term,
    engine_settings,
    nearest_exemplars,
    seen_under,
    with_distribution,
)
from generator.methods.metrics import colour_distance, colour_distance_per_photo
from generator.records import Meta

SPEC = spec("classviz")
VERSION = SPEC.version
DEFAULTS: dict[str, Any] = SPEC.defaults()


def run(ctx: ClassContext, values: ClassvizParams | Mapping[str, Any] = ClassvizParams()) -> MethodResult:
    params: ClassvizParams = SPEC.typed(values)
    settings = engine_settings(ctx, asdict(params))
    database = class_prior(ctx)
    references = ctx.images[: ctx.prior.images]
    layers = distribution_layers(ctx.pathway, params.distribution_layers)
    held = (distribution_term(ctx.pathway, references, params.distribution, layers)
            if params.distribution > 0 else None)  # the prior picture only: the baseline stays the paper's
    problems = [
        class_problem(ctx.pathway, settings, ctx.class_index, seed=ctx.seed, label="baseline"),
        with_distribution(class_problem(ctx.pathway, settings, ctx.class_index, database=database, seed=ctx.seed,
                                        label="prior"), held),
    ]
    baseline, prior = solve(ctx.pathway, problems, settings, progress=ctx.progress)
    exemplars = nearest_exemplars(ctx, torch.stack([baseline.image, prior.image]))
    pictures = []
    numbers: dict[str, Any] = {}
    for solution, nearest, what in (
        (baseline, exemplars[0], "L2 + TV regularizers only (baseline [10])"),
        (prior, exemplars[1], f"L2 + TV + the patch prior from {len(references)} {ctx.class_name} images"
         + (f" + their {', '.join(layers)} feature distribution (weight {params.distribution:g})" if held else "")),
    ):
        colour = colour_distance(solution.image, references)
        picture_numbers = {"prob": solution.numbers["prob"], "score": solution.numbers["score"], "colour_distance": colour,
                           "colour_distance_per_photo": colour_distance_per_photo(solution.image, references)}
        pictures.append(
            Picture(
                key=solution.label,
                image=solution.image,
                caption=f"{ctx.class_name}: class score maximized with {what}; "
                f"p = {solution.numbers['prob']:.2f}, {settings.iterations} iterations"
                + (f" and {settings.detail_steps} in raw pixels" if settings.detail_steps else "")
                + seen_under(asdict(params), settings),
                alt=f"Synthesized image that the network classifies as {ctx.class_name}, made with {what}",
                numbers=picture_numbers,
                meta=Meta(diverged=solution.diverged, exemplars=nearest, notes={"iterations": settings.iterations}),
            )
        )
        numbers.update({f"{solution.label}_{k}": v for k, v in picture_numbers.items()})
    for measure in ("colour_distance", "colour_distance_per_photo"):
        ratio = numbers[f"prior_{measure}"] / max(numbers[f"baseline_{measure}"], 1e-12)
        numbers[measure.replace("distance", "ratio")] = ratio
    return MethodResult(method="classviz", params=params, seed=ctx.seed, pictures=pictures, numbers=numbers)
