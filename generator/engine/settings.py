"""Engine settings: the catalog's `engine:` section. Torch-free, so the catalog can validate it.

Why these defaults: docs/tuning.md#engine.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

from generator.engine.transforms import KNOBS
from generator.errors import AtlasError

SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("adam", "nadam")
PARAMETERIZATIONS = ("pixels", "colour", "fourier")
PRIOR_NORMALIZATIONS = ("image", "photos")
AUTOCASTS = ("off", "bf16")


class SettingsError(AtlasError, ValueError):
    """An engine setting of the wrong name, type or range."""


_T = TypeVar("_T")


def _with_transform_knobs(cls: type[_T]) -> type[_T]:
    """Add a field per transform knob (transforms.KNOBS: pad, scale, jitter, rotate), so that a
    transform declares its setting where it is defined."""
    for knob in KNOBS:
        cls.__annotations__[knob.name] = type(knob.default).__name__
        setattr(cls, knob.name, knob.default)
    return cls


@dataclass(frozen=True)
@_with_transform_knobs
class Settings:
    """Schedule, transforms and the weights the recipes give the standard terms. Besides the
    fields below, one field per transform knob (`transforms.KNOBS`): pad, scale, jitter, rotate."""

    iterations: int = 200
    lr: float = 0.05
    schedule: str = "cosine"  # "cosine" (to 5% of lr) | "step" (authors: 1 / 0.1 / 0.01) | "constant"
    optimizer: str = "adam"  # "adam" | "nadam" (MACO's): docs/speed.md#coarse-steps
    init_std: float = 0.1  # std of the Gaussian random init around mid-grey
    param: str = "fourier"  # "pixels" (params.py) | "colour" | "fourier" (decorrelated.py)
    octaves: int = 1  # coarse to fine (Fourier only): the frequencies open in this many equal stages
    # the Fourier coefficients' scale 1/frequency^decay: 1 is photos' spectrum; below 1 a step moves fine
    # detail more against the layout; 0.5 made worse pictures (docs/tuning.md#what-the-spread-measure-reads)
    fourier_decay: float = 1.0
    # coarse to fine in the network's input: the first `coarse_until` of the steps show the net the
    # image resized to `coarse_size` px (0: never), a quarter of the cost at half the side, a gated
    # map's gate averaged down with it; not where a problem matches a map of the full input's size
    # (docs/speed.md#coarse-steps)
    coarse_size: int = 0
    coarse_until: float = 0.0
    # a second stage between the coarse steps and the full size: from the coarse steps' end up to `mid_until`
    # of the steps the net sees the image at `mid_size` px (0: none; none if it ends before the coarse steps
    # do), about half the cost at 160 of 224 px (docs/speed.md#mid-steps)
    mid_size: int = 0
    mid_until: float = 0.0
    # fine detail: after `iterations`, this many steps move the raw pixels (constant lr `detail_lr`, full
    # size, the same terms), where a Fourier step barely moves the finest scales (docs/tuning.md#detail-steps)
    detail_steps: int = 0
    detail_lr: float = 0.005
    # the net's forward (and so its backward) in bfloat16 during the steps, the terms and the final
    # numbers in float32: faster where dense convolutions dominate and the hardware has bf16 (docs/speed.md)
    autocast: str = "off"
    jitter_seed: int = 0  # seed of the transforms' and the prior grid's generators (one per solve)
    l2: float = 30.0  # weight of L2 around the model's mean colour
    tv: float = 300.0  # weight of total variation
    tv_beta: float = 2.0  # its exponent: 2 squares the gradients (smooths all); 1 or less spares edges, not texture
    alpha_norm: float = 0.0  # weight of the alpha-norm (alpha = 6), off by default
    feature_weight: float = 1.0  # lambda_D: weight of a feature-match data term (class score: 1)
    prior_weight: float = 100.0  # weight of the patch prior (problems that have a database)
    rematch_every: int = 2  # steps between nearest-patch searches
    prior_stride: int | None = 8  # stride of the image's patches (None: the database's)
    prior_start: float = 0.0  # fraction of the iterations before the prior switches on
    prior_full: float = 0.0  # fraction at which the prior reaches its weight (linear ramp)
    # the image's patches are normalized by its own mean and std ("image": the paper's), or by
    # those of the photos the database comes from ("photos"): docs/tuning.md#parameterization
    prior_normalize: str = "photos"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = {"int": int, "float": float, "str": str, "int | None": int}[str(f.type)]
            if value is None and f.type == "int | None":
                continue
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise SettingsError(f"engine.{f.name}: expected {f.type}, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise SettingsError(f"engine.{f.name}: must be finite, got {value!r}")
        positive = ("iterations", "lr", "rematch_every", "octaves", "detail_lr", "tv_beta")
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"engine.{name}: must be > 0, got {getattr(self, name)!r}")
        if self.coarse_size < 0 or not 0 <= self.coarse_until <= 1:
            raise SettingsError(f"engine: coarse_size must be >= 0 and coarse_until in [0, 1], got "
                                f"{self.coarse_size!r} and {self.coarse_until!r}")
        if self.mid_size < 0 or not 0 <= self.mid_until <= 1:
            raise SettingsError(f"engine: mid_size must be >= 0 and mid_until in [0, 1], got "
                                f"{self.mid_size!r} and {self.mid_until!r}")
        for name in ("detail_steps", "fourier_decay", "init_std", "l2", "tv", "alpha_norm", "feature_weight",
                     "prior_weight", "prior_start", "prior_full"):
            if getattr(self, name) < 0:
                raise SettingsError(f"engine.{name}: must be >= 0, got {getattr(self, name)!r}")
        for knob in KNOBS:
            value = getattr(self, knob.name)
            if knob.below is not None and not 0 <= value < knob.below:
                raise SettingsError(f"engine.{knob.name}: must be in [0, {knob.below:g}), got {value!r}")
            if value < 0:
                raise SettingsError(f"engine.{knob.name}: must be >= 0, got {value!r}")
        if self.iterations + self.detail_steps > 100_000 or abs(self.jitter_seed) >= 2**63:
            raise SettingsError("engine: iterations + detail_steps must be <= 100000 and jitter_seed a 64-bit integer")
        if self.prior_stride is not None and self.prior_stride <= 0:
            raise SettingsError(f"engine.prior_stride: must be > 0 or null, got {self.prior_stride!r}")
        if self.schedule not in SCHEDULES:
            raise SettingsError(f"engine.schedule: must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.optimizer not in OPTIMIZERS:
            raise SettingsError(f"engine.optimizer: must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.prior_normalize not in PRIOR_NORMALIZATIONS:
            raise SettingsError(f"engine.prior_normalize: must be one of {', '.join(PRIOR_NORMALIZATIONS)}, "
                                f"got {self.prior_normalize!r}")
        if self.autocast not in AUTOCASTS:
            raise SettingsError(f"engine.autocast: must be one of {', '.join(AUTOCASTS)}, got {self.autocast!r}")
        if self.param not in PARAMETERIZATIONS:
            raise SettingsError(f"engine.param: must be one of {', '.join(PARAMETERIZATIONS)}, got {self.param!r}")


# Every transform off but the paper's jitter: any other would misalign a spatial target (a pool5
# map, a layer's features) with the picture.
JITTER_ONLY: dict[str, Any] = {knob.name: type(knob.default)(0) for knob in KNOBS if knob.name != "jitter"}
# The paper's engine, for spatial targets and for pixels kept exactly around an edited region:
# raw pixels, seen through the jitter alone.
RAW_PIXELS: dict[str, Any] = {"param": "pixels", **JITTER_ONLY}


# Settings added after atlases were built, at the value that draws what the engine drew without them:
# left out of `identity`, so that adding one does not make every picture stale.
NEUTRAL: dict[str, Any] = {"mid_size": 0, "mid_until": 0.0,
                           "fourier_decay": 1.0, "detail_steps": 0, "detail_lr": 0.005, "tv_beta": 2.0, "autocast": "off"}


def identity(settings: Settings) -> dict[str, Any]:
    """The effective settings that decide a picture (what a build's artifact keys hash)."""
    return {k: v for k, v in dataclasses.asdict(settings).items() if not (k in NEUTRAL and v == NEUTRAL[k])}


def settings_from(engine: dict[str, Any] | None = None, **overrides: Any) -> Settings:
    """Settings from the catalog's `engine:` dict, then a method's overrides on top.

    Unknown names fail loudly so a typo in catalog.yaml is not silently ignored."""
    values = {**(engine or {}), **overrides}
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"engine: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return Settings(**values)


def lr_at(step: int, settings: Settings) -> float:
    """The learning rate at `step`: cosine decay to 5% of lr, or the authors' step drops."""
    progress = step / max(settings.iterations - 1, 1)
    if settings.schedule == "cosine":
        return settings.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
    if settings.schedule == "step":
        return settings.lr * (1.0 if progress < 0.625 else 0.1 if progress < 0.875 else 0.01)
    return settings.lr
