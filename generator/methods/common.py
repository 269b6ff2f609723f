"""What the methods share: their engine settings and problems, the class's patch database,
the fc7 space in which they compare pictures with real images, and its NMF topics. Methods import each other
never; what two of them need lives here."""
from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import Tensor

from generator.engine import recipes
from generator.engine.settings import Settings, settings_from
from generator.engine.solve import Problem
from generator.engine.terms import (
    BANDS,
    ClassScore,
    ClosedActivity,
    FeatureDistribution,
    FeatureMatch,
    Term,
    reference_distribution,
    sliced_distance,
)
from generator.methods import ClassContext
from generator.nets.pathway import MASKS, Activations, Pathway
from generator.records import ImageRef, refs

# id(ctx.images) -> (weak reference to those images, {params key: PatchDatabase})
_PRIOR_CACHE: dict[int, tuple[weakref.ref[Tensor], dict[tuple[Any, ...], Any]]] = {}


def engine_settings(ctx: ClassContext, params: dict[str, Any], **overrides: Any) -> Settings:
    """Settings from the catalog's engine section, then the method's non-None `iterations` / `lr` /
    `scale` / `jitter` / `mid_size` / `mid_until` / `prior_weight` / `detail_steps` params, then
    explicit overrides."""
    names = ("iterations", "lr", "scale", "jitter", "mid_size", "mid_until", "prior_weight", "detail_steps")
    from_params = {k: params[k] for k in names if params.get(k) is not None}
    return settings_from(ctx.engine, **{**from_params, **overrides})


def seen_under(params: dict[str, Any], settings: Settings) -> str:
    """The caption's words for a method's own zoom and shift (its `scale` / `jitter`), "" when both
    are unset: a reader should know the net saw the picture under other transforms than the engine's."""
    scale, jitter = getattr(settings, "scale"), getattr(settings, "jitter")  # transform knobs: fields made at import
    parts = []
    if params.get("scale") is not None and scale:
        parts.append(f"a {1 - scale:g}-{1 + scale:g}x zoom")
    if params.get("jitter") is not None and jitter:
        parts.append(f"shifts of up to {jitter} px")
    return ", seen under " + " and ".join(parts) if parts else ""


def class_prior(ctx: ClassContext) -> Any:
    """The class's PatchDatabase (normalized patches of its first `ctx.prior.images` images), as
    the catalog's `prior:` section declares it; built once per class and database parameters
    (cached while ctx.images lives), so every method of a class shares one database."""
    p = ctx.prior
    key = (p.images, p.patch, p.stride, p.max_patches, ctx.seed, p.search_dims, settings_from(ctx.engine).prior_normalize)
    entry = _PRIOR_CACHE.get(id(ctx.images))
    if entry is None or entry[0]() is not ctx.images:
        forget = lambda _, ident=id(ctx.images): _PRIOR_CACHE.pop(ident, None)  # noqa: E731
        entry = _PRIOR_CACHE[id(ctx.images)] = (weakref.ref(ctx.images, forget), {})
    cache = entry[1]
    if key not in cache:
        cache[key] = patch_database(ctx, ctx.images[: p.images])
    return cache[key]


def patch_database(ctx: ClassContext, images: Tensor) -> Any:
    """A patch database of `images` cut as the catalog's `prior:` section says (e.g. one topic's
    retrieved images: a prior that pulls toward that style's colours and textures)."""
    from generator.engine.patch_database import PatchDatabase

    p = ctx.prior
    return PatchDatabase.from_images(images, patch=p.patch, stride=p.stride, max_patches=p.max_patches,
                                     seed=ctx.seed, search_dims=p.search_dims,
                                     normalize=settings_from(ctx.engine).prior_normalize)


def coarse_mean(images: Tensor, side: int, noise: float, seed: int) -> Tensor:
    """The mean of `images` blurred to side x side and back, plus Gaussian noise of std `noise`:
    a start that holds a facet's layout and colours but none of its detail (Nguyen et al. 2016)."""
    size = images.shape[-1]
    small = torch.nn.functional.interpolate(images.float(), size=(side, side), mode="area")
    coarse = torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False).mean(0)
    generator = torch.Generator().manual_seed(seed)
    return (coarse + noise * torch.randn(coarse.shape, generator=generator)).clamp(0.02, 0.98)


