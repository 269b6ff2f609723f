"""The one engine: solve a batch of visualization problems together (DESIGN.md).

CONTRACT (owned by the engine; methods rely on exactly these names):

    Problem   — one image to optimize: a class target or a feature target, masks, init, prior
    Settings  — schedule and regularizer weights (defaults tuned on the shared alexnet-slim)
    Solution  — the optimized image and its numbers
    solve(pathway, problems, settings, progress=True) -> list[Solution]   (same order)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class Problem:
    """One image to optimize. Exactly one of target_class / target_feature is set."""

    target_class: int | None = None  # E_class: maximize fc8[target_class] (pre-softmax)
    target_feature: Tensor | None = None  # E_inv: pool5 target (C, H, W)
    m5: Tensor | None = None  # (C, H, W) 0/1 mask on pool5
    m6: Tensor | None = None  # (D6,) 0/1 mask on fc6
    m7: Tensor | None = None  # (D7,) 0/1 mask on fc7
    init: Tensor | None = None  # (3, S, S) in [0, 1]; None: random init from `seed`
    prior: Any = None  # generator.prior.PatchDatabase or None (no patch prior)
    keep: Tensor | None = None  # (1, S, S) 1 where pixels stay fixed to `init` (completion)
    seed: int = 0
    label: str = ""


@dataclass
class Settings:
    """Engine settings; every field can be set from the catalog's `engine:` section."""

    iterations: int = 200
    lr: float = 0.05
    l2: float = 0.0
    tv: float = 0.0
    prior_weight: float = 0.0
    rematch_every: int = 10
    jitter: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Solution:
    image: Tensor  # (3, S, S) in [0, 1], on CPU
    energy: list[float]  # total energy per step (for plots and the "lowers its energy" test)
    score: float  # final fc8[target] (class problems) or nan
    prob: float  # final softmax prob of target (class problems) or nan
    feature_error: float  # ||phi(I) - phi0|| / ||phi0|| (inversion problems) or nan
    diverged: bool  # NaN/inf met: the image is the last finite iterate and must not be shown as a result
    label: str = ""
