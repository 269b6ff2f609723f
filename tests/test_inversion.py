"""Pool5 inversion (Sec. 5.1): three variants with identical settings on a tiny net."""
from __future__ import annotations

import math

import pytest
import torch

from generator.engine.settings import settings_from
from generator.methods import ClassContext, inversion
from generator.methods.retrieval import Pool5Retrieval


@pytest.fixture(scope="module")
def world(tiny_alexnet, smooth_images):
    pathway = tiny_alexnet(64, num_classes=3, dropout=False)
    images = smooth_images(10, size=64, seed=9)
    retrieval = Pool5Retrieval.from_images(pathway, images[2:], progress=False)
    return pathway, images, retrieval


def quick_settings(**overrides):
    return inversion.inversion_settings(None, {"iterations": 4, "rematch_every": 2, **overrides})


def test_three_variants_give_finite_errors(world):
    pathway, images, retrieval = world
    results = inversion.invert_pool5(
        pathway, images[:2], retrieval, quick_settings(), variants=("rand", "avg", "prior", "retrieved"),
        k=3, patch=5, stride=4,
    )
    assert set(results) == {"rand", "avg", "prior", "retrieved"}
    for rows in results.values():
        assert len(rows) == 2
        for image, image_error, feature_error in rows:
            assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1
            assert math.isfinite(image_error) and math.isfinite(feature_error)
            assert 0 <= image_error and 0 <= feature_error
    numbers = inversion.summarize(results)
    assert set(numbers) >= {"image_error_prior", "feature_error_rand_std"}


def test_average_init_starts_closer_than_random(world):
    pathway, images, retrieval = world
    # the database holds near-copies of the targets' pool5 cells: its average is a good init
    own = Pool5Retrieval.from_images(pathway, images, progress=False)
    start = inversion.invert_pool5(
        pathway, images[:2], own, quick_settings(iterations=1), variants=("rand", "avg"), k=2, patch=5
    )
    for (_, rand_error, _), (_, avg_error, _) in zip(start["rand"], start["avg"]):
        assert avg_error < rand_error


def test_variants_share_settings_and_only_prior_has_a_database(world, monkeypatch):
    pathway, images, retrieval = world
    calls = []

    def fake_solve(pathway, problems, settings, progress=True):
        calls.append((problems, settings))
        from generator.engine.solve import solve

        return solve(pathway, problems, settings, progress=False)

    monkeypatch.setattr(inversion, "solve", fake_solve)
    inversion.invert_pool5(pathway, images[:2], retrieval, quick_settings(iterations=1), k=2, patch=5)
    assert len(calls) == 1  # every variant of every image in one batch, one Settings
    problems = calls[0][0]
    assert [p.label for p in problems] == [f"img{i}-{v}" for i in range(2) for v in ("rand", "avg", "prior")]
    has_prior = [any(type(t).__name__ == "PatchPrior" for t in p.terms) for p in problems]
    assert has_prior == [False, False, True] * 2
    assert [p.init is None for p in problems] == [True, False, False] * 2
    assert torch.equal(problems[1].init, problems[2].init)


def test_unknown_variant_is_rejected(world):
    pathway, images, retrieval = world
    with pytest.raises(ValueError, match="unknown variant"):
        inversion.invert_pool5(pathway, images[:1], retrieval, quick_settings(), variants=("ours",))


def test_method_run_returns_pictures_and_numbers(world):
    pathway, images, _ = world
    with torch.no_grad():
        features = pathway(images)
    ctx = ClassContext(
        pathway=pathway, class_index=0, class_id="c0", class_name="blobs", images=images,
        image_names=[f"{i}.png" for i in range(len(images))], features=features, engine={}, seed=0,
    )
    params = {**inversion.DEFAULTS, "images": 1, "iterations": 3, "rematch_every": 2, "k": 2, "patch": 5}
    result = inversion.run(ctx, params)
    keys = [p.key for p in result.pictures]
    assert keys == ["img0-original", "img0-retrieved", "img0-rand", "img0-avg", "img0-prior"]
    assert all(p.caption and p.alt for p in result.pictures)
    assert "average of the 2 nearest centre patches" in result.pictures[1].caption  # k, not a fixed 10
    assert math.isfinite(result.pictures[-1].numbers["image_error"])
    assert result.numbers["database_pairs"] == 9 * 16
    assert {"image_error_rand", "image_error_avg", "image_error_prior"} <= set(result.numbers)


def test_settings_come_from_params_over_the_engine():
    settings = inversion.inversion_settings({"lr": 0.5, "jitter": 3}, {"iterations": 7})
    assert settings.iterations == 7 and settings.lr == inversion.INVERSION_SETTINGS["lr"]
    assert settings.jitter == inversion.INVERSION_SETTINGS["jitter"]
    assert settings == settings_from(None, **{**inversion.INVERSION_SETTINGS, "iterations": 7})
