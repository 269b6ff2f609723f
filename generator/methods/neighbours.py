"""Nearest neighbours in fc7 vs in pixels (the CS231n demonstration): among the class's own
images, a query's nearest fc7 codes (cosine) share what the image shows, its nearest raw
pixel vectors (L2) share colour and layout. Exact search with faiss.

The numbers use every image as a query: how often a neighbour has the query's NMF topic (fc7
topics, as the topics method finds them; chance is the sum of squared topic shares), and the
mean fc7 cosine and pixel distance of each kind of neighbour.
"""
from __future__ import annotations

from typing import Any, Mapping

import faiss
import numpy as np
from torch import Tensor

from generator.methods import ClassContext, MethodResult, NeighboursParams, Picture, spec
from generator.methods.common import topic_of_each_image
from generator.records import Query, refs

SPEC = spec("neighbours")
VERSION = SPEC.version
DEFAULTS: dict[str, Any] = SPEC.defaults()


def nearest(vectors: Tensor, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest other rows: (indices (N, k), distances (N, k)), nearest first.
    metric "cosine" (distance 1 - cos) or "l2" (Euclidean distance)."""
    data = np.ascontiguousarray(vectors.detach().double().cpu().numpy().reshape(len(vectors), -1), dtype=np.float32)
    k = min(k, len(data) - 1)
    if metric == "cosine":
        data = data / np.maximum(np.linalg.norm(data, axis=1, keepdims=True), 1e-12)
        index: faiss.Index = faiss.IndexFlatIP(data.shape[1])
    elif metric == "l2":
        index = faiss.IndexFlatL2(data.shape[1])
    else:
        raise ValueError(f"neighbours: unknown metric {metric!r}")
    index.add(data)
    scores, found = index.search(data, k + 1)
    rows_i, rows_d = [], []
    for row, (ids, values) in enumerate(zip(found, scores)):
        keep = [(i, v) for i, v in zip(ids, values) if i != row and i >= 0][:k]  # drop the query itself
        rows_i.append([i for i, _ in keep])
        rows_d.append([1.0 - v if metric == "cosine" else float(np.sqrt(max(v, 0.0))) for _, v in keep])
    return np.array(rows_i, dtype=np.int64), np.array(rows_d, dtype=np.float64)


def cosine(a: Tensor, b: Tensor) -> float:
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-12))


def run(ctx: ClassContext, values: NeighboursParams | Mapping[str, Any] = NeighboursParams()) -> MethodResult:
    params: NeighboursParams = SPEC.typed(values)
    fc7 = ctx.features.fc7.float()
    pixels = ctx.images.float()
    n = len(fc7)
    if n < 2:
        raise ValueError(f"neighbours: needs at least 2 images of the class, got {n}")
    k = min(params.k, n - 1)
    found = {"fc7": nearest(fc7, k, "cosine"), "pixel": nearest(pixels, k, "l2")}
    topic = topic_of_each_image(fc7, params.topics, ctx.seed)
    shares = np.bincount(topic) / n
    numbers: dict[str, Any] = {"images": n, "k": k, "topic_chance": float((shares**2).sum())}
    for space, (ids, _) in found.items():
        numbers[f"{space}_same_topic"] = float(np.mean([[topic[j] == topic[q] for j in row] for q, row in enumerate(ids)]))
        numbers[f"{space}_fc7_cosine"] = float(np.mean([[cosine(fc7[q], fc7[j]) for j in row] for q, row in enumerate(ids)]))
        numbers[f"{space}_pixel_distance"] = float(np.mean(
            [[float((pixels[q] - pixels[j]).norm()) for j in row] for q, row in enumerate(ids)]))

    pictures = []
    for q in range(min(params.queries, n)):
        lists = {space: refs([int(j) for j in ids[q]], distance=[round(float(d), 4) for d in dist[q]],
                             topic=[int(topic[j]) + 1 for j in ids[q]]) for space, (ids, dist) in found.items()}
        same = {space: sum(topic[j] == topic[q] for j in ids[q]) for space, (ids, _) in found.items()}
        pictures.append(Picture(
            key=f"query-{q}", image=ctx.images[q],
            caption=f"Query: {ctx.class_name} image {q} (topic {topic[q] + 1}); of its {k} nearest class images "
            f"{same['fc7']} share its topic in fc7, {same['pixel']} in pixels",
            alt=f"Query image {q} of {ctx.class_name}",
            numbers={"fc7_same_topic": same["fc7"] / k, "pixel_same_topic": same["pixel"] / k},
            meta=Query(image=q, topic=int(topic[q]), fc7=lists["fc7"], pixel=lists["pixel"]),
        ))
    return MethodResult(method="neighbours", params=params, seed=ctx.seed, pictures=pictures, numbers=numbers)

