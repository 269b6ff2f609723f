"""Dropout ensemble (paper Sec. 4.3, masks m6-7): which style does one ensemble member keep?

Dropout trains a net as an ensemble: each training step sees a random half of fc6 and fc7.
Fixing one such 50% mask pair picks one member; visualizing the class through it shows that
member's style. The paper samples 2 mask pairs x 2 random inits and sees that the mask decides
the style (pose, species, layout, scale) more than the init does.

Each member starts from the blurred mean of the class images it favours most: those whose class
score it raises most over the full net's (Nguyen et al.'s facet-seeded starts, with the member's
favourites as its facet). With noise starts the init decided the layout and every member drew the
same motif; now a member's inits share its start and differ only by their noise. Whether the
favourites are a taste, not chance, is measured apart (`favourites_beat_random`: how many random
sets of as many class images are less alike in fc7; on the demo world, the planted styles they share).

A globally pooled net has no fc6: its member is one mask on the pooled vector (fc7), which is
exactly where MobileNet and EfficientNet drop out in training (ResNet, RegNet and ConvNeXt have
no dropout at all; `dropout_in_training` in the numbers says which levels the net drops out).

Tuning notes: docs/tuning.md#ensemble
"""
from __future__ import annotations

import math
from dataclasses import asdict
from itertools import combinations
from typing import Any, Mapping

import torch
from torch import Tensor

from generator.engine.solve import solve
from generator.methods import ClassContext, EnsembleParams, MethodResult, Picture, spec
from generator.methods.common import (
    class_database,
    class_problem,
    coarse_mean,
    cosine_distances,
    distribution_layers,
    distribution_term,
    engine_settings,
    fc7_of,
    mean_pairwise,
    nearest_exemplars,
    seen_under,
    with_distribution,
)
from generator.nets.families import pathway_words
from generator.nets.pathway import Pathway, as_gates
from generator.records import Cell, refs

SPEC = spec("ensemble")
VERSION = SPEC.version
DEFAULTS: dict[str, Any] = SPEC.defaults()
MASK_SEED_OFFSET = 1000  # mask seeds never coincide with init seeds
FACET_SIDE = 8  # a member start's blur, as the topics' facet starts


