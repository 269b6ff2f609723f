"""Topic styles (paper Sec. 4.2, mask m7): the styles a class keeps in fc7.

fc8 is linear in fc7, so the fc7 vectors of one class's images live in a cone; non-negative
matrix factorization of them, fc7 ~ loadings x basis, splits the cone into K directions
("topics": scale, angle, colour, status, content). Topic k is visualized by opening only the
fc7 units it uses, m7 = basis[k] > tau, and shown beside the images that load on it most.
On a net with an fc head, m7 also forbids, as the hierarchy's codes do: the picture pays for
activity on the units its topic closes, or every topic draws the class's common texture.
The same basis ranks any image collection by style (Sec. 5.1: `style_loadings`).
A signed fc7 (ConvNeXt's pooled vector) is factorized as its split [relu(fc7), relu(-fc7)]
(`common.nmf_input`); a topic's m7 keeps a unit when either of its halves passes tau.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import torch
from scipy.optimize import nnls
from torch import Tensor

from generator.engine.solve import solve
from generator.engine.terms import Direction, Diversity, styles
from generator.methods import ClassContext, MethodResult, Picture, TopicsParams, spec
from generator.methods.common import (
    class_database,
    class_problem,
    closed_weights,
    coarse_mean,
    cosine_distances,
    distribution_distances,
    distribution_layers,
    distribution_term,
    engine_settings,
    fc7_of,
    fit_nmf,
    patch_database,
    seen_under,
    split_signs,
    with_distribution,
)
from generator.methods.layers import layer_features
from generator.nets.pathway import Pathway
from generator.records import Topic, refs

SPEC = spec("topics")
VERSION = SPEC.version
DEFAULTS: dict[str, Any] = SPEC.defaults()  # threshold: the authors' tau 1.0 keeps ~500-1800 of 4096 units


@dataclass
class TopicModel:
    """NMF of a class's fc7: fc7 (N, D) ~ loadings.T (N, K) @ basis (K, D), plus the m7 masks.

    `rule[k]` says how mask k was made ("threshold" = the authors' tau, or "quantile" when
    fc7's scale on this model left too few units above tau) and `cutoff[k]` the value used."""

    basis: Tensor  # (K, D) >= 0: the topics as fc7 directions; (K, 2D) over [relu(fc7), relu(-fc7)] for a signed fc7
    loadings: Tensor  # (K, N) >= 0: how much each image uses each topic
    masks: Tensor  # (K, D) 0/1: m7 per topic
    rule: list[str]
    cutoff: list[float]

    @property
    def signed(self) -> bool:
        """The factorization ran on the sign split of a signed fc7."""
        return self.basis.shape[1] == 2 * self.masks.shape[1]

    @property
    def assignments(self) -> list[int]:
        """Each image's strongest topic (argmax of its loadings)."""
        return self.loadings.argmax(0).tolist()


def top_images(count: int | None, params: TopicsParams) -> str:
    """The top `count` (None: all) of a topic's retrieved images, in a caption's words."""
    count = min(count or params.retrieved, params.retrieved)
    if count == params.retrieved:
        return "its retrieved images"
    return "its top retrieved image" if count == 1 else f"its top {count} retrieved images"


def facet_start(params: TopicsParams) -> str:
    """What a facet start is the coarse mean of, in a caption's words."""
    images = top_images(params.facet_images, params)
    return images if images == "its top retrieved image" else f"the mean of {images}"


def topic_mask(
    basis_row: Tensor, threshold: float, min_units: int, keep_fraction: float
) -> tuple[Tensor, str, float]:
    """m7 for one topic: basis > threshold, or (too few units pass on this model's fc7 scale)
    the top `keep_fraction` of the topic's non-zero units. Returns (mask, rule, cutoff)."""
    mask = basis_row > threshold
    if int(mask.sum()) >= min_units:
        return mask.float(), "threshold", float(threshold)
    cutoff = float(torch.quantile(basis_row.float(), 1.0 - keep_fraction))
    mask = (basis_row >= cutoff) & (basis_row > 0)
    return mask.float(), "quantile", cutoff


def topic_masks_for(
    pathway: Pathway,
    class_fc7: Tensor,
    k: int = DEFAULTS["k"],
    threshold: float = DEFAULTS["threshold"],
    min_fraction: float = DEFAULTS["min_fraction"],
    keep_fraction: float = DEFAULTS["keep_fraction"],
    seed: int = 0,
) -> TopicModel:
    """The class's topics and their m7 masks from the fc7 of its images (N, D)."""
    if class_fc7.dim() != 2 or class_fc7.shape[1] != pathway.fc7_dim:
        raise ValueError(f"topics: fc7 must be (N, {pathway.fc7_dim}), got {tuple(class_fc7.shape)}")
    basis, loadings = fit_nmf(class_fc7, k, seed)
    d = pathway.fc7_dim
    units = basis if basis.shape[1] == d else torch.maximum(basis[:, :d], basis[:, d:])  # a unit: either half
    min_units = max(1, int(round(min_fraction * d)))
    made = [topic_mask(row, threshold, min_units, keep_fraction) for row in units]
    return TopicModel(
        basis=basis,
        loadings=loadings,
        masks=torch.stack([m for m, _, _ in made]),
        rule=[r for _, r, _ in made],
        cutoff=[c for _, _, c in made],
    )


def style_loadings(basis: Tensor, collection_fc7: Tensor) -> Tensor:
    """Loadings (M, K) of any images' fc7 (M, D) on a class's topic basis (K, D): the
    non-negative least-squares projection min_h>=0 ||fc7 - h @ basis||, one image at a time.
    Ranking a collection by column k is style-based retrieval (Sec. 5.1)."""
    a = basis.detach().double().cpu().numpy().T  # (D, K), or (2D, K) for a signed fc7's split
    if basis.shape[1] == 2 * collection_fc7.shape[1]:
        collection_fc7 = split_signs(collection_fc7)
    rows = collection_fc7.detach().double().cpu().numpy()
    return torch.tensor(np.stack([nnls(a, row)[0] for row in rows]), dtype=torch.float32)


def style_retrieval(basis: Tensor, collection_fc7: Tensor, topic: int, top: int = 5) -> list[tuple[int, float]]:
    """The `top` images of a collection that load most on `topic`: [(index, loading), ...]."""
    loadings = style_loadings(basis, collection_fc7)[:, topic]
    order = torch.argsort(loadings, descending=True)[:top]
    return [(int(i), float(loadings[i])) for i in order]


def mask_distinctness(masks: Tensor) -> float:
    """Mean pairwise Jaccard distance between topic masks: 0 when every topic opens the same
    fc7 units (the topics are one style), 1 when they share none. A truth-free check that
    the factorization found different styles."""
    k = masks.shape[0]
    if k < 2:
        return 0.0
    m = masks.bool()
    distances = [
        1.0 - float((m[i] & m[j]).sum()) / max(float((m[i] | m[j]).sum()), 1.0)
        for i in range(k)
        for j in range(i + 1, k)
    ]
    return float(np.mean(distances))


def nearest_topics(picture_fc7: Tensor, topic_fc7: Tensor) -> list[int]:
    """For each topic picture, the topic whose shown images' mean fc7 is nearest (cosine).

    The check that a topic picture shows its topic *to the network*: on the shared alexnet-slim
    only 11 of 50 gated pictures were nearest to their own topic, i.e. chance (1 in 5)."""
    k = picture_fc7.shape[0]
    distances = cosine_distances(torch.cat([picture_fc7, topic_fc7]))[:k, k:]
    return distances.argmin(1).tolist()


def others_mean(table: Tensor, k: int) -> float:
    """Mean of row k of a (pictures, topics) table over the other topics (0 with one topic)."""
    others = torch.cat([table[k, :k], table[k, k + 1:]])
    return float(others.mean()) if len(others) else 0.0


FORBID_FC_HEAD = 2.5  # the hierarchy's forbid; docs/tuning.md#topic-codes-that-forbid


def topic_forbid(pathway: Pathway, forbid: float | None) -> float:
    """The closed units' cost: as given, or by layout (an fc head's topics need it to differ; a
    pooled net's pictures go silent under it)."""
    if forbid is not None:
        return float(forbid)
    return FORBID_FC_HEAD if pathway.has_fc6 else 0.0


def run(ctx: ClassContext, values: TopicsParams | Mapping[str, Any] = TopicsParams()) -> MethodResult:
    params: TopicsParams = SPEC.typed(values)
    pathway = ctx.pathway
    used = min(params.images, ctx.features.fc7.shape[0])
    topics = topic_masks_for(
        pathway,
        ctx.features.fc7[:used],
        k=params.k,
        threshold=params.threshold,
        min_fraction=params.min_fraction,
        keep_fraction=params.keep_fraction,
        seed=ctx.seed,
    )
    prior = class_database(ctx, params.prior)
    settings = engine_settings(ctx, asdict(params))
    shown = [torch.argsort(topics.loadings[k], descending=True)[: params.retrieved] for k in range(len(topics.masks))]
    forbid = topic_forbid(pathway, params.forbid)
    closed = closed_weights(forbid, ("m7",), ctx.features, ctx.class_index)
    layers = distribution_layers(pathway, params.distribution_layers)
    apart_layer = distribution_layers(pathway, params.diversity_layer)[0]
    # the pictures differ from one another in what sets them apart from the class, not in what they share with it
    class_style = styles(layer_features(pathway, ctx.images[:used], [apart_layer])[apart_layer]).mean(0) \
        if params.diversity > 0 else None
    problems = []
    for k, mask in enumerate(topics.masks):
        database = prior
        if prior is not None and params.patches == "topic":
            database = patch_database(ctx, ctx.images[shown[k]])
        init = None
        if params.init == "facet":
            init = coarse_mean(ctx.images[shown[k][: params.facet_images]], params.facet_side, settings.init_std,
                               seed=ctx.seed + k)
        problem = class_problem(pathway, settings, ctx.class_index, database=database, gates={"fc7": mask}, init=init,
                                closed=closed, seed=ctx.seed, label=f"topic {k}")
        if params.direction > 0:
            style = ctx.features.fc7[shown[k]].mean(0) - ctx.features.fc7[:used].mean(0)
            problem.terms = [*problem.terms, Direction(style, "fc7", weight=params.direction)]
        if params.distribution > 0:
            with_distribution(problem, distribution_term(pathway, ctx.images[shown[k][: params.distribution_images]],
                                                         params.distribution, layers))
        if params.diversity > 0:
            problem.terms = [*problem.terms, Diversity(apart_layer, among=ctx.class_id, centre=class_style,
                                                       weight=params.diversity)]
        problems.append(problem)
    solutions = solve(pathway, problems, settings, progress=ctx.progress)

    drawn = torch.stack([s.image for s in solutions])
    nearest = nearest_topics(fc7_of(pathway, drawn), torch.stack([ctx.features.fc7[order].mean(0) for order in shown]))
    # each picture's feature statistics against its own topic's images and the other topics'
    apart = distribution_distances(pathway, drawn, [ctx.images[order] for order in shown], layers)
    pictures = []
    for k, solution in enumerate(solutions):
        order = shown[k]
        retrieved = refs([int(i) for i in order], loading=[float(topics.loadings[k, i]) for i in order])
        units = int(topics.masks[k].sum())
        pictures.append(
            Picture(
                key=f"topic-{k}",
                image=solution.image,
                caption=(
                    f"{ctx.class_name}, fc7 topic {k + 1} of {len(solutions)}: only its {units} fc7 units "
                    f"open (m7, {topics.rule[k]} cutoff {topics.cutoff[k]:.3g})"
                    + ("" if prior is None else ", patch prior from " + (
                        "its retrieved images" if params.patches == "topic" else "the class's images"))
                    + (f", started from {facet_start(params)} blurred to {params.facet_side} px" if params.init == "facet" else "")
                    + (f", the fc7 units it closes forbidden (weight {forbid:g})" if forbid > 0 else "")
                    + (f", pushed along its images' fc7 direction (weight {params.direction:g})"
                       if params.direction > 0 else "")
                    + (f", its {', '.join(layers)} feature distribution held to {top_images(params.distribution_images, params)}' (weight "
                       f"{params.distribution:g})" if params.distribution > 0 else "")
                    + (f", set apart from the class's other topic pictures in its {apart_layer} style (weight "
                       f"{params.diversity:g})" if params.diversity > 0 else "")
                    + seen_under(asdict(params), settings)
                    + (f", then {settings.detail_steps} steps in raw pixels" if settings.detail_steps else "")
                    + ("; fc7 is signed, so NMF factorized [relu(fc7), relu(-fc7)] and m7 keeps a unit when "
                       "either half passes the cutoff" if topics.signed else "")
                ),
                alt=f"Visualization of one style (topic {k + 1}) of {ctx.class_name}",
                numbers={"score": solution.numbers["score"], "prob": solution.numbers["prob"], "units": units,
                         "nearest_topic": nearest[k] + 1, "distribution_own": float(apart[k, k]),
                         "distribution_others": others_mean(apart, k)},
                meta=Topic(topic=k, units=units, retrieved=retrieved, diverged=solution.diverged,
                           notes={"rule": topics.rule[k], "cutoff": topics.cutoff[k]}),
            )
        )
    numbers = {
        "assignments": topics.assignments,  # per image index (ctx.images[:images]): argmax topic
        "images": used,
        "units": [int(m.sum()) for m in topics.masks],
        "rules": topics.rule,
        "distinctness": mask_distinctness(topics.masks),
        "forbid": forbid,
        # does each picture show its topic? (fraction nearest to its own topic's images; chance 1/K)
        "picture_match": sum(n == k for k, n in enumerate(nearest)) / max(len(nearest), 1),
        # the pictures' feature statistics nearer their own topic's images than the others' (chance 1/K)
        "distribution_match": float((apart.argmin(1) == torch.arange(len(apart))).float().mean()),
        "distribution_layers": layers,
    }
    if topics.signed:  # only then: the records of post-ReLU nets stay as they were
        numbers["nmf_input"] = "[relu(fc7), relu(-fc7)]: fc7 is signed"
    return MethodResult(method="topics", params=params, seed=ctx.seed, pictures=pictures, numbers=numbers)

