"""Pre-images at every layer (Mahendran & Vedaldi, natural pre-images): what each layer keeps of
an image.

For a class image x0 and each layer phi (conv1 ... fc8), an image x is optimized from noise to
minimize ||phi(x) - phi0||^2 / ||phi0||^2 + alpha-norm + TV. All layers of all images are one
batch of one `solve`. Each pre-image is reported with its normalized feature error (the data
term itself, measured again without jitter) and its pixel error ||x - x0|| / ||x0||: deeper
layers keep less of the pixels (the pixel error rises) while the feature error can stay small.
"""
from __future__ import annotations

from statistics import fmean as mean
from typing import Any, Mapping

import torch

from generator.engine.settings import RAW_PIXELS, Settings
from generator.engine.solve import solve
from generator.engine.terms import feature_inversion
from generator.methods import ClassContext, MethodResult, Picture, PreimagesParams, spec
from generator.methods.common import engine_settings, inversion_problem
from generator.methods.layers import feature_layers, layer_features
from generator.records import Step

SPEC = spec("preimages")
VERSION = SPEC.version
DEFAULTS: dict[str, Any] = SPEC.defaults()


def pixel_error(original: torch.Tensor, estimate: torch.Tensor) -> float:
    """||x0 - x|| / ||x0|| on [0, 1] pixels."""
    return float((original - estimate).norm() / original.norm().clamp_min(1e-12))


def preimage_settings(ctx: ClassContext, params: PreimagesParams) -> Settings:
    """The catalog's engine section with the method's own optimizer and regularizer weights:
    no L2 (the alpha-norm bounds the pixels) and no patch prior."""
    return engine_settings(ctx, {}, **RAW_PIXELS, iterations=params.iterations, lr=params.lr,
                           tv=params.tv, alpha_norm=params.alpha_norm, l2=0.0,
                           jitter=params.jitter, feature_weight=1.0, prior_weight=0.0)  # spatial targets


def run(ctx: ClassContext, values: PreimagesParams | Mapping[str, Any] = PreimagesParams()) -> MethodResult:
    params: PreimagesParams = SPEC.typed(values)
    pathway = ctx.pathway
    count = min(params.images, len(ctx.images))
    originals = ctx.images[:count]
    layers = feature_layers(pathway)
    targets = layer_features(pathway, originals, list(layers.values()))
    settings = preimage_settings(ctx, params)
    problems = [inversion_problem(pathway, settings, targets[key][i], layer=key, seed=ctx.seed + i, label=f"{i}:{name}")
                for i in range(count) for name, key in layers.items()]
    solutions = solve(pathway, problems, settings, progress=ctx.progress)

    pictures: list[Picture] = []
    feature: dict[str, list[float]] = {name: [] for name in layers}
    pixel: dict[str, list[float]] = {name: [] for name in layers}
    for i in range(count):
        name_of = ctx.image_names[i] if i < len(ctx.image_names) else f"image {i}"
        pictures.append(Picture(key=f"img{i}-original", image=originals[i],
                                caption=f"{ctx.class_name} image {i} ({name_of}): the image whose features are inverted",
                                alt=f"Class image {i} of {ctx.class_name}", meta=Step(image=i, step="original")))
        found = [s for s in solutions if s.label.startswith(f"{i}:")]
        reached = layer_features(pathway, torch.stack([s.image for s in found]), list(layers.values()))
        for row, (solution, (name, key)) in enumerate(zip(found, layers.items())):
            error = float(feature_inversion(reached[key][row : row + 1], targets[key][i : i + 1]))
            distance = pixel_error(originals[i], solution.image)
            feature[name].append(error)
            pixel[name].append(distance)
            pictures.append(Picture(
                key=f"img{i}-{name}", image=solution.image,
                caption=f"Pre-image of {ctx.class_name} image {i} at {name}: feature error {error:.3g}, "
                f"pixel error {distance:.3g} ({settings.iterations} iterations, alpha-norm + TV)",
                alt=f"Reconstruction of a {ctx.class_name} image from its {name} features",
                numbers={"feature_error": error, "pixel_error": distance},
                meta=Step(image=i, step=name, diverged=solution.diverged),
            ))
    numbers: dict[str, Any] = {
        "layers": list(layers),
        "feature_error": {name: mean(v) for name, v in feature.items()},
        "pixel_error": {name: mean(v) for name, v in pixel.items()},
        # the layers whose mean feature error stays below 0.1 (M&V's protocol reaches it there)
        "below_0_1": [name for name, v in feature.items() if mean(v) < 0.1],
    }
    return MethodResult(method="preimages", params=params, seed=ctx.seed, pictures=pictures, numbers=numbers)
