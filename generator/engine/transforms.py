"""What the network sees each step: random transforms of the whole batch (Lucid's
"transformation robustness"). A pattern that survives them is a pattern of the image, not an
adversarial alignment with the network's pixel grid.

A transform is a callable `(images (B,3,S,S), generator) -> images` drawing its randomness
from the solve's generator, so a problem's picture does not depend on what else is batched
with it. Transforms keep the image size, so feature targets and spatial masks still apply.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


class Transform(Protocol):
    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor: ...


@dataclass(frozen=True)
class Jitter:
    """Roll the batch by up to `pixels` in each direction (wrapping around)."""

    pixels: int

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        shift = torch.randint(-self.pixels, self.pixels + 1, (2,), generator=generator).tolist()
        return images if shift == [0, 0] else torch.roll(images, shifts=shift, dims=(2, 3))


@dataclass(frozen=True)
class RandomScale:
    """Rescale the batch about its centre by a factor drawn uniformly from [low, high], then
    crop or pad (edge pixels) back to the input size."""

    low: float
    high: float

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        factor = self.low + (self.high - self.low) * float(torch.rand((), generator=generator))
        size = images.shape[-1]
        scaled_size = max(1, round(size * factor))
        if scaled_size == size:
            return images
        scaled = F.interpolate(images, size=(scaled_size, scaled_size), mode="bilinear", align_corners=False)
        if scaled_size > size:
            start = (scaled_size - size) // 2
            return scaled[..., start : start + size, start : start + size]
        before = (size - scaled_size) // 2
        after = size - scaled_size - before
        return F.pad(scaled, (before, after, before, after), mode="replicate")
