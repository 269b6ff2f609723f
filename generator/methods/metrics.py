"""Numbers the atlas reports about pictures (not energies: nothing here is optimized)."""
from __future__ import annotations

import torch
from torch import Tensor


def colour_stats(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean (3,) and 3x3 covariance of all pixels of a set of images (N,3,H,W)."""
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1).double()
    mean = pixels.mean(1)
    centred = pixels - mean[:, None]
    return mean, centred @ centred.T / max(pixels.shape[1] - 1, 1)


def colour_distance(image: Tensor, references: Tensor) -> float:
    """Distance between the colour statistics of an image (3,H,W) and of reference images
    (N,3,H,W): ||mu_a - mu_b||_2 + ||Sigma_a - Sigma_b||_F over RGB pixels in [0, 1].

    The paper's claim is that the patch prior fixes the *global colour* L2+TV gets wrong; the
    first two moments of the pixel distribution are the simplest number that sees that."""
    mean_a, cov_a = colour_stats(image.unsqueeze(0) if image.dim() == 3 else image)
    mean_b, cov_b = colour_stats(references)
    return float((mean_a - mean_b).norm() + (cov_a - cov_b).norm())


def colour_distance_per_photo(image: Tensor, references: Tensor) -> float:
    """Median over the reference photos of `colour_distance(image, photo)`: how far the picture's
    colours are from a typical single photo's. The pooled `colour_distance` also counts how much
    the photos differ from each other (a beach photo beside a forest one), which no one picture
    has; a picture with one photo's palette is penalized there, not here."""
    return float(torch.tensor([colour_distance(image, photo[None]) for photo in references]).median())


def high_frequency_share(images: Tensor, cutoff: float = 0.25) -> Tensor:
    """(N,) share of each image's power (grey, mean removed) above `cutoff` cycles per pixel.

    A noise measure for synthetic pictures: white noise puts ~80% of its power there, Imagenette
    photos ~3% (mean of the 500 alexnet-slim catalog images), so a picture that reads as static
    scores far above any photo."""
    grey = images.mean(1)
    grey = grey - grey.mean((1, 2), keepdim=True)
    power = torch.fft.rfft2(grey).abs().pow(2)
    fy = torch.fft.fftfreq(grey.shape[1]).view(-1, 1)
    fx = torch.fft.rfftfreq(grey.shape[2]).view(1, -1)
    high = (fx * fx + fy * fy).sqrt() > cutoff
    return (power * high).sum((1, 2)) / power.sum((1, 2)).clamp_min(1e-12)
