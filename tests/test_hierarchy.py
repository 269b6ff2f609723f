"""Hierarchical codes (Sec. 4.4): the typical image, the three constraint levels, the class-layout
init, and the errors against the input."""
from __future__ import annotations

import pytest
import torch

from generator.methods import hierarchy
from test_location import demo_context, tiny_context


def test_most_typical_is_closest_to_the_mean():
    fc7 = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [9.0, 9.0]])
    assert hierarchy.most_typical(fc7, 2) == [2, 1]  # mean is (3, 3)


def test_relative_error():
    assert hierarchy.relative_error(torch.zeros(4), torch.ones(4)) == pytest.approx(1.0)
    assert hierarchy.relative_error(torch.ones(4), torch.ones(4)) == 0.0


def test_code_iou():
    a = torch.tensor([1.0, 1.0, 0.0, 0.0])
    b = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert hierarchy.code_iou(a, b) == pytest.approx(1 / 3)
    assert hierarchy.code_iou(a, a) == 1.0
    assert hierarchy.code_iou(torch.zeros(4), torch.zeros(4)) == 1.0


def test_class_layout_init_is_the_coarse_mean_of_the_other_images():
    images = torch.zeros(3, 3, 12, 12)
    images[0] = 1.0  # the image being inverted: must not leak into its init
    images[1, :, :6] = 0.8  # top half bright
    init = hierarchy.class_layout_init(images, exclude=0, grid=(2, 2))
    assert init.shape == (3, 12, 12)
    assert float(init[0, 0, 0]) == pytest.approx(0.4) and float(init[2, -1, -1]) == pytest.approx(0.0)
    assert float(init.mean()) == pytest.approx(0.2)  # mean of images 1 and 2 only
    assert hierarchy.class_layout_init(images[:1], exclude=0, grid=(2, 2)) is None


def test_run_inverts_the_code_at_three_levels_beside_the_input():
    ctx = tiny_context()
    result = hierarchy.run(ctx, {"images": 1})
    keys = [p.key for p in result.pictures]
    assert keys == ["image0-input", "image0-m7", "image0-m6-7", "image0-m5-7"]
    chosen = result.numbers["images"][0]
    assert chosen == hierarchy.most_typical(ctx.features.fc7, 1)[0]
    assert torch.equal(result.pictures[0].image, ctx.images[chosen])
    assert result.pictures[3].meta["masks"] == ["m5", "m6", "m7"]
    for level in ("m7", "m6-7", "m5-7"):
        assert result.numbers[f"pixel_{level}"] > 0 and result.numbers[f"fc7_{level}"] >= 0
    for picture in result.pictures[1:]:
        assert all(0.0 <= picture.numbers[f"iou_{m}"] <= 1.0 for m in ("m5", "m6", "m7"))
    # the full-code picture reaches its score under the image's own masks, and the ratio is
    # that score over the image's own score under the same code
    codes = ctx.pathway.codes(ctx.images[chosen][None])
    with torch.no_grad():
        fc8 = ctx.pathway(result.pictures[3].image[None], **codes).fc8
        own = float(ctx.pathway(ctx.images[chosen][None], **codes).fc8[0, ctx.class_index])
    assert float(fc8[0, ctx.class_index]) == pytest.approx(result.pictures[3].numbers["score"], rel=1e-4, abs=1e-5)
    if own > 0:
        assert result.pictures[3].numbers["score_ratio"] == pytest.approx(result.pictures[3].numbers["score"] / own, rel=1e-5)


def test_every_level_starts_from_the_same_class_layout():
    ctx = tiny_context(engine={"iterations": 0})  # no steps: the pictures are the inits
    result = hierarchy.run(ctx, {"images": 1, "prior": False})
    chosen = result.numbers["images"][0]
    expected = hierarchy.class_layout_init(ctx.images, chosen, ctx.pathway.pool5_shape[1:])
    for picture in result.pictures[1:]:
        assert torch.allclose(picture.image, expected)
    noise = hierarchy.run(ctx, {"images": 1, "prior": False, "init": "noise"})
    assert not torch.allclose(noise.pictures[1].image, expected)


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="init must be one of"):
        hierarchy.run(tiny_context(), {"init": "photo"})


def test_two_images_give_two_rows():
    result = hierarchy.run(tiny_context(engine={"iterations": 2}), {"images": 2, "prior": False})
    assert len(result.pictures) == 8 and len(result.numbers["images"]) == 2


def stuck_inversions(result) -> int:
    """Inversions that stayed below a quarter of the image's own score under its code."""
    return sum(p.numbers["score_ratio"] < 0.25 for p in result.pictures if p.meta["level"] != "input")


@pytest.mark.slow
def test_class_layout_init_unsticks_the_demo_inversions(demo_world):
    """On the demo world as `atlas demo` builds it (50 images per class, 80 iterations), the
    engine's grey noise init leaves inversions stuck at score ~0 (6, 8, 8 of 54 problems for
    ctx seeds 0, 1, 2); the class-layout init leaves fewer (2, 4, 0: all in the ladybug swarm,
    whose class layout is flat). Errors are finite and the pictures nearer the input than
    black. Whether the errors fall from m7 to m5-7 (the paper's claim) is a measurement for
    benchmarks/claims.py: on the demo world it does not hold robustly (module docstring)."""
    stuck = {"class_layout": 0, "noise": 0}
    for class_id in demo_world.class_ids:
        ctx = demo_context(demo_world, class_id, n=50, engine={"iterations": 80})
        for init in stuck:
            result = hierarchy.run(ctx, {"init": init})
            stuck[init] += stuck_inversions(result)
            for level in ("m7", "m6-7", "m5-7"):
                assert 0.0 < result.numbers[f"pixel_{level}"] < 1.0 and 0.0 <= result.numbers[f"fc7_{level}"] <= 1.0
    assert stuck["class_layout"] < stuck["noise"], stuck


def test_typical_and_distinct_starts_typical_then_spreads():
    fc7 = torch.rand(10, 5, generator=torch.Generator().manual_seed(0))
    chosen = hierarchy.typical_and_distinct(fc7, 3)
    typical_half = hierarchy.most_typical(fc7, 5)
    assert chosen[0] == typical_half[0] and set(chosen) <= set(typical_half)
    # the second is the member of the typical half least like the first (fc7 cosine)
    unit = fc7 / fc7.norm(dim=1, keepdim=True)
    others = [i for i in typical_half if i != chosen[0]]
    assert chosen[1] == min(others, key=lambda i: float(unit[i] @ unit[chosen[0]]))
    assert len(set(chosen)) == 3
    assert hierarchy.typical_and_distinct(fc7, 1) == [typical_half[0]]
