"""fc7 vs pixel neighbours: faiss's answers are the true nearest by brute force, the query
itself is never its own neighbour, and the numbers count what they say."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from generator.methods import neighbours


def brute_force(vectors: torch.Tensor, k: int, metric: str) -> tuple[list[set[int]], np.ndarray]:
    flat = vectors.double().flatten(1)
    if metric == "cosine":
        unit = flat / flat.norm(dim=1, keepdim=True)
        distance = 1 - unit @ unit.T
    else:
        distance = torch.cdist(flat, flat)
    distance.fill_diagonal_(float("inf"))
    values, order = distance.sort(dim=1)
    return [set(row[:k].tolist()) for row in order], values[:, :k].numpy()


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_neighbours_are_the_nearest_in_their_space(metric):
    vectors = torch.rand(30, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    ids, distances = neighbours.nearest(vectors, 5, metric)
    expected_ids, expected_distances = brute_force(vectors, 5, metric)
    assert ids.shape == (30, 5)
    for row, found in enumerate(ids):
        assert row not in found
        assert set(found.tolist()) == expected_ids[row]
    assert np.allclose(distances, expected_distances, atol=1e-4)
    assert (np.diff(distances, axis=1) >= -1e-6).all()  # nearest first


def test_fc7_and_pixel_neighbours_differ_where_the_spaces_disagree(tiny_context):
    """Images 0-5: fc7 codes in two tight groups that cut across two pixel groups; each space
    finds its own groups."""
    ctx = tiny_context(n=8)
    generator = torch.Generator().manual_seed(0)
    fc7 = torch.rand(8, ctx.features.fc7.shape[1], generator=generator) * 0.01
    fc7[0::2, :8] += 1.0  # fc7 group A: even images
    fc7[1::2, 8:16] += 1.0  # fc7 group B: odd images
    ctx.features.fc7 = fc7
    images = torch.rand(8, 3, 48, 48, generator=generator) * 0.05
    images[:4] += 0.9  # pixel group: the first four bright, the rest dark
    ctx.images = images.clamp(0, 1)
    result = neighbours.run(ctx, {"queries": 2, "k": 3, "topics": 2})
    query = result.pictures[0]
    assert {ref.image for ref in query.meta.fc7} == {2, 4, 6}
    assert {ref.image for ref in query.meta.pixel} == {1, 2, 3}
    numbers = result.numbers
    assert numbers["fc7_fc7_cosine"] > numbers["pixel_fc7_cosine"]
    assert numbers["pixel_pixel_distance"] < numbers["fc7_pixel_distance"]
    assert numbers["fc7_same_topic"] == 1.0 and numbers["topic_chance"] == pytest.approx(0.5)
    assert numbers["pixel_same_topic"] == pytest.approx(1 / 3)  # 1 of each bright image's 3 neighbours
