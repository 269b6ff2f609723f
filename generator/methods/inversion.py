"""Pool5 inversion (paper Sec. 5.1, Table 1): does the patch prior bring an inversion closer
to the image it came from?

Each image's pool5 (C x 6 x 6) is inverted three ways, all with IDENTICAL engine settings:

    "rand"   [8]+rand  random init, L2 + TV                   (Mahendran & Vedaldi)
    "avg"    [8]+[7]   init from the retrieved patch average, L2 + TV
    "prior"  ours      init from the same average, L2 + TV + the patch prior whose database
                       is the retrieved patches (the paper's setup: only the prior differs
                       from [8]+[7])

plus "retrieved", the [7] average itself (no optimization). The retrieval database pairs
pool5 1x1 features with the centre patches of their receptive fields in *other* natural
images (`generator.methods.retrieval.Pool5Retrieval`). Errors: image error ||I0 - I||_2 / ||I0||_2 on
[0, 1] pixels, feature error ||phi(I) - phi0|| / ||phi0||.
"""
from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Mapping

import torch
from torch import Tensor

from generator.engine.settings import RAW_PIXELS, Settings, settings_from
from generator.engine.solve import Problem, solve
from generator.methods import ClassContext, InversionParams, MethodResult, Picture, spec
from generator.methods.common import inversion_problem
from generator.methods.retrieval import Pool5Retrieval
from generator.nets.pathway import Pathway
from generator.records import Step

SPEC = spec("inversion")
VERSION = SPEC.version
DEFAULTS: dict[str, Any] = SPEC.defaults()

# Engine settings for pool5 inversion, the same for every variant (declared with the method's
# parameters in generator/methods/__init__.py). Tuning notes: docs/tuning.md#inversion
ENGINE_FIELDS = ("iterations", "lr", "feature_weight", "l2", "tv", "prior_weight", "prior_stride", "rematch_every",
                 "jitter", "schedule")
# Table 1's protocol is the paper's: raw pixels, and no transform but the jitter (a pool5 target
# is spatial: padding, scaling or turning the picture would misalign it with its target).
INVERSION_SETTINGS: dict[str, Any] = {
    **{name: DEFAULTS[name] for name in ENGINE_FIELDS}, **RAW_PIXELS, "prior_normalize": "image"}

VARIANTS = ("rand", "avg", "prior")
CAPTIONS = {
    "original": "the image whose pool5 is inverted",
    "retrieved": "[7]: average of the {k} nearest centre patches per pool5 cell (no optimization)",
    "rand": "[8]+rand: pool5 inversion from a random init with L2 + TV",
    "avg": "[8]+[7]: pool5 inversion from the retrieved average with L2 + TV",
    "prior": "ours: same as [8]+[7] plus the patch prior over the retrieved patches",
}


