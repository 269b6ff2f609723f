"""The standard parts for a `Settings`: the regularizer terms, the prior term, the transforms
and the parameterization the catalog's `engine:` section describes. Kept apart from the loop,
as Lucid keeps its recipes apart from `render`."""
from __future__ import annotations

from typing import Any

from generator.engine.decorrelated import Decorrelated
from generator.engine.params import Parameterization, Pixels
from generator.engine.patch_prior import PatchPrior
from generator.engine.settings import Settings
from generator.engine.terms import L2, TV, AlphaNorm, Term
from generator.engine.transforms import KNOBS, Transform


def regularizers(settings: Settings, centre: tuple[float, ...] | float = 0.5) -> list[Term]:
    """L2 and the alpha-norm around `centre` (the model's mean colour) and TV, with the
    Settings' weights (a term of weight 0 is left out)."""
    terms: list[Term] = []
    if settings.l2:
        terms.append(settings.l2 * L2(centre))
    if settings.alpha_norm:
        terms.append(settings.alpha_norm * AlphaNorm(centre=centre))
    if settings.tv:
        terms.append(settings.tv * TV(settings.tv_beta))
    return terms


def prior(database: Any, settings: Settings) -> list[Term]:
    """The patch prior against `database`, or nothing when its weight is 0 (not even matched)."""
    if database is None or not settings.prior_weight:
        return []
    return [PatchPrior(database, settings.rematch_every, settings.prior_stride, settings.prior_start,
                       settings.prior_full, settings.jitter_seed, settings.prior_weight, settings.prior_normalize)]


def transforms(settings: Settings) -> list[Transform]:
    """Each transform whose knob is on, in the order of transforms.KNOBS (Lucid's: pad, random
    scale, jitter, random rotation)."""
    return [knob.build(getattr(settings, knob.name)) for knob in KNOBS if getattr(settings, knob.name)]


def parameterization(settings: Settings) -> Parameterization:
    """Raw pixels (the paper's), or decorrelated colour, optionally in a Fourier basis."""
    if settings.param == "pixels":
        return Pixels()
    return Decorrelated(fourier=settings.param == "fourier", decay=settings.fourier_decay, octaves=settings.octaves,
                        iterations=settings.iterations)
