"""Hierarchical codes (Sec. 4.4): the typical image, the three constraint levels, the class-layout
init, and the errors against the input."""
from __future__ import annotations

import math

import pytest
import torch

from generator.demo.cache import PAPER_ENGINE
from generator.methods import common, hierarchy
from generator.nets.pathway import as_gates


def test_most_typical_is_closest_to_the_mean():
    fc7 = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [9.0, 9.0]])
    assert hierarchy.most_typical(fc7, 2) == [2, 1]  # mean is (3, 3)


def test_relative_error():
    assert hierarchy.relative_error(torch.zeros(4), torch.ones(4)) == pytest.approx(1.0)
    assert hierarchy.relative_error(torch.ones(4), torch.ones(4)) == 0.0


def test_error_to_others_leaves_out_the_image():
    images = torch.stack([torch.ones(3, 2, 2), torch.full((3, 2, 2), 0.5), torch.full((3, 2, 2), 0.25)])
    picture = torch.ones(3, 2, 2)
    assert hierarchy.error_to_others(picture, images, exclude=0) == pytest.approx((1.0 + 3.0) / 2)
    assert math.isnan(hierarchy.error_to_others(picture, images[:1], exclude=0))  # no other image


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


def test_run_inverts_the_code_at_three_levels_beside_the_input(tiny_context):
    ctx = tiny_context()
    result = hierarchy.run(ctx, {"images": 1})
    keys = [p.key for p in result.pictures]
    assert keys == ["image0-input", "image0-m7", "image0-m6-7", "image0-m5-7"]
    chosen = result.numbers["images"][0]
    assert chosen == hierarchy.most_typical(ctx.features.fc7, 1)[0]
    assert torch.equal(result.pictures[0].image, ctx.images[chosen])
    assert result.pictures[3].meta.notes["masks"] == ["m5", "m6", "m7"]
    assert result.numbers["forbid"] == hierarchy.DEFAULTS["forbid"] > 0
    for level in ("m7", "m6-7", "m5-7"):
        assert result.numbers[f"pixel_{level}"] > 0 and result.numbers[f"fc7_{level}"] > 0
        assert result.numbers[f"pixel_others_{level}"] > 0
    for picture in result.pictures[1:]:
        assert all(0.0 <= picture.numbers[f"iou_{m}"] <= 1.0 for m in ("m5", "m6", "m7"))
    # the full-code picture reaches its score under the image's own masks, and the ratio is
    # that score over the image's own score under the same code
    codes = hierarchy.codes(ctx.pathway, ctx.images[chosen][None])
    with torch.no_grad():
        fc8 = ctx.pathway(result.pictures[3].image[None], as_gates(codes)).fc8
        own = float(ctx.pathway(ctx.images[chosen][None], as_gates(codes)).fc8[0, ctx.class_index])
    assert float(fc8[0, ctx.class_index]) == pytest.approx(result.pictures[3].numbers["score"], rel=1e-4, abs=1e-5)
    if own > 0:
        assert result.pictures[3].numbers["score_ratio"] == pytest.approx(result.pictures[3].numbers["score"] / own, rel=1e-5)


def test_every_level_starts_from_the_same_class_layout(tiny_context):
    ctx = tiny_context(engine={"iterations": 1, "lr": 1e-9})  # one vanishing step: the pictures are the inits
    result = hierarchy.run(ctx, {"images": 1, "prior": False})
    chosen = result.numbers["images"][0]
    expected = hierarchy.class_layout_init(ctx.images, chosen, ctx.pathway.pool5_shape[1:])
    for picture in result.pictures[1:]:
        assert torch.allclose(picture.image, expected, atol=1e-5)
    noise = hierarchy.run(ctx, {"images": 1, "prior": False, "init": "noise"})
    assert not torch.allclose(noise.pictures[1].image, expected)


def test_unknown_init_is_refused(tiny_context):
    with pytest.raises(ValueError, match="one of class_layout, noise, got 'photo'") as refused:
        hierarchy.run(tiny_context(), {"init": "photo"})
    assert refused.value.field == "init"  # the typed parameters name the field


def test_two_images_give_two_rows(tiny_context):
    result = hierarchy.run(tiny_context(engine={"iterations": 2}), {"images": 2, "prior": False})
    assert len(result.pictures) == 8 and len(result.numbers["images"]) == 2


def stuck_inversions(result) -> int:
    """Inversions that stayed below a quarter of the image's own score under its code."""
    return sum(p.numbers["score_ratio"] < 0.25 for p in result.pictures if p.meta.step != "input")


def class_average(results, key: str) -> float:
    return sum(r.numbers[key] for r in results) / len(results)


def picture_average(results, level: str, number: str) -> float:
    values = [p.numbers[number] for r in results for p in r.pictures if p.meta.step == level]
    return sum(values) / len(values)


DEMO_ENGINE = {"iterations": 80, **PAPER_ENGINE}  # as `atlas demo` builds it, with 50 images per class


