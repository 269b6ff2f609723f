"""generator/engine/decorrelated.py: any image can be a start, every params value is an image in
(0, 1), and an equal step in every coordinate changes the image the way photos vary (low
frequencies and correlated colour channels), unlike a step in raw pixels."""
from __future__ import annotations

import pytest
import torch

from generator.engine.decorrelated import COLOUR_SQRT, Decorrelated, spectrum_scale


@pytest.mark.parametrize("fourier", [True, False])
@pytest.mark.parametrize("size", [32, 33])
def test_init_then_image_gives_the_start_back(fourier: bool, size: int) -> None:
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)) * 0.98 + 0.01
    param = Decorrelated(fourier=fourier)
    assert torch.allclose(param.image(param.init(images)), images, atol=1e-4)


@pytest.mark.parametrize("fourier", [True, False])
def test_every_params_value_is_an_image(fourier: bool) -> None:
    param = Decorrelated(fourier=fourier)
    params = 20 * torch.randn_like(param.init(torch.full((1, 3, 16, 16), 0.5)))
    image = param.image(params)
    assert image.shape == (1, 3, 16, 16) and float(image.min()) >= 0 and float(image.max()) <= 1


def sign_step(param: Decorrelated | None, size: int = 64) -> torch.Tensor:
    """The image change of one Adam-like step (the same size in every coordinate, random sign)."""
    grey = torch.full((1, 3, size, size), 0.5)
    generator = torch.Generator().manual_seed(0)
    if param is None:
        return 0.01 * torch.randn(grey.shape, generator=generator).sign()
    params = param.init(grey)
    return param.image(params + 0.01 * torch.randn(params.shape, generator=generator).sign()) - grey


def low_over_high_power(delta: torch.Tensor) -> float:
    power = torch.fft.rfft2(delta[0].mean(0)).abs() ** 2
    size = delta.shape[-1]
    f = torch.sqrt(torch.fft.fftfreq(size).view(-1, 1) ** 2 + torch.fft.rfftfreq(size).view(1, -1) ** 2)
    return float(power[(f > 0) & (f < 0.1)].mean() / power[f > 0.3].mean())


def channel_correlation(delta: torch.Tensor) -> float:
    flat = delta[0].flatten(1)
    return float(torch.corrcoef(flat)[0, 1])


def test_a_fourier_step_is_mostly_low_frequency() -> None:
    assert low_over_high_power(sign_step(Decorrelated(fourier=True))) > 20
    assert 0.5 < low_over_high_power(sign_step(Decorrelated(fourier=False))) < 2
    assert 0.5 < low_over_high_power(sign_step(None)) < 2


def test_a_decorrelated_step_moves_the_channels_together_as_photo_colours_do() -> None:
    assert channel_correlation(sign_step(Decorrelated(fourier=False))) > 0.7
    assert abs(channel_correlation(sign_step(None))) < 0.1


def test_the_step_size_matches_raw_pixels() -> None:
    """The learning rate means about the same: an equal step moves pixels by a similar RMS."""
    pixels = float(sign_step(None).pow(2).mean().sqrt())
    for fourier in (True, False):
        moved = float(sign_step(Decorrelated(fourier=fourier)).pow(2).mean().sqrt())
        assert 0.4 * pixels < moved < 2.5 * pixels


