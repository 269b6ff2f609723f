"""Image parameterizations: what the optimizer moves, and how it becomes an image in [0, 1].

A parameterization has `init(images) -> params` (from the problems' starting images),
`image(params) -> images` (differentiable) and `after_step(params)` (no grad: projections
such as clamping). The engine's divergence freezing and keep-masks work on any of them.
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class Parameterization(Protocol):
    def init(self, images: Tensor) -> Tensor: ...

    def image(self, params: Tensor) -> Tensor: ...

    def after_step(self, params: Tensor) -> None: ...


class Pixels:
    """Raw pixels, clamped to [0, 1] after every step (the paper's parameterization)."""

    def init(self, images: Tensor) -> Tensor:
        return images.clone()

    def image(self, params: Tensor) -> Tensor:
        return params

    @torch.no_grad()
    def after_step(self, params: Tensor) -> None:
        params.clamp_(0, 1)
