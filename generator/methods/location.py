"""Location grid (paper Sec. 4.1, mask m5): where in the image does the class keep which part?

Open only one k x k window of pool5's spatial positions (all channels) and visualize the class
through it; one problem per window, all solved in one batch. A class that learned its parts at
fixed places ("monastery": domes at the top, doors at the bottom) gives different pictures and
different reachable scores per window; a class learned uniformly ("terrier": a head anywhere)
gives similar ones. We report both: the score each window reaches (`strongest` ranks them) and a
heterogeneity number, the mean pairwise fc7 cosine distance between the windows' images.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Mapping

import torch
from torch import Tensor

from generator.engine.solve import solve
from generator.methods import ClassContext, LocationParams, MethodResult, Picture, spec
from generator.methods.common import (
    EXEMPLARS,
    class_database,
    class_problem,
    cosine_distances,
    distribution_layers,
    distribution_term,
    engine_settings,
    fc7_of,
    mean_pairwise,
    seen_under,
    with_distribution,
)
from generator.nets.pathway import Pathway
from generator.records import ImageRef, Window, refs

SPEC = spec("location")
VERSION = SPEC.version
DEFAULTS: dict[str, Any] = SPEC.defaults()  # window, stride None: auto_window (2 on a 6x6 pool5, 3 on 7x7)


def auto_window(extent: int) -> tuple[int, int]:
    """(window, stride) of the paper's 3x3 grid on any pool5 side: the smallest window and
    stride whose three windows cover the map. On AlexNet's 6x6 that is the paper's 2x2 at
    stride 2; on the 7x7 last map of a ResNet / MobileNet / EfficientNet / ConvNeXt it is 3x3
    at stride 2 (rows 0-2, 2-4, 4-6: every cell covered, the middle row and column shared by
    two windows, the grid symmetric). The other candidates were worse: 2x2 at stride 2 on 7
    leaves a 4x4 grid whose last window overlaps the third by one cell (uneven), and 2x2 at
    stride 1 gives 36 windows of 4/49 of the map each, 4x the optimization for pictures that
    differ by one cell."""
    window = max(1, -(-extent // 3))
    stride = max(1, -(-(extent - window) // 2))
    return window, stride


def window_mask(pool5_shape: tuple[int, int, int], top: int, left: int, size: int, value: float = 1.0) -> Tensor:
    """m5 that opens only a size x size window of pool5 positions (all channels, Sec. 4.1),
    with `value` inside (see open_value) and 0 outside; on the CPU."""
    c, h, w = pool5_shape
    mask = torch.zeros(c, h, w)
    mask[:, top : top + size, left : left + size] = value
    return mask


def open_value(pathway: Pathway, size: int) -> float:
    """The value a window mask has inside. AlexNet/VGG: 1 (the paper's 0/1 m5; fc6 sees the
    window's cells at their own places). A globally pooled net averages the map, so a 0/1
    window would shrink the pooled vector to size^2 / (H*W) of its scale (9/49 for 3x3 on 7x7)
    and the class term would lose to the regularizers; H*W / size^2 makes the pooled vector
    the window's own mean: the net sees the class as if the whole map looked like the window."""
    if pathway.family != "pooled":
        return 1.0
    _, h, w = pathway.pool5_shape
    return h * w / (size * size)


def window_positions(extent: int, size: int, stride: int) -> list[int]:
    """Start offsets of windows along one pool5 axis; the last window is moved flush with the
    border so no position is left uncovered (size 3, stride 2 on 6 gives 0, 2, 3)."""
    if not 1 <= size <= extent:
        raise ValueError(f"location: window must be in [1, {extent}] (pool5 is {extent} wide), got {size}")
    if stride < 1:
        raise ValueError(f"location: stride must be >= 1, got {stride}")
    starts = list(range(0, extent - size + 1, stride))
    if starts[-1] != extent - size:
        starts.append(extent - size)
    return starts


def window_grid(pool5_shape: tuple[int, int, int], size: int, stride: int) -> list[Window]:
    """The grid of windows, row-major."""
    _, height, width = pool5_shape
    return [
        Window(row=r, col=c, top=top, left=left, size=size)
        for r, top in enumerate(window_positions(height, size, stride))
        for c, left in enumerate(window_positions(width, size, stride))
    ]


@torch.no_grad()
def window_exemplars(ctx: ClassContext, masks: list[Tensor], k: int = EXEMPLARS) -> list[tuple[ImageRef, ...]]:
    """For each window, the k class images that score highest for the class through that window
    alone: the real images that solve the same problem as the window's picture (meta "exemplars")."""
    pool5 = ctx.features.pool5.to(ctx.pathway.mean.device)
    context = None if ctx.features.context is None else ctx.features.context.to(pool5.device)
    found = []
    for mask in masks:
        scores = ctx.pathway.head(pool5, {"pool5": mask.to(pool5.device)}, context).fc8[:, ctx.class_index].cpu()
        top = torch.argsort(scores, descending=True)[:k]
        found.append(refs(top.tolist(), score=scores[top].tolist()))
    return found


def run(ctx: ClassContext, values: LocationParams | Mapping[str, Any] = LocationParams()) -> MethodResult:
    params: LocationParams = SPEC.typed(values)
    pathway = ctx.pathway
    size, stride = auto_window(pathway.pool5_shape[1])
    size = size if params.window is None else params.window
    stride = stride if params.stride is None else params.stride
    windows = window_grid(pathway.pool5_shape, size, stride)
    value = open_value(pathway, size)
    prior = class_database(ctx, params.prior)
    settings = engine_settings(ctx, asdict(params))
    masks = [window_mask(pathway.pool5_shape, w.top, w.left, w.size, value) for w in windows]
    found = window_exemplars(ctx, masks)
    layers = distribution_layers(pathway, params.distribution_layers)
    # One init for every window, so differences between the pictures come from the mask alone.
    problems = [
        with_distribution(
            class_problem(pathway, settings, ctx.class_index, database=prior, gates={"pool5": mask}, seed=ctx.seed,
                          label=f"window r{w.row} c{w.col}"),
            distribution_term(pathway, ctx.images[[r.image for r in exemplars]], params.distribution, layers)
            if params.distribution > 0 else None,
        )
        for w, mask, exemplars in zip(windows, masks, found)
    ]
    solutions = solve(pathway, problems, settings, progress=ctx.progress)

    pictures = []
    grid = "x".join(str(n) for n in pathway.pool5_shape[1:])
    prior_note = ", patch prior" if prior is not None else ""
    if params.distribution > 0:
        prior_note += f", feature distribution of its top images (weight {params.distribution:g})"
    for w, solution, exemplars in zip(windows, solutions, found):
        span = f"pool5 rows {w.top}-{w.top + w.size - 1}, cols {w.left}-{w.left + w.size - 1}"
        pictures.append(
            Picture(
                key=f"window-r{w.row}-c{w.col}",
                image=solution.image,
                caption=f"{ctx.class_name} seen only through {span} (m5 window{prior_note})"
                + seen_under(asdict(params), settings),
                alt=f"Visualization of {ctx.class_name} using only {span} of the {grid} pool5 grid",
                numbers={"score": solution.numbers["score"], "prob": solution.numbers["prob"]},
                meta=replace(w, diverged=solution.diverged, exemplars=exemplars),
            )
        )

    usable = [i for i, s in enumerate(solutions) if not s.diverged]
    strongest = sorted(usable, key=lambda i: -solutions[i].numbers["score"])
    images = torch.stack([s.image for s in solutions])
    heterogeneity = mean_pairwise(cosine_distances(fc7_of(pathway, images[usable])))
    scores = [solutions[i].numbers["score"] for i in usable]
    numbers = {
        "heterogeneity": heterogeneity,
        "heterogeneity_metric": "mean pairwise fc7 cosine distance between window images (unmasked net)",
        "strongest": [pictures[i].key for i in strongest],
        "score_spread": (max(scores) - min(scores)) if scores else 0.0,
        "windows": len(windows),
        "grid": [len({w.row for w in windows}), len({w.col for w in windows})],
        "window": size,
        "stride": stride,
        "open_value": value,
    }
    return MethodResult(method="location", params=params, seed=ctx.seed, pictures=pictures, numbers=numbers)
