"""Location grid (Sec. 4.1): window geometry, the method's pictures and numbers, and the planted
layouts of the demo world."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from generator.methods import location
from generator.records import Window


def test_window_positions_cover_the_grid():
    assert location.window_positions(6, 2, 2) == [0, 2, 4]
    assert location.window_positions(6, 3, 2) == [0, 2, 3]  # last one flush with the border
    assert location.window_positions(6, 1, 1) == list(range(6))
    assert location.window_positions(6, 6, 2) == [0]
    with pytest.raises(ValueError, match="window must be in"):
        location.window_positions(6, 7, 2)
    with pytest.raises(ValueError, match="stride"):
        location.window_positions(6, 2, 0)


def test_window_grid_is_row_major_with_meta():
    grid = location.window_grid((256, 6, 6), 2, 2)
    assert len(grid) == 9
    assert grid[5] == Window(row=1, col=2, top=2, left=4, size=2)


def test_cosine_distances_and_mean_pairwise():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    d = location.cosine_distances(features)
    assert torch.allclose(d, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), atol=1e-6)
    assert location.mean_pairwise(d) == pytest.approx(4 / 6)
    assert location.mean_pairwise(d[:1, :1]) == 0.0


def test_run_gives_one_picture_per_window_ranked_by_score(tiny_context):
    ctx = tiny_context()
    result = location.run(ctx, {"window": 2, "stride": 2})
    assert [p.key for p in result.pictures][:2] == ["window-r0-c0", "window-r0-c1"]
    assert len(result.pictures) == 9 and result.numbers["grid"] == [3, 3]
    first = result.pictures[0]
    assert first.meta == replace(location.window_grid(ctx.pathway.pool5_shape, 2, 2)[0], diverged=first.meta.diverged,
                                 exemplars=first.meta.exemplars)
    assert first.image.shape == (3, 48, 48) and first.caption and first.alt
    scores = {p.key: p.numbers["score"] for p in result.pictures}
    ranked = result.numbers["strongest"]
    assert sorted(ranked) == sorted(scores)
    assert [scores[k] for k in ranked] == sorted(scores.values(), reverse=True)
    assert 0.0 <= result.numbers["heterogeneity"] <= 2.0


def test_captions_say_the_prior_and_the_grid_the_run_used(tiny_context):
    ctx = tiny_context(engine={"iterations": 1, "lr": 0.05, "prior_weight": 1.0, "rematch_every": 3})
    grid = "x".join(map(str, ctx.pathway.pool5_shape[1:]))
    with_prior = location.run(ctx, {"window": 3, "stride": 3}).pictures
    without = location.run(ctx, {"window": 3, "stride": 3, "prior": False}).pictures
    assert all("patch prior" in p.caption for p in with_prior)
    assert not any("patch prior" in p.caption for p in without)
    assert all(f"of the {grid} pool5 grid" in p.alt for p in with_prior + without)


def test_window_size_and_stride_are_configurable(tiny_context):
    ctx = tiny_context(engine={"iterations": 2, "lr": 0.05, "prior_weight": 1.0, "rematch_every": 3})
    assert len(location.run(ctx, {"window": 3, "stride": 3, "prior": False}).pictures) == 4
    whole = location.run(ctx, {"window": 6, "stride": 1, "prior": False})
    assert len(whole.pictures) == 1 and whole.numbers["heterogeneity"] == 0.0


@pytest.mark.slow
def test_strongest_windows_find_the_planted_layouts(demo_context, demo_world):
    """The top-ranked window lies on the planted parts (at least half its cells) for most
    classes; chance is about 0.4 (3 of 9 windows for most classes, all 9 for the swarm)."""
    hits = []
    for class_id in demo_world.class_ids:
        result = location.run(demo_context(demo_world, class_id), {})
        best = next(p for p in result.pictures if p.key == result.numbers["strongest"][0])
        hits.append((best.meta.row, best.meta.col) in demo_world.layout_windows(class_id))
    assert sum(hits) >= 0.65 * len(hits), hits


def test_window_exemplars_are_the_class_images_scoring_highest_through_the_window(tiny_context):
    ctx = tiny_context()
    top = location.window_mask(ctx.pathway.pool5_shape, 0, 0, 2)
    everything = torch.ones(ctx.pathway.pool5_shape)
    through_top, through_all = location.window_exemplars(ctx, [top, everything], k=3)
    # a mask that opens everything ranks the images by their plain class score
    plain = ctx.features.fc8[:, ctx.class_index]
    assert [e.image for e in through_all] == torch.argsort(plain, descending=True)[:3].tolist()
    assert [e.numbers["score"] for e in through_all] == pytest.approx(sorted(plain.tolist(), reverse=True)[:3], abs=1e-5)
    # one window ranks them by what that window alone gives the class, best first
    scores = [e.numbers["score"] for e in through_top]
    assert scores == sorted(scores, reverse=True)
    assert len(through_top) == 3 and all(0 <= e.image < ctx.images.shape[0] for e in through_top)


def test_each_window_picture_carries_its_exemplars(tiny_context):
    result = location.run(tiny_context(), {"window": 2, "stride": 2})
    assert all(len(p.meta.exemplars) == 3 for p in result.pictures)
