"""Location grid (paper Sec. 4.1, mask m5): where in the image does the class keep which part?

Open only one k x k window of pool5's spatial positions (all channels) and visualize the class
through it; one problem per window, all solved in one batch. A class that learned its parts at
fixed places ("monastery": domes at the top, doors at the bottom) gives different pictures and
different reachable scores per window; a class learned uniformly ("terrier": a head anywhere)
gives similar ones. We report both: the score each window reaches (`strongest` ranks them) and a
heterogeneity number, the mean pairwise fc7 cosine distance between the windows' images.
"""
from __future__ import annotations

from typing import Any

import torch

from generator.engine.settings import settings_from
from generator.engine.solve import solve
from generator.methods import ClassContext, MethodResult, Picture
from generator.methods.common import class_database, class_problem, cosine_distances, fc7_of, mean_pairwise

VERSION = 1
DEFAULTS: dict[str, Any] = {
    "window": 2,  # k: the window is k x k pool5 positions
    "stride": 2,  # step between windows (2 on a 6x6 pool5 gives a 3x3 grid)
    "prior": True,  # patch prior from the class's own images
}


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


def window_grid(pool5_shape: tuple[int, int, int], size: int, stride: int) -> list[dict[str, int]]:
    """The grid of windows, row-major: {"row", "col", "top", "left", "size"} each."""
    _, height, width = pool5_shape
    return [
        {"row": r, "col": c, "top": top, "left": left, "size": size}
        for r, top in enumerate(window_positions(height, size, stride))
        for c, left in enumerate(window_positions(width, size, stride))
    ]


def run(ctx: ClassContext, params: dict[str, Any]) -> MethodResult:
    params = {**DEFAULTS, **params}
    pathway = ctx.pathway
    windows = window_grid(pathway.pool5_shape, int(params["window"]), int(params["stride"]))
    prior = class_database(ctx, params)
    settings = settings_from(ctx.engine)
    # One init for every window, so differences between the pictures come from the mask alone.
    problems = [
        class_problem(
            pathway, settings, ctx.class_index,
            database=prior,
            m5=pathway.window_mask(w["top"], w["left"], w["size"]).cpu(),
            seed=ctx.seed,
            label=f"window r{w['row']} c{w['col']}",
        )
        for w in windows
    ]
    solutions = solve(pathway, problems, settings, progress=ctx.progress)

    pictures = []
    for w, solution in zip(windows, solutions):
        span = f"pool5 rows {w['top']}-{w['top'] + w['size'] - 1}, cols {w['left']}-{w['left'] + w['size'] - 1}"
        pictures.append(
            Picture(
                key=f"window-r{w['row']}-c{w['col']}",
                image=solution.image,
                caption=f"{ctx.class_name} seen only through {span} (m5 window, patch prior)",
                alt=f"Visualization of {ctx.class_name} using only {span} of the 6x6 pool5 grid",
                numbers={"score": solution.score, "prob": solution.prob},
                meta={**w, "diverged": solution.diverged},
            )
        )

    usable = [i for i, s in enumerate(solutions) if not s.diverged]
    strongest = sorted(usable, key=lambda i: -solutions[i].score)
    images = torch.stack([s.image for s in solutions])
    heterogeneity = mean_pairwise(cosine_distances(fc7_of(pathway, images[usable])))
    scores = [solutions[i].score for i in usable]
    numbers = {
        "heterogeneity": heterogeneity,
        "heterogeneity_metric": "mean pairwise fc7 cosine distance between window images (unmasked net)",
        "strongest": [pictures[i].key for i in strongest],
        "score_spread": (max(scores) - min(scores)) if scores else 0.0,
        "windows": len(windows),
        "grid": [len({w["row"] for w in windows}), len({w["col"] for w in windows})],
    }
    return MethodResult(method="location", params=params, seed=ctx.seed, pictures=pictures, numbers=numbers)
