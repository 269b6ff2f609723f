"""The feature-distribution term (VITAL's sorted per-channel matching): zero on its own reference,
larger for noise, lowered by solve, and per problem in a batch."""
import pytest
import torch
import torch.nn.functional as F

from generator.engine.settings import Settings
from generator.engine.solve import Problem, solve
from generator.engine.terms import (
    BANDS,
    FeatureDistribution,
    Step,
    gaussian_blur,
    pixel_band,
    quantiles,
    reference_distribution,
    sliced_distance,
)
from generator.methods import method_module
from generator.methods.common import distribution_layers
from generator.methods.layers import layer_features
from generator.nets.pathway import Activations

LAYERS = ["features.1", "pool5"]  # a hooked trunk module (conv1's ReLU) and a pathway level


def features_of(pathway, images):
    return layer_features(pathway, images, LAYERS)


def step_for(pathway, images) -> Step:
    found = features_of(pathway, images)
    acts = Activations(pool5=found["pool5"], fc6=None, fc7=torch.zeros(len(images), 1), fc8=torch.zeros(len(images), 1))
    return Step(0, 1, images, acts, {"features.1": found["features.1"]})


def distances(pathway, terms, images):
    group = terms[0].group(terms, None, pathway)
    step = step_for(pathway, images)
    return group(step), group.report(step)["distribution"]


def test_quantiles_resample_a_sorted_set_by_value():
    ordered = torch.arange(8.0)
    assert torch.equal(quantiles(ordered, 8), ordered)
    assert torch.allclose(quantiles(ordered, 4), torch.tensor([0.5, 2.5, 4.5, 6.5]))  # each pair's middle


