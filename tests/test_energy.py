"""The energy pieces: values they must take on simple inputs."""
import torch

from generator import energy


def test_class_score_is_minus_the_target_logit():
    fc8 = torch.tensor([[1.0, 5.0, -2.0], [0.5, 0.0, 3.0]])
    assert torch.equal(energy.class_score(fc8, torch.tensor([1, 2])), torch.tensor([-5.0, -3.0]))


def test_feature_inversion_is_normalized_squared_error():
    target = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(energy.feature_inversion(target, target), torch.zeros(2))
    assert torch.allclose(energy.feature_inversion(torch.zeros_like(target), target), torch.ones(2))
    assert torch.allclose(energy.feature_error(2 * target, target), torch.ones(2))


def test_regularizers_prefer_smooth_mid_grey_images():
    generator = torch.Generator().manual_seed(0)
    grey = torch.full((1, 3, 16, 16), 0.5)
    noise = torch.rand(1, 3, 16, 16, generator=generator)
    assert energy.tv(grey, 1.0).item() == 0.0 and energy.tv(noise, 1.0).item() > 0.1
    assert energy.l2(grey, 1.0).item() == 0.0 and energy.l2(noise, 1.0).item() > 0.0
    assert energy.alpha_norm(grey, 1.0).item() == 0.0
    # alpha = 6 barely penalizes mid-range values but punishes the extremes
    assert energy.alpha_norm(torch.full((1, 3, 4, 4), 0.6), 1.0) < 1e-5 < energy.alpha_norm(torch.ones(1, 3, 4, 4), 1.0)
    assert torch.allclose(energy.tv(noise, 3.0), 3 * energy.tv(noise, 1.0))


def test_patch_prior_is_zero_at_its_matches_and_per_sample():
    patches = torch.randn(2, 10, 12, generator=torch.Generator().manual_seed(1))
    matched = patches.clone()
    matched[1] += 1.0
    value = energy.patch_prior(patches, matched, 2.0)
    assert value.shape == (2,) and value[0] == 0 and torch.isclose(value[1], torch.tensor(2.0))


def test_colour_distance_sees_a_colour_cast():
    generator = torch.Generator().manual_seed(2)
    references = torch.rand(4, 3, 16, 16, generator=generator)
    image = references[0]
    tinted = (image + torch.tensor([0.3, 0.0, -0.3]).view(3, 1, 1)).clamp(0, 1)
    assert energy.colour_distance(references.mean(0) * 0 + image, image.unsqueeze(0)) < 1e-9
    assert energy.colour_distance(tinted, references) > energy.colour_distance(image, references) + 0.2


def test_patch_prior_folded_equals_patch_prior_in_value_and_gradient():
    import torch.nn.functional as F

    from generator.energy import patch_prior, patch_prior_folded
    from generator.prior import unfold_patches

    generator = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, 21, 21, generator=generator, requires_grad=True)
    patch, stride = 5, 3
    matched = torch.randn(2, 36, 75, generator=generator)
    fold = lambda cols: F.fold(cols.transpose(1, 2), (21, 21), kernel_size=patch, stride=stride)  # noqa: E731
    coverage = fold(torch.ones(1, 36, patch * patch))
    plain = patch_prior(unfold_patches(image, patch, stride), matched, 2.0)
    (plain_grad,) = torch.autograd.grad(plain.sum(), image)
    folded = patch_prior_folded(image, coverage, fold(matched), matched.pow(2).flatten(1).sum(1), 36 * 75, 2.0)
    (folded_grad,) = torch.autograd.grad(folded.sum(), image)
    assert torch.allclose(plain, folded, rtol=1e-4)
    assert torch.allclose(plain_grad, folded_grad, atol=1e-5)


def test_squared_tv_matches_autograd_of_the_plain_formula():
    """The hand-written TV gradient equals autograd's on the literal mean(dx^2 + dy^2)."""
    images = torch.rand(3, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    (energy.tv(images, 4.0) * weights).sum().backward()
    fast = images.grad.clone()
    images.grad = None
    dx = images[..., :-1, 1:] - images[..., :-1, :-1]
    dy = images[..., 1:, :-1] - images[..., :-1, :-1]
    plain = 4.0 * (dx.pow(2) + dy.pow(2)).flatten(1).mean(1)
    (plain * weights).sum().backward()
    assert torch.allclose(energy.tv(images, 4.0), plain)
    assert torch.allclose(fast, images.grad)
    assert torch.autograd.gradcheck(lambda x: energy.tv(x, 1.0), (images.detach().requires_grad_(True),))


def test_patch_prior_normalized_equals_normalizing_then_the_folded_prior():
    """The hand-written backward through the global normalization equals autograd's."""
    from generator.energy import patch_prior_folded, patch_prior_normalized
    from generator.prior import normalize_images

    generator = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, 10, 12, generator=generator, dtype=torch.float64, requires_grad=True)
    coverage = torch.randint(0, 3, (1, 1, 10, 12), generator=generator).double()
    folded = torch.randn(3, 3, 10, 12, generator=generator, dtype=torch.float64)
    matched_sq = 40 + torch.rand(3, generator=generator, dtype=torch.float64)
    weights = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    fast = patch_prior_normalized(images, coverage, folded, matched_sq, 50, 3.0)
    (fast_grad,) = torch.autograd.grad((fast * weights).sum(), images)
    plain = patch_prior_folded(normalize_images(images), coverage, folded, matched_sq, 50, 3.0)
    (plain_grad,) = torch.autograd.grad((plain * weights).sum(), images)
    assert torch.allclose(fast, plain) and torch.allclose(fast_grad, plain_grad)
    assert torch.autograd.gradcheck(
        lambda x: patch_prior_normalized(x, coverage, folded, matched_sq, 50, 3.0), (images.detach().requires_grad_(True),)
    )


def test_l2_gradient_is_autograds_of_the_plain_formula():
    images = torch.rand(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    centre = torch.tensor([0.4, 0.5, 0.6], dtype=torch.float64).view(1, 3, 1, 1)
    assert torch.allclose(energy.l2(images, 3.0, centre), 3.0 * (images - centre).pow(2).flatten(1).mean(1))
    assert torch.autograd.gradcheck(lambda x: energy.l2(x, 3.0, centre), (images,))
    assert torch.autograd.gradcheck(lambda x: energy.l2(x, 1.0), (images,))  # scalar centre
