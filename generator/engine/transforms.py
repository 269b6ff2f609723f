"""What the network sees each step: random transforms of the whole batch (Lucid's
"transformation robustness"). A pattern that survives them is a pattern of the image, not an
adversarial alignment with the network's pixel grid.

A transform is a callable `(images (B,3,S,S), generator) -> images` drawing its randomness
from the solve's generator, so a problem's picture does not depend on what else is batched
with it. Transforms keep the image size, so feature targets and spatial masks still apply.

`KNOBS` declares each transform's setting in the catalog's `engine:` section, in the order the
transforms apply: `Settings` takes its fields from it and `recipes.transforms` builds from it, so
a new transform is its class here plus one line in `KNOBS`. The catalog reads `Settings` without
torch, so this module imports torch inside the calls only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from generator.engine.pad_rotate import Pad, RandomRotate

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class Transform(Protocol):
    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor: ...


@dataclass(frozen=True)
class Jitter:
    """Roll the batch by up to `pixels` in each direction (wrapping around)."""

    pixels: int

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        import torch

        shift = torch.randint(-self.pixels, self.pixels + 1, (2,), generator=generator).tolist()
        return images if shift == [0, 0] else torch.roll(images, shifts=shift, dims=(2, 3))


@dataclass(frozen=True)
class RandomScale:
    """Rescale the batch about its centre by a factor drawn uniformly from [low, high], then
    crop or pad (edge pixels) back to the input size."""

    low: float
    high: float

    @classmethod
    def around_one(cls, spread: float) -> RandomScale:
        """A factor in [1 - spread, 1 + spread]."""
        return cls(1 - spread, 1 + spread)

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        import torch
        import torch.nn.functional as F

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


@dataclass(frozen=True)
class Knob:
    """A transform's setting: a `Settings` field of this name, type and default (0 turns the
    transform off), and how its value becomes the transform."""

    name: str
    default: int | float
    build: Callable[[Any], Transform]
    help: str
    below: float | None = None  # the value must be < this (it must always be >= 0)


KNOBS = (  # Lucid's order: pad, random scale, jitter, random rotation
    Knob("pad", 8, Pad, "grey border of this many pixels, then a random crop back, each step (0: off)"),
    Knob("scale", 0.05, RandomScale.around_one,
         "random rescale by a factor in [1 - scale, 1 + scale] each step (0: off)", below=1.0),
    Knob("jitter", 4, Jitter, "random roll of up to this many pixels each step (0: off)"),
    Knob("rotate", 10.0, RandomRotate, "random rotation by up to this many degrees each step (0: off)"),
)