def class_database(ctx: ClassContext, prior: bool) -> Any:
    """The class's patch database, or None when the method's `prior` parameter is off."""
    if not prior:
        return None
    return class_prior(ctx)


def model_mean(pathway: Pathway) -> tuple[float, ...]:
    """The model's mean colour: the centre of L2 (the authors' ||I||^2 is on mean-subtracted input)."""
    return tuple(float(v) for v in pathway.mean.flatten())


def closed_weights(
    forbid: float, masks: tuple[str, ...], features: Activations, class_index: int
) -> dict[str, float] | None:
    """Per-level weights of the closed-unit activity (terms.ClosedActivity) for a code that fixes
    `masks` (m5, m6, m7), so that a closed level firing at the class images' mean activity costs
    `forbid` times their mean class score (0 for the levels the code leaves open). Normalized twice
    because nets differ by orders of magnitude: the demo net's class scores average 20-60 and its
    activities 0.3-3, the shared alexnet-slim's 2-4 and 0.1. The activity is the mean magnitude: the
    same as the mean after a ReLU, and a scale for a signed level too (a class token or pooled vector
    after a LayerNorm averages ~0, which would make the weight ~1e6). None when forbid is 0."""
    if not forbid:
        return None
    score = max(float(features.fc8[:, class_index].mean()), 1e-6)
    activity = {"m5": features.pool5, "m6": features.fc6, "m7": features.fc7}
    return {
        MASKS[name]: forbid * score / max(float(values.abs().mean()), 1e-6) if name in masks else 0.0
        for name, values in activity.items() if values is not None
    }


def class_problem(pathway: Pathway, settings: Settings, class_index: int, *, database: Any = None,
                  closed: dict[str, float] | None = None, **fields: Any) -> Problem:
    """E_class: the class score, the Settings' regularizers, the patch prior when there is a
    database, and the closed-unit activity when `closed` weights (level -> weight) are given."""
    terms: list[Term] = [ClassScore(class_index), *recipes.regularizers(settings, model_mean(pathway))]
    terms += recipes.prior(database, settings)
    if closed is not None:
        terms.append(ClosedActivity(closed))
    return Problem(terms, **fields)


def inversion_problem(pathway: Pathway, settings: Settings, target: Tensor, *, layer: str = "pool5",
                      database: Any = None, **fields: Any) -> Problem:
    """E_inv: match `target` at `layer`, with the Settings' regularizers and optional prior."""
    terms: list[Term] = [settings.feature_weight * FeatureMatch(target, layer),
                         *recipes.regularizers(settings, model_mean(pathway))]
    return Problem(terms + recipes.prior(database, settings), **fields)


def distribution_layers(pathway: Pathway, text: str) -> list[str]:
    """The layer keys of a comma list for the feature-distribution term: the names
    `layers.feature_layers` gives (conv1 ... conv5 of an fc net, pool5, [fc6,] fc7, fc8; a name
    this net lacks is skipped, as the caricatures skip theirs) or a module of the pathway
    ("features.7"), or the picture's own difference-of-Gaussian bands (band0 ... band3; "bands": all four)."""
    from generator.methods.layers import feature_layers

    named = feature_layers(pathway)
    keys: list[str] = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        if name == "bands" or name in BANDS:
            keys.extend(BANDS if name == "bands" else [name])
        elif name in named:
            keys.append(named[name])
        elif not (name.startswith("conv") or name in ("fc6", "fc7", "fc8", "pool5")):
            try:
                pathway.get_submodule(name)
            except AttributeError:
                raise ValueError(f"distribution_layers: {name!r} is neither a layer name nor a module of this net") from None
            keys.append(name)
    return list(dict.fromkeys(keys))


def distribution_term(pathway: Pathway, references: Tensor, weight: float, layers: list[str]) -> FeatureDistribution:
    """The feature-distribution term (terms.FeatureDistribution) that holds a picture to the
    features of `references` (N, 3, S, S) at `layers`, each layer weighted 1."""
    from generator.methods.layers import layer_features

    return FeatureDistribution(layer_features(pathway, references, layers), weight=weight)


def with_distribution(problem: Problem, term: FeatureDistribution | None) -> Problem:
    """The problem with the term added (unchanged when there is none)."""
    if term is not None:
        problem.terms = [*problem.terms, term]
    return problem


