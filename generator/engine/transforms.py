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