def test_sliced_distance_ignores_where_the_values_sit():
    features = torch.rand(1, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    shuffled = features.flatten(2)[:, :, torch.randperm(25)].view(1, 4, 5, 5)
    target = reference_distribution(features)[None]
    assert float(sliced_distance(shuffled, target)) < 1e-12  # a distribution, not a map
    assert float(sliced_distance(features * 2, target)) > 0.1
    assert float(sliced_distance(features * 2, target, moments=1.0)) > float(sliced_distance(features * 2, target))


def test_the_reference_itself_is_at_zero_and_noise_is_far(tiny_alexnet, smooth_images):
    pathway = tiny_alexnet(size=64)
    photo = smooth_images(1, size=64, seed=1)
    noise = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    term = FeatureDistribution(features_of(pathway, photo))
    _, own = distances(pathway, [term], photo)
    _, far = distances(pathway, [term], noise)
    assert float(own) < 1e-10
    assert float(far) > 0.05


def test_batched_problems_keep_their_own_references(tiny_alexnet, smooth_images):
    pathway = tiny_alexnet(size=64)
    a, b = smooth_images(1, size=64, seed=1), torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    terms = [FeatureDistribution(features_of(pathway, a), {"pool5": 2.0, "features.1": 1.0}),
             FeatureDistribution(features_of(pathway, b), {"pool5": 2.0, "features.1": 1.0}, weight=3.0)]
    energy, report = distances(pathway, terms, torch.cat([a, b]))
    assert float(report.abs().max()) < 1e-10  # each image at its own reference
    _, crossed = distances(pathway, terms, torch.cat([b, a]))
    assert float(crossed.min()) > 0.05  # and far from the other's
    alone, _ = distances(pathway, terms[1:], a)
    # the same problem alone: energy = weight 3 x (2 + 1) x the layer-weighted mean it reports
    assert torch.allclose(alone, 3.0 * 3.0 * crossed[1:])


def test_solve_lowers_the_distance_to_a_set_of_photos(tiny_alexnet, smooth_images):
    pathway = tiny_alexnet(size=64)
    photos = smooth_images(4, size=64, seed=3)
    term = 10.0 * FeatureDistribution(features_of(pathway, photos), {"features.1": 1.0, "pool5": 1.0})
    settings = Settings(iterations=40, lr=0.05, param="pixels", l2=0.0, tv=0.0, jitter=0)
    start = torch.full((3, 64, 64), 0.5)
    after = solve(pathway, [Problem([term], init=start)], settings, progress=False)[0]
    _, initial = distances(pathway, [term], start[None])
    assert after.numbers["distribution"] < 0.5 * float(initial)


# ---------------------------------------------------------------------------------------------
# The methods with a reference set


@pytest.mark.parametrize("method", ["classviz", "location", "topics", "ensemble"])
def test_a_method_holds_its_pictures_to_their_references_when_asked(tiny_context, method):
    ctx = tiny_context(n=10)
    run = method_module(method).run
    small = {"topics": {"k": 2, "images": 10}, "ensemble": {"masks": 2, "inits": 1}}.get(method, {})
    off = run(ctx, small)
    on = run(ctx, {**small, "distribution": 50.0, "distribution_layers": "conv1,pool5"})
    changed = [p.key for p, q in zip(off.pictures, on.pictures) if not torch.equal(p.image, q.image)]
    assert changed and all("feature distribution" in p.caption for p in on.pictures if p.key in changed)
    if method == "classviz":
        assert changed == ["prior"]  # the baseline stays L2 + TV


def test_topic_pictures_record_their_distance_to_their_own_and_the_other_topics(tiny_context):
    ctx = tiny_context(n=10)
    params = {"k": 2, "images": 10, "distribution_layers": "conv1,pool5"}
    off = method_module("topics").run(ctx, params)
    on = method_module("topics").run(ctx, {**params, "distribution": 50.0})
    assert off.numbers["distribution_layers"] == ["features.1", "pool5"]
    for before, after in zip(off.pictures, on.pictures):
        assert {"distribution_own", "distribution_others"} <= set(after.numbers)
        assert after.numbers["distribution_own"] < before.numbers["distribution_own"]  # the term pulls it there


def test_distribution_layers_by_name_or_module(tiny_alexnet):
    pathway = tiny_alexnet(size=64)
    assert distribution_layers(pathway, "conv1, conv9, pool5, fc6, features.4") == ["features.1", "pool5", "fc6", "features.4"]
    assert distribution_layers(pathway, "pool5, bands, band1") == ["pool5", *BANDS]
    assert distribution_layers(pathway, "band2") == ["band2"]
    with pytest.raises(ValueError, match="neither"):
        distribution_layers(pathway, "layer9")


# ---------------------------------------------------------------------------------------------
# The picture's own Laplacian bands: a distribution no network reads


def blocks(seed: int, size: int = 64, side: int = 8) -> torch.Tensor:
    """(1, 3, size, size) random colour squares: hard edges every `side` pixels."""
    coarse = torch.rand(1, 3, size // side, size // side, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=size, mode="nearest")


def blurred(images: torch.Tensor, passes: int = 3) -> torch.Tensor:
    for _ in range(passes):
        images = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return images


def test_pixel_bands_rebuild_the_image_and_see_its_blur():
    image = blocks(0)
    levels = [pixel_band(image, name) for name in BANDS]
    assert all(band.shape == image.shape for band in levels)
    assert torch.allclose(sum(levels) + gaussian_blur(image, 8.0), image, atol=1e-5)  # the detail at each scale
    shifted = pixel_band(torch.roll(image, (3, 5), (2, 3)), "band1")
    assert torch.allclose(shifted[..., 16:-16, 16:-16], torch.roll(levels[1], (3, 5), (2, 3))[..., 16:-16, 16:-16], atol=1e-5)
    soft = blurred(image)
    target = reference_distribution(levels[0])[None]
    assert float(sliced_distance(pixel_band(soft, "band0"), target)) > 0.4  # a blur loses the edges' tails
    assert float(sliced_distance(pixel_band(blocks(1), "band0"), target)) < 0.1  # other squares, same edges


def test_solve_gives_a_soft_picture_its_references_edges_without_a_network_layer(tiny_alexnet):
    pathway = tiny_alexnet(size=64)
    photos = torch.cat([blocks(seed) for seed in range(1, 4)])
    term = 10.0 * FeatureDistribution({name: pixel_band(photos, name) for name in BANDS})
    group = term.group([term], None, pathway)
    assert group.captures() == set()  # nothing of the net is hooked
    settings = Settings(iterations=60, lr=0.01, param="pixels", l2=0.0, tv=0.0, jitter=0)
    start = blurred(blocks(0))[0]
    after = solve(pathway, [Problem([term], init=start)], settings, progress=False)[0]
    before = float(group.report(Step(0, 1, start[None], None, {}))["distribution"])  # type: ignore[arg-type]
    assert after.numbers["distribution"] < 0.5 * before
    sharp, soft, found = (pixel_band(x[None] if x.dim() == 3 else x, "band0").std() for x in (photos, start, after.image))
    assert float(found - soft) > 0.5 * float(sharp - soft)  # the fine band's contrast moved most of the way


def test_a_method_holds_its_pictures_to_their_references_bands(tiny_context):
    ctx = tiny_context(n=10)
    params = {"k": 2, "images": 10, "distribution_layers": "pool5,bands"}
    on = method_module("topics").run(ctx, {**params, "distribution": 50.0})
    assert on.numbers["distribution_layers"] == ["pool5", *BANDS]
    assert all("band0, band1, band2, band3 feature distribution" in p.caption for p in on.pictures)