@pytest.fixture(scope="module")
def gated_demo(demo_context, demo_world) -> dict[str, list]:
    """Hierarchy results per init with masks that only gate (forbid 0), for every demo class."""
    contexts = [demo_context(demo_world, c, n=50, engine=DEMO_ENGINE) for c in demo_world.class_ids]
    return {init: [hierarchy.run(ctx, {"init": init, "forbid": 0}) for ctx in contexts] for init in ("class_layout", "noise")}


@pytest.mark.slow
def test_demo_errors_fall_as_the_code_fixes_more_layers(demo_context, demo_world, gated_demo):
    """The paper's Sec. 4.4 claim on the demo world as `atlas demo` builds it (50 images per
    class, 80 iterations, defaults): the class-averaged pixel error to the input falls from
    {m7} to {m5-7} (by 0.04-0.06 on ctx seeds 0-4; seed 0: 0.583/0.573/0.528); the
    middle step is within float noise (another summation order of the same maths gave seed 0
    0.624/0.627/0.599), so only "m6-7 is not clearly above m7" is asserted for it. It holds because the code forbids
    what the image has off (`forbid`): with masks that only gate (forbid 0) the three levels
    give the same picture and the errors are flat (0.593/0.593/0.598 at seed 0), which the
    second half checks. The mechanism: with m5 fixed, the picture's own pool5 code agrees
    more with the image's."""
    results = [hierarchy.run(demo_context(demo_world, c, n=50, engine=DEMO_ENGINE), {}) for c in demo_world.class_ids]
    pixel = [class_average(results, f"pixel_{level}") for level in ("m7", "m6-7", "m5-7")]
    assert pixel[0] > pixel[2] + 0.01 and pixel[1] > pixel[2] and pixel[1] < pixel[0] + 0.01, pixel
    # Control: most of the fall is calmer pictures, nearer *every* class image (0.619 -> 0.575 to
    # the other images at seed 0), but the picture also gains on its own image relative to the
    # others (error ratio 0.942 -> 0.917 at seed 0; falls m7 -> m5-7 for seeds 0-4).
    specific = [class_average(results, f"pixel_{lv}") / class_average(results, f"pixel_others_{lv}") for lv in ("m7", "m5-7")]
    assert specific[1] < specific[0], specific
    assert picture_average(results, "m5-7", "iou_m5") > picture_average(results, "m7", "iou_m5")
    assert all(0.0 <= class_average(results, f"fc7_{level}") <= 1.0 for level in ("m7", "m6-7", "m5-7"))

    flat = [class_average(gated_demo["class_layout"], f"pixel_{level}") for level in ("m7", "m6-7", "m5-7")]
    assert max(flat) - min(flat) < pixel[0] - pixel[2], (flat, pixel)


@pytest.mark.slow
def test_class_layout_init_unsticks_the_gated_demo_inversions(gated_demo):
    """With masks that only gate (forbid 0, the literal paper), the engine's grey noise init
    leaves inversions stuck at score ~0 (6, 8, 8 of 54 problems for ctx seeds 0, 1, 2); the
    class-layout init leaves fewer (2, 4, 0: all in the ladybug swarm, whose class layout is
    flat). Errors are finite."""
    stuck = {init: sum(stuck_inversions(r) for r in results) for init, results in gated_demo.items()}
    assert stuck["class_layout"] < stuck["noise"], stuck
    for result in gated_demo["class_layout"]:
        for level in ("m7", "m6-7", "m5-7"):
            assert 0.0 < result.numbers[f"pixel_{level}"] < 1.0 and 0.0 <= result.numbers[f"fc7_{level}"] <= 1.0


def test_closed_weights_scale_with_the_class_and_cover_only_fixed_layers():
    from generator.nets.pathway import Activations

    features = Activations(
        pool5=torch.full((4, 2, 3, 3), 0.5), fc6=torch.full((4, 5), 2.0), fc7=torch.full((4, 5), 4.0),
        fc8=torch.tensor([[10.0, 1.0]] * 4),
    )
    assert common.closed_weights(0.0, ("m7",), features, 0) is None
    assert common.closed_weights(2.0, ("m7",), features, 0) == pytest.approx({"pool5": 0.0, "fc6": 0.0, "fc7": 2.0 * 10 / 4})
    assert common.closed_weights(2.0, ("m5", "m6", "m7"), features, 0) == pytest.approx({"pool5": 40.0, "fc6": 10.0, "fc7": 5.0})
    no_fc6 = Activations(pool5=features.pool5, fc6=None, fc7=features.fc7, fc8=features.fc8)
    assert common.closed_weights(2.0, ("m5", "m7"), no_fc6, 0) == pytest.approx({"pool5": 40.0, "fc7": 5.0})
    # a signed fc7 (a ViT's class token after its LayerNorm) averages 0: its scale is its mean magnitude
    signed = Activations(pool5=features.pool5, fc6=None, fc7=torch.tensor([[4.0, -4.0]] * 4), fc8=features.fc8)
    assert common.closed_weights(2.0, ("m7",), signed, 0) == pytest.approx({"pool5": 0.0, "fc7": 5.0})


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
