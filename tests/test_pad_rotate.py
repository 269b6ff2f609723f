"""generator.engine.pad_rotate.py: Pad and RandomRotate keep the size, move the picture as said,
and draw one random value per step from the solve's generator."""
from __future__ import annotations

import torch

from generator.engine.pad_rotate import Pad, RandomRotate


def numbered(size: int = 16) -> torch.Tensor:
    """(1, 3, S, S) with every pixel a distinct value in (0, 1), so a shift can be read back."""
    return (torch.arange(3 * size * size, dtype=torch.float32).view(1, 3, size, size) + 1) / (3 * size * size + 2)


def test_pad_shifts_with_a_grey_border_instead_of_wrapping() -> None:
    images, generator = numbered(), torch.Generator().manual_seed(0)
    shifts = set()
    for _ in range(40):
        out = Pad(3)(images, generator)
        assert out.shape == images.shape
        # the input's pixel (8, 8) is somewhere within 3 px; the whole overlap moved with it
        where = (out[0, 0] == images[0, 0, 8, 8]).nonzero()
        assert len(where) == 1
        dy, dx = (where[0] - 8).tolist()
        assert abs(dy) <= 3 and abs(dx) <= 3
        shifts.add((dy, dx))
        shifted = torch.full_like(images, 0.5)
        src = images[..., max(-dy, 0) : 16 - max(dy, 0), max(-dx, 0) : 16 - max(dx, 0)]
        shifted[..., max(dy, 0) : 16 - max(-dy, 0), max(dx, 0) : 16 - max(-dx, 0)] = src
        assert torch.equal(out, shifted)  # grey where the shift uncovered pixels, nothing wrapped
    assert len(shifts) > 10
    assert torch.equal(Pad(0)(images, generator), images)


def test_rotate_turns_a_bar_and_leaves_a_disc() -> None:
    size = 64
    yy, xx = torch.meshgrid(torch.arange(size) - size / 2 + 0.5, torch.arange(size) - size / 2 + 0.5, indexing="ij")
    disc = (0.5 + 0.5 * (xx**2 + yy**2 < 15**2).float()).expand(1, 3, size, size)  # on grey, like the fill
    bar = (0.5 + 0.5 * (yy.abs() < 3).float()).expand(1, 3, size, size)
    generator = torch.Generator().manual_seed(1)
    changes = []
    for _ in range(20):
        state = generator.get_state()
        out = RandomRotate(30)(torch.cat([disc, bar]), generator)
        assert out.shape == (2, 3, size, size)
        assert (out[0] - disc[0]).abs().mean() < 0.02  # a centred disc is rotation-invariant
        changes.append(float((out[1] - bar[0]).abs().mean()))
        # one draw per step for the whole batch: the bar alone gets the same rotation
        alone = RandomRotate(30)(bar, torch.Generator().set_state(state))
        assert torch.allclose(alone[0], out[1], atol=1e-6)
    assert max(changes) > 0.05 and min(changes) < max(changes)
    assert torch.equal(RandomRotate(0)(bar, generator), bar)


def test_rotate_fills_the_corners_with_grey() -> None:
    white = torch.ones(1, 3, 32, 32)
    generator = torch.Generator().manual_seed(0)
    out = torch.stack([RandomRotate(45)(white, generator) for _ in range(10)])
    assert float(out[..., 0, 0].min()) < 0.75  # some draw turned a corner out of the picture...
    assert float(out.min()) >= 0.5 - 1e-6  # ...and filled it with grey, never black


def test_the_engine_sees_through_them_and_a_picture_does_not_depend_on_its_batch(tiny_alexnet) -> None:
    from generator.engine.settings import Settings
    from generator.engine.solve import Problem, solve
    from generator.engine.terms import TV, ClassScore

    pathway = tiny_alexnet(size=64)
    settings = Settings(iterations=15, lr=0.05, jitter=2)
    transforms = [Pad(4), RandomRotate(10)]
    alone = solve(pathway, [Problem(ClassScore(1) + 5.0 * TV(), seed=3)], settings, transforms=transforms, progress=False)[0]
    batch = solve(pathway, [Problem([ClassScore(2)], seed=0), Problem(ClassScore(1) + 5.0 * TV(), seed=3)], settings,
                  transforms=transforms, progress=False)
    assert alone.energy[-1] < alone.energy[0]
    assert torch.allclose(batch[1].image, alone.image, atol=1e-3)
    plain = solve(pathway, [Problem(ClassScore(1) + 5.0 * TV(), seed=3)], settings, transforms=[], progress=False)[0]
    assert not torch.allclose(plain.image, alone.image, atol=1e-3)  # the transforms were applied


def test_rotate_samples_the_batch_through_one_grid_exactly_as_through_a_grid_per_image() -> None:
    """The rotation builds its sampling grid once and shares it across the batch; images and
    gradients must equal those of a grid per image (the plain form) bit for bit."""
    import math

    import torch.nn.functional as F

    images = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    weights = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    for seed in range(3):
        fast_in, plain_in = images.clone().requires_grad_(True), images.clone().requires_grad_(True)
        generator = torch.Generator().manual_seed(seed)
        fast = RandomRotate(15)(fast_in, generator)
        angle = math.radians(float((torch.rand((), generator=torch.Generator().manual_seed(seed)) * 2 - 1) * 15))
        theta = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0]])
        grid = F.affine_grid(theta.expand(4, 2, 3), [4, 3, 24, 24], align_corners=False)
        plain = F.grid_sample(plain_in - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
        (fast * weights).sum().backward()
        (plain * weights).sum().backward()
        assert torch.equal(fast, plain)
        assert fast_in.grad is not None and plain_in.grad is not None and torch.equal(fast_in.grad, plain_in.grad)
        assert not torch.equal(fast, images)  # it did turn