def inversion_settings(engine: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> Settings:
    """Catalog engine settings, overridden by INVERSION_SETTINGS (inversion has its own energy
    scale), overridden by the method's params of the same names."""
    from_params = {k: v for k, v in (params or {}).items() if k in INVERSION_SETTINGS and v is not None}
    return settings_from(engine, **{**INVERSION_SETTINGS, **from_params})


def image_error(original: Tensor, estimate: Tensor) -> float:
    """||I0 - I||_2 / ||I0||_2 on [0, 1] pixels (the paper's Table 1 metric)."""
    return float((original - estimate).norm() / original.norm().clamp_min(1e-12))


@torch.no_grad()
def _feature_errors(pathway: Pathway, images: Tensor, targets: Tensor) -> list[float]:
    device = pathway.mean.device
    pool5 = pathway.trunk(images.to(device)).cpu()
    return [float((p - t).norm() / t.norm().clamp_min(1e-12)) for p, t in zip(pool5, targets)]


def invert_pool5(
    pathway: Pathway,
    images: Tensor,
    retrieval: Pool5Retrieval,
    settings: Settings,
    variants: tuple[str, ...] = VARIANTS,
    seed: int = 0,
    k: int = 10,
    patch: int = 7,
    stride: int = 4,
    whiten: bool = False,
    progress: bool = False,
) -> dict[str, list[tuple[Tensor, float, float]]]:
    """Invert the pool5 of each image (N,3,S,S in [0,1]) with the requested variants.

    Returns variant -> [(image, image_error, feature_error)] in image order. All optimized
    variants of all images go through ONE `solve` call with the same `settings`, so they share
    every parameter; only "prior" problems carry a patch database (the engine applies the prior
    only to those). "retrieved" is the [7] average itself. Image i's random init uses seed + i.
    """
    unknown = sorted(set(variants) - {*VARIANTS, "retrieved"})
    if unknown:
        raise ValueError(f"inversion: unknown variant(s) {', '.join(unknown)}; known: rand, avg, prior, retrieved")
    images = images.float().cpu()
    with torch.no_grad():
        targets = pathway.trunk(images.to(pathway.mean.device)).cpu()
    needs_retrieval = any(v in variants for v in ("avg", "prior", "retrieved"))
    retrieved = [retrieval.retrieve(t, k=k, patch=patch, stride=stride, whiten=whiten) for t in targets] if needs_retrieval else []

    problems: list[Problem] = []
    for i, target in enumerate(targets):
        for variant in variants:
            if variant == "retrieved":
                continue
            average, database = retrieved[i] if retrieved else (None, None)
            problems.append(
                inversion_problem(
                    pathway, settings, target,
                    database=database if variant == "prior" else None,
                    init=None if variant == "rand" else average,
                    seed=seed + i,
                    label=f"img{i}-{variant}",
                )
            )
    solutions = {s.label: s for s in solve(pathway, problems, settings, progress=progress)}

    results: dict[str, list[tuple[Tensor, float, float]]] = {v: [] for v in variants}
    if "retrieved" in variants:
        averages = torch.stack([average for average, _ in retrieved])
        for i, error in enumerate(_feature_errors(pathway, averages, targets)):
            results["retrieved"].append((averages[i], image_error(images[i], averages[i]), error))
    for i in range(len(images)):
        for variant in variants:
            if variant == "retrieved":
                continue
            solution = solutions[f"img{i}-{variant}"]
            error = math.nan if solution.diverged else image_error(images[i], solution.image)
            results[variant].append((solution.image, error, solution.numbers["feature_error"]))
    return results


def summarize(results: dict[str, list[tuple[Tensor, float, float]]]) -> dict[str, float]:
    """Mean and std of image and feature error per variant (diverged runs count as nan)."""
    numbers: dict[str, float] = {}
    for variant, rows in results.items():
        for column, name in ((1, "image_error"), (2, "feature_error")):
            values = torch.tensor([row[column] for row in rows], dtype=torch.float64)
            numbers[f"{name}_{variant}"] = float(values.mean())
            numbers[f"{name}_{variant}_std"] = float(values.std()) if len(values) > 1 else 0.0
    return numbers


def run(ctx: ClassContext, values: InversionParams | Mapping[str, Any] = InversionParams()) -> MethodResult:
    params: InversionParams = SPEC.typed(values)
    count = params.images
    if count < 1:
        raise ValueError(f"inversion: images must be >= 1, got {count}")
    if len(ctx.images) < count + 1:
        raise ValueError(
            f"inversion: needs more than {count} images of the class (the rest form the retrieval database), "
            f"has {len(ctx.images)}"
        )
    originals = ctx.images[:count]
    database_images = ctx.images[count : count + params.database_images]
    retrieval = Pool5Retrieval.from_images(ctx.pathway, database_images, progress=False)
    settings = inversion_settings(ctx.engine, asdict(params))
    results = invert_pool5(
        ctx.pathway,
        originals,
        retrieval,
        settings,
        variants=("retrieved", *VARIANTS),
        seed=ctx.seed,
        k=params.k,
        patch=params.patch,
        stride=params.stride,
        whiten=params.whiten,
        progress=ctx.progress,
    )

    pictures: list[Picture] = []
    for i in range(count):
        name = ctx.image_names[i] if i < len(ctx.image_names) else f"image {i}"
        pictures.append(
            Picture(
                key=f"img{i}-original",
                image=originals[i],
                caption=f"{name}: {CAPTIONS['original']}",
                alt=f"{ctx.class_name} photo {name}",
                meta=Step(image=i, step="original"),
            )
        )
        for variant, rows in results.items():
            image, img_error, feat_error = rows[i]
            pictures.append(
                Picture(
                    key=f"img{i}-{variant}",
                    image=image,
                    caption=f"{CAPTIONS[variant].format(k=params.k)} (image error {img_error:.3f}, feature error {feat_error:.3f})",
                    alt=f"{variant} reconstruction of {ctx.class_name} photo {name} from its pool5",
                    numbers={"image_error": img_error, "feature_error": feat_error},
                    meta=Step(image=i, step=variant),
                )
            )
    numbers: dict[str, Any] = summarize(results)
    numbers["database_pairs"] = retrieval.size
    return MethodResult(method="inversion", params=params, seed=ctx.seed, pictures=pictures, numbers=numbers)
