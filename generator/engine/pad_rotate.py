"""More transformation robustness (Lucid's pad and random rotate), beside transforms.py's Jitter
and RandomScale: the network must read the class through a shifted, grey-bordered, slightly
turned view every step, so the picture cannot rely on an exact pixel alignment.

Same protocol as transforms.py: `(images (B,3,S,S), generator) -> images` of the same size,
one random draw per step for the whole batch (from the solve's generator, so a problem's picture
does not depend on what is batched with it). Uncovered pixels are filled with `fill` (mid-grey).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported inside the calls: Settings reads the knobs of transforms.py without it
    import torch
    from torch import Tensor


@dataclass(frozen=True)
class Pad:
    """Pad by `pixels` of `fill` and crop a random S x S window back: a shift of up to `pixels`
    that reveals a grey border instead of wrapping the opposite edge round (as Jitter does), so
    the picture's edges are seen next to plain grey, as a photo's edges are seen next to nothing."""

    pixels: int
    fill: float = 0.5

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        import torch
        import torch.nn.functional as F

        if self.pixels <= 0:
            return images
        size = images.shape[-1]
        padded = F.pad(images, [self.pixels] * 4, value=self.fill)
        top, left = torch.randint(0, 2 * self.pixels + 1, (2,), generator=generator).tolist()
        return padded[..., top : top + size, left : left + size]


@dataclass(frozen=True)
class RandomRotate:
    """Rotate the batch about its centre by an angle drawn uniformly from [-degrees, degrees]
    (bilinear; corners filled with `fill`)."""

    degrees: float
    fill: float = 0.5

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        import torch
        import torch.nn.functional as F

        if self.degrees <= 0:
            return images
        angle = math.radians(float((torch.rand((), generator=generator) * 2 - 1) * self.degrees))
        cos, sin = math.cos(angle), math.sin(angle)
        theta = images.new_tensor([[[cos, -sin, 0.0], [sin, cos, 0.0]]])
        # one grid for the whole batch (it is the same for every image): a batch of them cost a
        # batched matrix product per step as large as the images
        grid = F.affine_grid(theta, [1, *images.shape[1:]], align_corners=False).expand(images.shape[0], -1, -1, -1)
        return F.grid_sample(images - self.fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + self.fill
