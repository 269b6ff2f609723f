"""How much optimization ran: image-iterations, one image through the net's forward and backward
to the input, the unit every speed figure of the atlas is counted in (a build's report, the
benchmarks)."""
from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch import nn


class IterationCounter:
    """Counts the images of every grad-enabled forward through the pathway, by batch size (a
    solve step; a plain forward, such as the features or a solve's final evaluation, is none),
    and the same in full-size images: an image the engine showed the net at half the side (a
    coarse step) is a quarter of one."""

    def __init__(self, pathway: nn.Module) -> None:
        self.batches: Counter[int] = Counter()
        self.full_size = 0.0
        self.side = int(getattr(pathway, "input_size", 0) or 0)
        self.handle = pathway.register_forward_pre_hook(self._seen)

    def _seen(self, module: Any, inputs: tuple[Any, ...]) -> None:
        if torch.is_grad_enabled() and inputs and inputs[0].requires_grad:
            images = inputs[0]
            self.batches[images.shape[0]] += 1
            area = images.shape[-1] * images.shape[-2] / self.side**2 if self.side else 1.0
            self.full_size += images.shape[0] * area

    @property
    def images(self) -> int:
        return sum(size * steps for size, steps in self.batches.items())

    def close(self) -> None:
        self.handle.remove()