@torch.no_grad()
def distribution_distances(pathway: Pathway, pictures: Tensor, references: list[Tensor], layers: list[str]) -> Tensor:
    """(pictures, reference sets): each picture's sliced feature-distribution distance to each
    set's (terms.sliced_distance, the mean over `layers`): how far a picture's statistics are
    from its own reference images' and from the others'."""
    from generator.methods.layers import layer_features

    found = layer_features(pathway, pictures, layers)
    sets = [layer_features(pathway, images, layers) for images in references]
    table = torch.zeros(len(pictures), len(references))
    for key in layers:
        for j, reference in enumerate(sets):
            target = reference_distribution(reference[key].float())
            table[:, j] += sliced_distance(found[key].float(), target.expand(len(pictures), *target.shape))
    return table / max(len(layers), 1)


@torch.no_grad()
def fc7_of(pathway: Pathway, images: Tensor) -> Tensor:
    """fc7 of images through the *unmasked* net (CPU): the common space in which the
    intra-class methods compare their results to each other and to real images."""
    return pathway(images.to(pathway.mean.device)).fc7.cpu()


EXEMPLARS = 3  # real class images shown beside a synthetic picture


def nearest_exemplars(ctx: ClassContext, pictures: Tensor, k: int = EXEMPLARS) -> list[tuple[ImageRef, ...]]:
    """For each picture, the k class images nearest it in fc7 (cosine, unmasked net): the real
    images that explain what the picture draws (its record's `exemplars`)."""
    unit = torch.nn.functional.normalize
    distances = 1.0 - unit(fc7_of(ctx.pathway, pictures), dim=1) @ unit(ctx.features.fc7.float(), dim=1).T
    nearest = [torch.argsort(row)[:k] for row in distances]
    return [refs(top.tolist(), distance=row[top].tolist()) for row, top in zip(distances, nearest)]


def cosine_distances(features: Tensor) -> Tensor:
    """(N, N) matrix of 1 - cos between rows; an all-zero row is at distance 1 from everything."""
    unit = features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (1.0 - unit @ unit.T).clamp_min(0.0)


def mean_pairwise(distances: Tensor) -> float:
    """Mean of the off-diagonal entries of a square distance matrix (0 for fewer than 2 items)."""
    n = distances.shape[0]
    if n < 2:
        return 0.0
    return float((distances.sum() - distances.diagonal().sum()) / (n * (n - 1)))


def split_signs(fc7: Tensor) -> Tensor:
    """[relu(x), relu(-x)] (N, 2D): the standard non-negative split of a signed code."""
    return torch.cat([fc7.clamp_min(0), (-fc7).clamp_min(0)], 1)


def nmf_input(fc7: Tensor) -> Tensor:
    """fc7 as NMF needs it, non-negative. AlexNet/VGG's fc7 and most pooled vectors (ResNet, RegNet,
    MobileNet v2) are post-ReLU and go in as they are; a signed one (ConvNeXt's pooled vector comes
    after a LayerNorm; EfficientNet's SiLU and MobileNet v3's Hardswish dip below 0) goes in split,
    so that a unit's negative values are a direction of their own instead of being clipped away."""
    return split_signs(fc7) if bool((fc7 < 0).any()) else fc7


def fit_nmf(fc7: Tensor, k: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """basis (K, D), loadings (K, N) with nmf_input(fc7) ~ loadings.T @ basis; a signed fc7 gives a
    (K, 2D) basis over its split. Deterministic: nndsvda init (SVD-based, no randomness for a given
    input) and a fixed random_state."""
    import numpy as np
    from sklearn.decomposition import NMF

    data = nmf_input(fc7.detach()).double().cpu().numpy()
    if data.shape[0] < k:
        raise ValueError(f"topics: {k} topics need at least {k} images, got {data.shape[0]}")
    if not np.isfinite(data).all():
        raise ValueError("topics: fc7 must be finite for NMF")
    model = NMF(n_components=k, init="nndsvda", random_state=seed, max_iter=1000, tol=1e-5)
    loadings = model.fit_transform(data)  # (N, K)
    return torch.from_numpy(model.components_).float(), torch.from_numpy(loadings.T.copy()).float()


def topic_of_each_image(fc7: Tensor, k: int, seed: int = 0) -> list[int]:
    """Each image's strongest NMF topic (0-based), as the topics method numbers them: the
    diagnostics colour and compare images by it. k is capped at the number of images."""
    _, loadings = fit_nmf(fc7, min(k, fc7.shape[0]), seed)
    return loadings.argmax(0).tolist()