def dropout_mask(units: int, keep: float, seed: int) -> Tensor:
    """A training-time dropout mask: exactly round(keep * units) units kept and scaled by
    1 / keep (inverted dropout), drawn from `seed` alone (so anyone can rebuild the mask of a
    picture from its recorded mask_seed)."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"ensemble: keep must be in (0, 1], got {keep}")
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(units)
    mask[torch.randperm(units, generator=generator)[: round(keep * units)]] = 1.0 / keep
    return mask


def mask_pair(fc6_dim: int | None, fc7_dim: int, keep: float, seed: int) -> tuple[Tensor | None, Tensor]:
    """(m6, m7) of one ensemble member; m7 uses the next seed so the two are independent.
    A net without fc6 (globally pooled) has no m6: its member is the m7 mask on the pooled vector."""
    return None if fc6_dim is None else dropout_mask(fc6_dim, keep, seed), dropout_mask(fc7_dim, keep, seed + 1)


def member_masks(pathway: Pathway, at: str, keep: float, seed: int) -> dict[str, Tensor]:
    """One member's masks: the paper's (m6, m7), or one per level the net dropped out in training
    (torchvision's AlexNet drops pool5 and fc6, the *inputs* of fc6 and fc7), level i from seed + i
    (members are 2 seeds apart, as many as the two levels AlexNet and VGG drop)."""
    if at == "paper" or not pathway.dropout_at:
        m6, m7 = mask_pair(pathway.fc6_dim, pathway.fc7_dim, keep, seed)
        return {"m7": m7} if m6 is None else {"m6": m6, "m7": m7}

    def shape(level: str) -> tuple[int, ...]:
        if level == "pool5":
            return pathway.pool5_shape
        dim = pathway.fc6_dim if level == "fc6" else pathway.fc7_dim
        assert dim is not None  # dropout_at names fc6 only on a net that has it
        return (dim,)

    names = {"pool5": "m5", "fc6": "m6", "fc7": "m7"}
    return {names[level]: dropout_mask(math.prod(shape(level)), keep, seed + i).view(shape(level))
            for i, level in enumerate(pathway.dropout_at)}


@torch.no_grad()
def member_favourites(pathway: Pathway, pool5: Tensor, class_index: int, member: dict[str, Tensor], k: int,
                      context: Tensor | None = None) -> list[int]:
    """The k class images (given by their pool5, and the context a class-token ViT's head needs)
    whose class score the member raises most over the full net's: what this sub-network sees in
    the class that the ensemble as a whole weighs less."""
    device = pathway.mean.device
    pool5 = pool5.to(device)
    context = None if context is None else context.to(device)
    full = pathway.head(pool5, None, context).fc8[:, class_index]
    masked = pathway.head(pool5, {level: mask.to(device) for level, mask in as_gates(member).items()}, context).fc8[:, class_index]
    return (masked - full).topk(min(k, len(pool5))).indices.sort().values.tolist()


RANDOM_SUBSETS = 1000


def beats_random(distances: Tensor, chosen: list[int], seed: int) -> float:
    """Share of random subsets of the same size (seeded) whose mean pairwise distance is larger than
    the chosen images' (ties count half): 0.5 when they are as alike as chance has it."""
    generator = torch.Generator().manual_seed(seed)
    n, k = distances.shape[0], len(chosen)
    spread = mean_pairwise(distances[chosen][:, chosen])
    subsets = torch.stack([torch.randperm(n, generator=generator)[:k] for _ in range(RANDOM_SUBSETS)])
    spreads = distances[subsets[:, :, None], subsets[:, None, :]].sum((1, 2)) / (k * (k - 1))
    return float((spreads > spread).float().mean() + 0.5 * (spreads == spread).float().mean())


def mean_distance(distances: Tensor, pairs: list[tuple[int, int]]) -> float | None:
    """Mean of distances[i, j] over the given index pairs (None when there are none, e.g. one
    mask only: JSON has no NaN)."""
    if not pairs:
        return None
    return float(torch.stack([distances[i, j] for i, j in pairs]).mean())


def ratio(across_masks: float | None, across_inits: float | None) -> float | None:
    """across masks / across inits (None when either is missing or the inits did not differ)."""
    if across_masks is None or not across_inits:
        return None
    return across_masks / across_inits


def run(ctx: ClassContext, values: EnsembleParams | Mapping[str, Any] = EnsembleParams()) -> MethodResult:
    params: EnsembleParams = SPEC.typed(values)
    pathway = ctx.pathway
    n_masks, n_inits, keep = params.masks, params.inits, params.keep
    prior = class_database(ctx, params.prior)
    # mask seed 2 apart: each pair uses (seed, seed + 1) for m6 and m7.
    cells = [
        {"mask": m, "init": i, "mask_seed": ctx.seed + MASK_SEED_OFFSET + 2 * m, "init_seed": ctx.seed + i}
        for m in range(n_masks)
        for i in range(n_inits)
    ]
    # the engine's coarse and mid steps cost the members their differences (docs/speed.md#coarse-steps):
    # without `coarse`, none of the engine's, only the ensemble's own mid steps where it sets them
    small: dict[str, int] = {}
    if not params.coarse:
        small["coarse_size"] = 0
        if params.mid_size is None:
            small["mid_size"] = 0
    settings = engine_settings(ctx, asdict(params), **small)
    members = [member_masks(pathway, params.at, keep, ctx.seed + MASK_SEED_OFFSET + 2 * m) for m in range(n_masks)]
    favourites: list[list[int]] = []  # per member: the class images its start is the blurred mean of
    if params.init == "member" or params.distribution > 0:
        favourites = [member_favourites(pathway, ctx.features.pool5, ctx.class_index, member, params.member_images,
                                        ctx.features.context) for member in members]
    layers = distribution_layers(pathway, params.distribution_layers)
    held = [distribution_term(pathway, ctx.images[f], params.distribution, layers) for f in favourites] \
        if params.distribution > 0 else [None] * len(members)
    seeded = params.init == "member"
    problems = []
    for cell in cells:
        member = members[cell["mask"]]
        init = None
        if seeded:
            init = coarse_mean(ctx.images[favourites[cell["mask"]]], FACET_SIDE, settings.init_std, seed=cell["init_seed"])
        problems.append(with_distribution(
            class_problem(pathway, settings, ctx.class_index, database=prior, gates=as_gates(member),
                          seed=cell["init_seed"], init=init, label=f"mask {cell['mask']} init {cell['init']}"),
            held[cell["mask"]],
        ))
    solutions = solve(pathway, problems, settings, progress=ctx.progress)

    images = torch.stack([s.image for s in solutions])
    exemplars = nearest_exemplars(ctx, images)
    masked = pathway_words(pathway)["dropped"]  # "fc6 and fc7", "the pooled vector (fc7)", "the class token (fc7)"
    pictures = [
        Picture(
            key=f"mask{c['mask']}-init{c['init']}",
            image=s.image,
            caption=(
                f"{ctx.class_name} through dropout member {c['mask'] + 1} (random {keep:.0%} of {masked}), "
                f"random init {c['init'] + 1}" + (", patch prior" if prior is not None else "")
                + (f"; started from the blurred mean of the {len(favourites[c['mask']])} class images this member "
                   "favours most over the full net (under init 1)" if seeded else "")
                + (f"; its feature distribution held to those images' (weight {params.distribution:g})"
                   if params.distribution > 0 else "")
                + seen_under(asdict(params), settings)
            ),
            alt=f"Visualization of {ctx.class_name} by one dropout sub-network, init {c['init'] + 1}",
            numbers={"score": s.numbers["score"], "prob": s.numbers["prob"]},
            meta=Cell(row=c["mask"], column=c["init"], row_seed=c["mask_seed"], column_seed=c["init_seed"],
                      diverged=s.diverged, exemplars=nearest, notes={"keep": keep},
                      starts=refs(favourites[c["mask"]]) if seeded and c["init"] == 0 else ()),
        )
        for c, s, nearest in zip(cells, solutions, exemplars)
    ]

    across_masks = [(a, b) for a, b in combinations(range(len(cells)), 2)
                    if cells[a]["init"] == cells[b]["init"] and cells[a]["mask"] != cells[b]["mask"]]
    across_inits = [(a, b) for a, b in combinations(range(len(cells)), 2)
                    if cells[a]["mask"] == cells[b]["mask"] and cells[a]["init"] != cells[b]["init"]]
    fc7_distances = cosine_distances(fc7_of(pathway, images))
    flat = images.flatten(1)
    pixel_distances = torch.cdist(flat, flat) / flat.shape[1] ** 0.5  # RMS pixel difference
    numbers: dict[str, Any] = {}
    for space, distances in (("fc7", fc7_distances), ("pixel", pixel_distances)):
        numbers[f"{space}_across_masks"] = mean_distance(distances, across_masks)
        numbers[f"{space}_across_inits"] = mean_distance(distances, across_inits)
        numbers[f"{space}_ratio"] = ratio(numbers[f"{space}_across_masks"], numbers[f"{space}_across_inits"])
    if favourites:  # is a member's taste a style? its favourites against random class images, in fc7
        class_fc7 = cosine_distances(ctx.features.fc7)
        numbers["favourites"] = favourites
        numbers["favourites_spread"] = sum(mean_pairwise(class_fc7[f][:, f]) for f in favourites) / len(favourites)
        numbers["class_spread"] = mean_pairwise(class_fc7)  # = the expected spread of a random subset
        numbers["favourites_coherence"] = ratio(numbers["class_spread"], numbers["favourites_spread"])  # > 1: alike
        numbers["favourites_beat_random"] = sum(beats_random(class_fc7, f, ctx.seed) for f in favourites) / len(favourites)
    numbers |= {
        "masked": list(pathway.masks[1:]),  # m6 and m7, or m7 alone on a net without fc6
        "dropout_in_training": list(pathway.dropout_at),  # where the net itself was trained with dropout
        "fc7_metric": "mean fc7 cosine distance (unmasked net)",
        "pixel_metric": "mean RMS pixel difference in [0, 1]",
    }
    return MethodResult(method="ensemble", params=params, seed=ctx.seed, pictures=pictures, numbers=numbers)
