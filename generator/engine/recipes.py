"""The standard parts for a `Settings`: the regularizer terms, the prior term, the transforms
and the parameterization the catalog's `engine:` section describes. Kept apart from the loop,
as Lucid keeps its recipes apart from `render`."""
from __future__ import annotations

from typing import Any

from generator.engine.decorrelated import Decorrelated
from generator.engine.pad_rotate import Pad, RandomRotate
from generator.engine.params import Parameterization, Pixels
from generator.engine.patch_prior import PatchPrior
from generator.engine.settings import Settings
from generator.engine.terms import L2, TV, AlphaNorm, Term
from generator.engine.transforms import Jitter, RandomScale, Transform


def regularizers(settings: Settings, centre: tuple[float, ...] | float = 0.5) -> list[Term]:
    """L2 and the alpha-norm around `centre` (the model's mean colour) and TV, with the
    Settings' weights (a term of weight 0 is left out)."""
    terms: list[Term] = []
    if settings.l2:
        terms.append(settings.l2 * L2(centre))
    if settings.alpha_norm:
        terms.append(settings.alpha_norm * AlphaNorm(centre=centre))
    if settings.tv:
        terms.append(settings.tv * TV())
    return terms


def prior(database: Any, settings: Settings) -> list[Term]:
    """The patch prior against `database`, or nothing when its weight is 0 (not even matched)."""
    if database is None or not settings.prior_weight:
        return []
    return [PatchPrior(database, settings.rematch_every, settings.prior_stride, settings.prior_start,
                       settings.prior_full, settings.jitter_seed, settings.prior_weight, settings.prior_normalize)]


def transforms(settings: Settings) -> list[Transform]:
    """Lucid's order, each when on: pad, random scale, jitter, random rotation."""
    chosen: list[Transform] = []
    if settings.pad:
        chosen.append(Pad(settings.pad))
    if settings.scale:
        chosen.append(RandomScale(1 - settings.scale, 1 + settings.scale))
    if settings.jitter:
        chosen.append(Jitter(settings.jitter))
    if settings.rotate:
        chosen.append(RandomRotate(settings.rotate))
    return chosen


def parameterization(settings: Settings) -> Parameterization:
    """Raw pixels (the paper's), or decorrelated colour, optionally in a Fourier basis."""
    if settings.param == "pixels":
        return Pixels()
    return Decorrelated(fourier=settings.param == "fourier", octaves=settings.octaves, iterations=settings.iterations)