def test_the_engine_optimizes_through_it(tiny_alexnet) -> None:
    """In solve: the class score rises, the image stays in [0, 1], a problem's init is its start,
    and kept pixels stay fixed (completion)."""
    from generator.engine.settings import JITTER_ONLY, Settings
    from generator.engine.solve import Problem, solve
    from generator.engine.terms import ClassScore

    pathway = tiny_alexnet(size=64)
    settings = Settings(**JITTER_ONLY, iterations=25, lr=0.05, jitter=0)  # the parameterization alone
    start = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    keep = torch.zeros(1, 64, 64)
    keep[:, :, :32] = 1
    problems = [Problem([ClassScore(1)], seed=0), Problem([ClassScore(2)], init=start, keep=keep, seed=1)]
    with torch.no_grad():
        before = pathway(torch.stack([torch.full((3, 64, 64), 0.5), start])).fc8
    free, kept = solve(pathway, problems, settings, param=Decorrelated(), progress=False)
    assert free.energy[-1] < free.energy[0] and kept.energy[-1] < kept.energy[0]
    assert free.numbers["score"] > float(before[0, 1]) and kept.numbers["score"] > float(before[1, 2])
    assert 0 <= float(free.image.min()) and float(free.image.max()) <= 1
    assert torch.allclose(kept.image[:, :, :32], start[:, :, :32], atol=1e-5)
    assert (kept.image[:, :, 32:] - start[:, :, 32:]).abs().mean() > 1e-3


def high_frequency_share(images: torch.Tensor, cutoff: float) -> float:
    """Share of the images' (mean-removed) spectral power above `cutoff` cycles per pixel."""
    power = torch.fft.rfft2(images - images.mean((2, 3), keepdim=True)).abs() ** 2
    size = images.shape[-1]
    high = (torch.fft.fftfreq(size).abs().view(-1, 1) > cutoff) | (torch.fft.rfftfreq(size).view(1, -1) > cutoff)
    return float(power[..., high].sum() / power.sum())


def test_octaves_open_the_frequencies_coarse_to_fine() -> None:
    noise = (0.5 + 0.1 * torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    param = Decorrelated(octaves=3, iterations=9)
    params = param.init(noise)
    shares = []
    for _ in range(9):
        shares.append((high_frequency_share(param.image(params), 0.13), high_frequency_share(param.image(params), 0.26)))
        param.after_step(params)
    assert all(coarse < 1e-3 and finer < 1e-3 for coarse, finer in shares[:3])  # steps 0-2: |f| <= 1/8 only (the
    # sigmoid's harmonics leak a trace)
    assert all(coarse > 0.5 and finer < 1e-3 for coarse, finer in shares[3:6])  # steps 3-5: up to 1/4
    assert all(finer > 0.3 for _, finer in shares[6:])  # the last third: every frequency
    assert torch.allclose(param.image(params), Decorrelated().image(params))  # and so is the final picture


def test_one_octave_is_the_plain_parameterization() -> None:
    params = Decorrelated().init(torch.rand(1, 3, 32, 32) * 0.9 + 0.05)
    assert torch.equal(Decorrelated(octaves=1, iterations=10).image(params), Decorrelated().image(params))


def reference_image(param: Decorrelated, params: torch.Tensor) -> torch.Tensor:
    """The parameterization written plainly (irfft, einsum colour mix, then the gain): what the
    engine's faster colour product must reproduce bit for bit, so no picture changes."""
    signal = params
    if param.fourier:
        size = params.shape[2]
        spectrum = torch.view_as_complex(params) * spectrum_scale(size, param.decay)
        signal = torch.fft.irfft2(spectrum, s=(size, size), norm="ortho")
    return torch.sigmoid(param.gain * torch.einsum("ij,bjhw->bihw", COLOUR_SQRT, signal))


@pytest.mark.parametrize("fourier", [True, False])
def test_the_fast_colour_product_gives_the_plain_images_and_gradients_exactly(fourier: bool) -> None:
    param = Decorrelated(fourier=fourier)
    start = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(2)) * 0.9 + 0.05
    params = (param.init(start) + 0.3 * torch.randn(param.init(start).shape, generator=torch.Generator().manual_seed(3)))
    weights = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(4))
    fast, plain = params.clone().requires_grad_(True), params.clone().requires_grad_(True)
    fast_image, plain_image = param.image(fast), reference_image(param, plain)
    (fast_image * weights).sum().backward()
    (plain_image * weights).sum().backward()
    assert torch.equal(fast_image, plain_image)
    assert fast.grad is not None and plain.grad is not None and torch.equal(fast.grad, plain.grad)
