"""Transforms keep the image size, draw their randomness from the solve's generator, and let
the gradient through."""
import torch

from generator.engine.transforms import Jitter, RandomScale


def test_jitter_rolls_the_whole_batch_by_one_shift():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    rolled = Jitter(2)(images, torch.Generator().manual_seed(0))
    shifts = {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
              if torch.equal(torch.roll(images, (dy, dx), (2, 3)), rolled)}
    assert len(shifts) == 1


def test_random_scale_keeps_the_size_and_zooms_about_the_centre():
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.equal(RandomScale(1.0, 1.0)(images, torch.Generator()), images)
    zoomed = RandomScale(2.0, 2.0)(images, torch.Generator())
    expected = torch.nn.functional.interpolate(images, size=(64, 64), mode="bilinear", align_corners=False)[..., 16:48, 16:48]
    assert zoomed.shape == images.shape and torch.allclose(zoomed, expected)
    shrunk = RandomScale(0.5, 0.5)(images, torch.Generator())
    assert shrunk.shape == images.shape and torch.equal(shrunk[..., :8, :8], shrunk[..., :1, :1].expand(-1, -1, 8, 8))
    shrunk.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_random_scale_draws_from_the_generator():
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    scale = RandomScale(0.8, 1.2)
    first = scale(images, torch.Generator().manual_seed(3))
    assert torch.equal(first, scale(images, torch.Generator().manual_seed(3)))
    draws = [scale(images, torch.Generator().manual_seed(seed)) for seed in range(6)]
    assert any(not torch.equal(draws[0], other) for other in draws[1:])
