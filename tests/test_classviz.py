"""Class visualization: baseline and prior pictures from one batch, with their numbers."""
import dataclasses
import math

import pytest
import torch

from generator.methods import ClassContext, PriorParams, classviz, common
from generator.methods.metrics import colour_distance, colour_distance_per_photo

SIZE = 96


def coloured_context(pathway, n: int = 6, prior: PriorParams = PriorParams(images=4, patch=5, stride=4, max_patches=1000)
                     ) -> ClassContext:
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(n, 3, 8, 8, generator=generator) * torch.tensor([0.9, 0.5, 0.2]).view(1, 3, 1, 1)
    images = torch.nn.functional.interpolate(coarse, size=SIZE, mode="bilinear")
    return ClassContext(
        pathway=pathway, class_index=2, class_id="c2", class_name="tiny class", images=images,
        image_names=[f"{i}.png" for i in range(n)], features=pathway(images), engine={"iterations": 6}, seed=0,
        prior=prior,
    )


def test_classviz_returns_baseline_and_prior_with_numbers(tiny_alexnet):
    ctx = coloured_context(tiny_alexnet(SIZE))
    result = classviz.run(ctx, {})
    assert [p.key for p in result.pictures] == ["baseline", "prior"]
    for picture in result.pictures:
        assert picture.image.shape == (3, SIZE, SIZE)
        assert 0 < picture.numbers["prob"] < 1 and math.isfinite(picture.numbers["score"])
        assert picture.numbers["colour_distance"] == pytest.approx(colour_distance(picture.image, ctx.images[:4]))
        assert picture.numbers["colour_distance"] > 0 and picture.caption and picture.alt
        assert picture.numbers["colour_distance_per_photo"] == pytest.approx(
            colour_distance_per_photo(picture.image, ctx.images[:4]))
        assert picture.meta.notes["iterations"] == 6 and not picture.meta.diverged
    assert "patch prior" in result.pictures[1].caption and "patch prior" not in result.pictures[0].caption
    assert not torch.equal(result.pictures[0].image, result.pictures[1].image)
    assert math.isclose(
        result.numbers["colour_ratio"],
        result.numbers["prior_colour_distance"] / result.numbers["baseline_colour_distance"],
    )
    assert math.isclose(
        result.numbers["colour_ratio_per_photo"],
        result.numbers["prior_colour_distance_per_photo"] / result.numbers["baseline_colour_distance_per_photo"],
    )


def test_class_prior_is_built_once_per_class_from_the_declared_database_params(tiny_alexnet):
    prior = PriorParams(images=3, patch=5, stride=4, max_patches=500)
    ctx = coloured_context(tiny_alexnet(SIZE), prior=prior)
    first = common.class_prior(ctx)
    assert common.class_prior(ctx) is first
    assert first.patch == 5 and first.size == 500
    ctx.prior = dataclasses.replace(prior, images=2)
    assert common.class_prior(ctx) is not first


def test_engine_settings_take_params_over_catalog(tiny_alexnet):
    ctx = coloured_context(tiny_alexnet(SIZE))
    settings = common.engine_settings(ctx, {"iterations": 3, "prior_weight": None}, jitter=0)
    assert settings.iterations == 3 and settings.jitter == 0
    assert common.engine_settings(ctx, {"iterations": None}).iterations == 6


def test_a_class_image_is_its_own_nearest_exemplar(tiny_context):
    ctx = tiny_context()
    found = common.nearest_exemplars(ctx, ctx.images[[5, 2]], k=2)
    assert [row[0].image for row in found] == [5, 2]
    assert found[0][0].numbers["distance"] == pytest.approx(0.0, abs=1e-5)
    assert found[0][1].numbers["distance"] > found[0][0].numbers["distance"]


def test_classviz_pictures_carry_their_nearest_class_images(tiny_alexnet):
    result = classviz.run(coloured_context(tiny_alexnet(SIZE)), {"iterations": 3})
    for picture in result.pictures:
        distances = [e.numbers["distance"] for e in picture.meta.exemplars]
        assert distances == sorted(distances) and len(distances) == 3
