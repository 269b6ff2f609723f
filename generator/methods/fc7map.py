"""A 2-D map of the class's fc7 codes, drawn as one picture: scikit-learn's t-SNE places the
images, a linear assignment snaps them to a square grid of thumbnails (each cell holds one
image, near where t-SNE put it), and each thumbnail's border has its NMF topic's colour.

Numbers: t-SNE's trustworthiness (how well the 5 nearest neighbours on the map were near in
fc7; 1 is perfect) and how often grid neighbours share a topic (beside its chance level).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from sklearn.manifold import TSNE, trustworthiness
from torch import Tensor

from generator.methods import ClassContext, Fc7MapParams, MethodResult, Picture, spec
from generator.methods.common import topic_of_each_image
from generator.records import Meta

SPEC = spec("fc7map")
VERSION = SPEC.version
DEFAULTS: dict[str, Any] = SPEC.defaults()

# Okabe & Ito's colour-blind-safe palette, then a few more; topic k gets PALETTE[k % len]
PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (204, 121, 167), (0, 114, 178), (213, 94, 0),
           (240, 228, 66), (0, 0, 0), (153, 153, 153), (128, 0, 64))
COLOUR_NAMES = ("orange", "sky blue", "green", "pink", "blue", "vermilion", "yellow", "black", "grey", "maroon")


def embed(features: Tensor, perplexity: float, seed: int) -> np.ndarray:
    """(N, 2) t-SNE of the rows (cosine distances, PCA init); perplexity capped at (N - 1) / 3."""
    data = features.detach().double().cpu().numpy()
    n = len(data)
    if n < 3:
        return np.stack([np.arange(n, dtype=float), np.zeros(n)], 1)
    tsne = TSNE(n_components=2, perplexity=min(perplexity, max((n - 1) / 3, 1.0)), metric="cosine", init="pca",
                random_state=seed)
    return np.asarray(tsne.fit_transform(data))


def snap_to_grid(points: np.ndarray) -> tuple[int, list[tuple[int, int]]]:
    """Each point's (row, col) on a side x side grid: the assignment of points to distinct cells
    that minimizes the summed squared distance (points scaled to the grid's square)."""
    n = len(points)
    side = max(1, math.ceil(math.sqrt(n)))
    low, high = points.min(0), points.max(0)
    scaled = (points - low) / np.maximum(high - low, 1e-12) * (side - 1)
    cells = np.array([(r, c) for r in range(side) for c in range(side)], dtype=float)  # (row, col) = (y, x)
    cost = ((scaled[:, None, ::-1] - cells[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    place = [(0, 0)] * n
    for point, cell in zip(rows, cols):
        place[point] = (int(cells[cell][0]), int(cells[cell][1]))
    return side, place


def draw_map(images: Tensor, places: list[tuple[int, int]], side: int, colours: list[tuple[int, int, int]],
             cell: int, border: int = 4) -> Tensor:
    """(3, side * cell, side * cell) in [0, 1]: each image shrunk into its cell inside a border."""
    canvas = torch.ones(3, side * cell, side * cell)
    inner = cell - 2 * border - 2
    small = F.interpolate(images.float(), size=(inner, inner), mode="area")
    for image, (row, col), colour in zip(small, places, colours):
        top, left = row * cell + 1, col * cell + 1
        canvas[:, top : top + cell - 2, left : left + cell - 2] = torch.tensor(colour, dtype=torch.float32).view(3, 1, 1) / 255
        canvas[:, top + border : top + border + inner, left + border : left + border + inner] = image
    return canvas


def grid_agreement(places: list[tuple[int, int]], topic: list[int]) -> float:
    """Fraction of horizontally or vertically adjacent grid pairs whose images share a topic."""
    at = {place: t for place, t in zip(places, topic)}
    pairs = [(at[(r, c)], at[nb]) for (r, c) in at for nb in ((r + 1, c), (r, c + 1)) if nb in at]
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else float("nan")


def run(ctx: ClassContext, values: Fc7MapParams | Mapping[str, Any] = Fc7MapParams()) -> MethodResult:
    params: Fc7MapParams = SPEC.typed(values)
    fc7 = ctx.features.fc7.float()
    n = len(fc7)
    points = embed(fc7, params.perplexity, ctx.seed)
    side, places = snap_to_grid(points)
    topic = topic_of_each_image(fc7, params.topics, ctx.seed)
    colours = [PALETTE[t % len(PALETTE)] for t in topic]
    picture = draw_map(ctx.images, places, side, colours, params.cell)
    shares = np.bincount(topic) / n
    numbers: dict[str, Any] = {
        "images": n,
        "trustworthiness": float(trustworthiness(fc7.double().numpy(), points, n_neighbors=min(5, max(1, n // 2 - 1)),
                                                 metric="cosine")) if n >= 4 else float("nan"),
        "grid_same_topic": grid_agreement(places, topic),
        "topic_chance": float((shares**2).sum()),
    }
    used = sorted(set(topic))
    legend = ", ".join(f"topic {t + 1} {COLOUR_NAMES[t % len(COLOUR_NAMES)]}" for t in used)
    return MethodResult(method="fc7map", params=params, seed=ctx.seed, numbers=numbers, pictures=[Picture(
        key="map", image=picture,
        caption=f"The {n} {ctx.class_name} images placed by a t-SNE of their fc7 codes on a {side} x {side} grid; "
        f"borders by NMF topic: {legend}",
        alt=f"Grid of {n} {ctx.class_name} thumbnails arranged so that images with similar fc7 codes sit together, "
        "with coloured borders by topic",
        meta=Meta(notes={"places": [list(p) for p in places], "topics": [t + 1 for t in topic], "side": side}),
    )])
