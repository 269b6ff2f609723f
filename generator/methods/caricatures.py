"""Caricatures (Mahendran & Vedaldi): what one layer sees in an image, exaggerated.

Starting from the class image x0, minimize -<phi(x), phi0> / ||phi0||^2 + alpha-norm + TV: the
image is pushed to excite the units that x0 already excites, in proportion to how much it
excites them (the engine's `Direction` term with weight 1 / ||phi0||). The gain
<phi(x), phi0> / ||phi0||^2 says how far the layer's own pattern was amplified (1 at the start).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from generator.engine import recipes
from generator.engine.settings import RAW_PIXELS
from generator.engine.solve import Problem, solve
from generator.engine.terms import Direction
from generator.methods import CaricaturesParams, ClassContext, MethodResult, Picture, spec
from generator.methods.common import engine_settings, model_mean
from generator.methods.layers import feature_layers, layer_features
from generator.records import Step

SPEC = spec("caricatures")
VERSION = SPEC.version
DEFAULTS: dict[str, Any] = SPEC.defaults()


def chosen_layers(available: dict[str, str], wanted: str) -> dict[str, str]:
    """The comma list's layers this net has, in the net's order (unknown names are skipped)."""
    names = {name.strip() for name in wanted.split(",") if name.strip()}
    return {name: key for name, key in available.items() if name in names}


def gain(features: torch.Tensor, target: torch.Tensor) -> float:
    """<phi(x), phi0> / ||phi0||^2: 1 for the image itself, larger when its pattern is amplified."""
    return float((features.flatten() * target.flatten()).sum() / target.pow(2).sum().clamp_min(1e-12))


def run(ctx: ClassContext, values: CaricaturesParams | Mapping[str, Any] = CaricaturesParams()) -> MethodResult:
    params: CaricaturesParams = SPEC.typed(values)
    pathway = ctx.pathway
    layers = chosen_layers(feature_layers(pathway), str(params.layers))
    if not layers:
        raise ValueError(f"caricatures: none of the layers {params.layers!r} exists in this net "
                         f"(it has {', '.join(feature_layers(pathway))})")
    count = min(params.images, len(ctx.images))
    originals = ctx.images[:count]
    targets = layer_features(pathway, originals, list(layers.values()))
    settings = engine_settings(ctx, {}, **RAW_PIXELS, iterations=params.iterations, lr=params.lr,
                               tv=params.tv, alpha_norm=params.alpha_norm, l2=0.0,
                               jitter=params.jitter, prior_weight=0.0)  # spatial targets
    regularizers = recipes.regularizers(settings, model_mean(pathway))
    problems = []
    for i in range(count):
        for name, key in layers.items():
            target = targets[key][i]
            amplify = Direction(target, key, weight=1.0 / float(target.norm().clamp_min(1e-12)))
            problems.append(Problem([amplify, *regularizers], init=originals[i], seed=ctx.seed + i, label=f"{i}:{name}"))
    solutions = solve(pathway, problems, settings, progress=ctx.progress)
    reached = layer_features(pathway, torch.stack([s.image for s in solutions]), list(layers.values()))

    pictures: list[Picture] = []
    gains: dict[str, list[float]] = {name: [] for name in layers}
    for i in range(count):
        pictures.append(Picture(key=f"img{i}-original", image=originals[i],
                                caption=f"{ctx.class_name} image {i}: the starting point of its caricatures",
                                alt=f"Class image {i} of {ctx.class_name}", meta=Step(image=i, step="original")))
    for row, solution in enumerate(solutions):
        image, name = solution.label.split(":")
        i = int(image)
        amplified = gain(reached[layers[name]][row], targets[layers[name]][i])
        gains[name].append(amplified)
        pictures.append(Picture(
            key=f"img{i}-{name}", image=solution.image,
            caption=f"Caricature of {ctx.class_name} image {i} at {name}: its own {name} pattern amplified "
            f"{amplified:.3g}x ({settings.iterations} iterations, alpha-norm + TV)",
            alt=f"A {ctx.class_name} image with what {name} detects in it exaggerated",
            numbers={"gain": amplified}, meta=Step(image=i, step=name, diverged=solution.diverged),
        ))
    numbers = {"layers": list(layers), "gain": {name: sum(v) / len(v) for name, v in gains.items()}}
    return MethodResult(method="caricatures", params=params, seed=ctx.seed, pictures=pictures, numbers=numbers)
