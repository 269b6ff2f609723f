"""The patch prior term: its folded and normalized forms equal the plain prior in value and
gradient, and its schedule."""
import pytest
import torch
import torch.nn.functional as F

from generator.engine.patch_database import unfold_patches
from generator.engine.patch_prior import (
    PatchPrior,
    global_normalize,
    patch_prior,
    patch_prior_folded,
    patch_prior_normalized,
)


def test_patch_prior_is_zero_at_its_matches_and_per_sample():
    patches = torch.randn(2, 10, 12, generator=torch.Generator().manual_seed(1))
    matched = patches.clone()
    matched[1] += 1.0
    value = patch_prior(patches, matched)
    assert value.shape == (2,) and value[0] == 0 and torch.isclose(value[1], torch.tensor(1.0))


def test_patch_prior_folded_equals_patch_prior_in_value_and_gradient():
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, 21, 21, generator=generator, requires_grad=True)
    patch, stride = 5, 3
    matched = torch.randn(2, 36, 75, generator=generator)
    fold = lambda cols: F.fold(cols.transpose(1, 2), (21, 21), kernel_size=patch, stride=stride)  # noqa: E731
    coverage = fold(torch.ones(1, 36, patch * patch))
    plain = patch_prior(unfold_patches(image, patch, stride), matched)
    (plain_grad,) = torch.autograd.grad(plain.sum(), image)
    folded = patch_prior_folded(image, coverage, fold(matched), matched.pow(2).flatten(1).sum(1), 36 * 75)
    (folded_grad,) = torch.autograd.grad(folded.sum(), image)
    assert torch.allclose(plain, folded, rtol=1e-4)
    assert torch.allclose(plain_grad, folded_grad, atol=1e-5)


def test_patch_prior_normalized_equals_normalizing_then_the_folded_prior():
    """The hand-written backward through the global normalization equals autograd's."""
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, 10, 12, generator=generator, dtype=torch.float64, requires_grad=True)
    coverage = torch.randint(0, 3, (1, 1, 10, 12), generator=generator).double()
    folded = torch.randn(3, 3, 10, 12, generator=generator, dtype=torch.float64)
    matched_sq = 40 + torch.rand(3, generator=generator, dtype=torch.float64)
    weights = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    fast = patch_prior_normalized(images, coverage, folded, matched_sq, 50)
    (fast_grad,) = torch.autograd.grad((fast * weights).sum(), images)
    plain = patch_prior_folded(global_normalize(images)[0], coverage, folded, matched_sq, 50)
    (plain_grad,) = torch.autograd.grad((plain * weights).sum(), images)
    assert torch.allclose(fast, plain) and torch.allclose(fast_grad, plain_grad)
    assert torch.autograd.gradcheck(
        lambda x: patch_prior_normalized(x, coverage, folded, matched_sq, 50), (images.detach().requires_grad_(True),)
    )


def test_prior_schedule_is_off_then_linear_then_full():
    class Database:
        patch, stride = 5, 4

    group = PatchPrior(Database(), start=0.2, full=0.6).group([PatchPrior(Database(), start=0.2, full=0.6)], None,
                                                            type("P", (), {"mean": torch.zeros(1)})())
    factors = [group.schedule(step, 11) for step in range(11)]
    assert factors[:2] == [0.0, 0.0]
    assert abs(factors[4] - 0.5) < 1e-9
    assert factors[6:] == [1.0] * 5
    assert PatchPrior(Database()).group([PatchPrior(Database())], None, type("P", (), {"mean": torch.zeros(1)})()).schedule(0, 11) == 1.0


def test_photos_normalization_compares_the_image_by_the_databases_mean_and_std():
    """prior_normalize 'photos': the image's patches are normalized by the photos' (mean, std), so
    a global brightening the paper's normalization cannot see raises the prior's value."""
    from generator.engine.patch_database import PatchDatabase
    from generator.engine.patch_prior import PatchPrior

    photos = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    database = PatchDatabase.from_images(photos, patch=4, stride=4, normalize="photos")
    flat = photos.flatten(1)
    assert database.reference == pytest.approx((float(flat.mean()), float(flat.std(1).mean())))
    group = PatchPrior.group_class([PatchPrior(database, normalize="photos")], None, torch.device("cpu"))
    mean, std = database.reference
    assert torch.allclose(group.normalize(photos), (photos - mean) / std)
    paper_database = PatchDatabase.from_images(photos, patch=4, stride=4)
    paper = PatchPrior.group_class([PatchPrior(paper_database)], None, torch.device("cpu"))
    assert torch.allclose(paper.normalize(photos + 0.2), paper.normalize(photos), atol=1e-5)  # blind to brightness
    assert not torch.allclose(group.normalize(photos + 0.2), group.normalize(photos))


def test_a_photos_database_keeps_each_photos_brightness_and_must_match_the_prior():
    """normalize 'photos' cuts the database as the prior cuts the picture (one fixed affine map):
    a dark photo's patches stay darker than a bright one's, where the paper's per-image
    normalization makes both zero-mean. A database cut one way refuses a prior of the other."""
    from generator.engine.patch_database import PatchDatabase
    from generator.engine.patch_prior import PatchPrior

    texture = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.2
    photos = torch.cat([texture + 0.1, texture + 0.6])  # the same texture, dark and bright
    fixed = PatchDatabase.from_images(photos, patch=4, stride=4, normalize="photos")
    own = PatchDatabase.from_images(photos, patch=4, stride=4)
    assert fixed.normalization == "photos" and own.normalization == "image"
    half = fixed.size // 2
    assert float(fixed.patches[:half].mean()) < -0.5 < 0.5 < float(fixed.patches[half:].mean())
    assert torch.allclose(own.patches[:half], own.patches[half:], atol=1e-4)
    with pytest.raises(ValueError, match="differently"):
        PatchPrior.group_class([PatchPrior(own, normalize="photos")], None, torch.device("cpu"))
    with pytest.raises(ValueError, match="differently"):
        PatchPrior.group_class([PatchPrior(fixed, normalize="image")], None, torch.device("cpu"))


def test_a_patch_gets_the_same_match_alone_as_in_a_large_batch():
    """faiss searches a few queries one by one and many by a matrix product, two roundings of
    the same distance; the prior uses one path for every batch size, so a near-tie is decided the
    same way whatever else is searched with it."""
    from generator.engine.patch_database import PatchDatabase

    generator = torch.Generator().manual_seed(0)
    base = torch.randn(300, 12, generator=generator)
    # pairs of database patches a hair apart: queries sit almost exactly between the two
    database = PatchDatabase(torch.cat([base, base + 1e-6 * torch.randn(300, 12, generator=generator)]), patch=2, stride=2)
    queries = base.repeat(40, 1) + 1e-3 * torch.randn(12_000, 12, generator=generator)
    together = database.nearest(queries)[0]
    alone = torch.cat([database.nearest(chunk)[0] for chunk in queries.split(100)])
    assert together.shape == (12_000,) and set(together.tolist()) - set(range(600)) == set()
    assert torch.equal(together, alone)
