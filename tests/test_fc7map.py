"""The fc7 map: t-SNE places, a linear assignment snaps to distinct grid cells, borders carry
topic colours, and the picture is one image."""
from __future__ import annotations

import numpy as np
import torch

from generator.methods import fc7map


def test_snapping_gives_distinct_cells_and_keeps_the_layout():
    points = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [5.0, 5.0]])
    side, places = fc7map.snap_to_grid(points)
    assert side == 3 and len(set(places)) == 5
    # (row, col): y grows with the row, x with the column
    assert places[0] == (0, 0) and places[1] == (0, 2) and places[2] == (2, 0) and places[3] == (2, 2)
    assert places[4] == (1, 1)


def test_the_map_draws_each_image_in_its_cell_inside_its_topic_colour():
    images = torch.stack([torch.full((3, 20, 20), v) for v in (0.2, 0.8)])
    picture = fc7map.draw_map(images, [(0, 1), (1, 0)], 2, [(255, 0, 0), (0, 0, 255)], cell=20, border=3)
    assert picture.shape == (3, 40, 40)
    assert torch.allclose(picture[:, 2, 22], torch.tensor([1.0, 0.0, 0.0]))  # border of image 0 at (0, 1)
    assert torch.allclose(picture[:, 30, 10], torch.full((3,), 0.8))  # inside image 1 at (1, 0)
    assert torch.allclose(picture[:, 5, 5], torch.ones(3))  # the empty cell stays white


def test_grid_agreement_counts_adjacent_pairs():
    places = [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert fc7map.grid_agreement(places, [0, 0, 1, 1]) == 0.5  # 4 adjacent pairs, 2 share a topic


def test_run_separates_two_fc7_clusters(tiny_context):
    ctx = tiny_context(n=16)
    generator = torch.Generator().manual_seed(0)
    fc7 = torch.rand(16, ctx.features.fc7.shape[1], generator=generator) * 0.05
    fc7[:8, :10] += 1.0
    fc7[8:, 10:20] += 1.0
    ctx.features.fc7 = fc7
    result = fc7map.run(ctx, {"topics": 2, "cell": 24})
    (picture,) = result.pictures
    assert picture.image.shape == (3, 4 * 24, 4 * 24)
    topics = picture.meta.notes["topics"]
    assert set(topics[:8]) != set(topics[8:]) and len(set(topics[:8])) == 1 and len(set(topics[8:])) == 1
    assert result.numbers["trustworthiness"] > 0.9
    assert result.numbers["grid_same_topic"] > result.numbers["topic_chance"]
