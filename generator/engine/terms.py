"""Energies as small objects, each giving one value per sample (B,).

A `Term` is one energy of one problem: `ClassScore(3)`, `30 * L2()`, `TV()`. Terms compose
with + (a list of terms) and * (a weight). The engine groups the same kind of term across the
problems of a batch (`Term.key`) and evaluates each group once per step (`Term.group`), so a
batch of problems with different term sets still shares one forward/backward pass. After the
last step each group reports its own numbers per problem (`Group.report`: a class score's
score and probability, a feature match's error), which `solve` puts in `Solution.numbers`.
A group that reads named modules says which (`Group.captures`); the engine hooks them.

Images are in [0, 1]. Regularizers are *means* over pixels, so a weight means the same thing
at 64 px and at 224 px. Where a term runs at every step of every problem its gradient is
written out (tests/test_terms.py checks each against autograd).
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from generator.nets.pathway import Activations, Pathway

OUTPUTS = ("pool5", "fc6", "fc7", "fc8")  # activations every pathway returns; other layers are module names
BANDS = ("band0", "band1", "band2", "band3")  # the image's own difference-of-Gaussian bands (pixel_band): no network


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """A separable Gaussian blur with mirrored edges, at the images' own size."""
    radius = max(1, round(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device) / sigma) ** 2)
    taps = (taps / taps.sum()).repeat(images.shape[1], 1, 1)
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, taps.unsqueeze(2), groups=images.shape[1])
    return F.conv2d(rows, taps.unsqueeze(3), groups=images.shape[1])


def pixel_band(images: Tensor, name: str) -> Tensor:
    """Band k of the images, (B, 3, S, S): the detail between a blur of 2^(k-1) px and one of
    2^k px (band0: the image less its 1 px blur), the same at every position (no pyramid's
    subsampling grid for the optimizer to draw on). A band's sorted values are its marginal
    (Heeger and Bergen's texture statistic), whose long tails of edges a soft picture lacks,
    whatever network reads it."""
    level = int(name.removeprefix("band"))
    finer = images if level == 0 else gaussian_blur(images, 2.0 ** (level - 1))
    return finer - gaussian_blur(images, 2.0**level)


@dataclass
class Step:
    """What a term group sees at one step."""

    index: int  # step number
    iterations: int
    images: Tensor  # (B, 3, S, S) the images being optimized, before transforms
    acts: Activations  # of the transformed images, under each problem's gates
    layers: dict[str, Tensor]  # outputs of named modules that some term reads (FeatureMatch)
    gates: dict[str, Tensor] = dataclasses.field(default_factory=dict)  # level -> (B, ...) gates, 1 where a problem has none

    def layer(self, name: str) -> Tensor:
        if name in BANDS:
            return pixel_band(self.images, name)
        value = getattr(self.acts, name) if name in OUTPUTS else self.layers[name]
        if value is None:
            raise ValueError(f"this pathway has no {name}")
        return value


def pick(values: Tensor, rows: Tensor | None) -> Tensor:
    """The rows of a batch tensor that belong to a group (None: the whole batch)."""
    return values if rows is None else values.index_select(0, rows)


class Group:
    """The terms of one kind across a batch, evaluated together. Subclasses set what they need."""

    layer: str | None = None  # a named module whose output the group reads (Step.layers)
    full_size: bool = False  # reads a map whose size must be the full input's (no coarse steps)

    def __init__(self, terms: Sequence[Term], rows: Tensor | None, device: torch.device) -> None:
        self.rows = rows
        weights = [t.weight for t in terms]
        self.weights: Tensor | float = (
            weights[0] if len(set(weights)) == 1 else torch.tensor(weights, device=device)
        )

    def captures(self) -> set[str]:
        """The named modules whose outputs this group reads (the engine hooks them)."""
        return {self.layer} if self.layer else set()

    def before_step(self, step: int, iterations: int, images: Tensor) -> None:
        """Called without grad before each forward pass (the prior re-matches here)."""

    def __call__(self, step: Step) -> Tensor:
        raise NotImplementedError

    def report(self, step: Step) -> dict[str, Tensor]:
        """The numbers this kind of term reports for its problems' final images, name -> (rows,)
        values; a problem keeps the first value of each name, in the order of its terms."""
        return {}


class Term:
    """One energy of one problem; subclasses are dataclasses whose last field is `weight`."""

    weight: float
    group_class: ClassVar[type[Group]]

    def key(self) -> Hashable:
        """Terms with equal keys are evaluated as one group."""
        return (type(self),)

    def group(self, terms: Sequence[Any], rows: Tensor | None, pathway: Pathway) -> Group:
        return self.group_class(terms, rows, pathway.mean.device)

    def __mul__(self, factor: float) -> Any:
        scaled = copy.copy(self)
        scaled.weight = self.weight * factor
        return scaled

    __rmul__ = __mul__

    def __add__(self, other: Term | list[Term]) -> list[Term]:
        return [self, *(other if isinstance(other, list) else [other])]

    def __radd__(self, other: list[Term]) -> list[Term]:
        return [*other, self]


# --------------------------------------------------------------------------------------------
# Data terms


class _ClassScoreGroup(Group):
    def __init__(self, terms: Sequence[ClassScore], rows: Tensor | None, device: torch.device) -> None:
        super().__init__(terms, rows, device)
        self.targets = torch.tensor([t.target for t in terms], dtype=torch.long, device=device).view(-1, 1)

    def __call__(self, step: Step) -> Tensor:
        return -self.weights * pick(step.acts.fc8, self.rows).gather(1, self.targets).squeeze(1)

    def report(self, step: Step) -> dict[str, Tensor]:
        """fc8 of the target under the problem's gates, and its softmax probability."""
        fc8 = pick(step.acts.fc8, self.rows)
        return {"score": fc8.gather(1, self.targets).squeeze(1), "prob": fc8.softmax(1).gather(1, self.targets).squeeze(1)}


@dataclass
class ClassScore(Term):
    """-fc8[target]: E_class's data term [10]. Pre-softmax, because maximizing the softmax can
    be done by pushing the *other* classes down instead of making a better target."""

    target: int
    weight: float = 1.0
    group_class: ClassVar[type[Group]] = _ClassScoreGroup

    def group(self, terms: Sequence[Any], rows: Tensor | None, pathway: Pathway) -> Group:
        for term in terms:
            if not 0 <= term.target < pathway.num_classes:
                raise ValueError(f"ClassScore: target {term.target} not in [0, {pathway.num_classes})")
        return super().group(terms, rows, pathway)


def feature_inversion(pred: Tensor, target: Tensor) -> Tensor:
    """||phi(I) - phi0||^2 / ||phi0||^2 per sample: E_inv's data term [8]. Normalizing by
    ||phi0||^2 makes one weight fit every image and layer."""
    dims = tuple(range(1, pred.dim()))
    return (pred - target).pow(2).sum(dims) / target.pow(2).sum(dims).clamp_min(1e-12)


def feature_error(pred: Tensor, target: Tensor) -> Tensor:
    """||phi(I) - phi0|| / ||phi0|| per sample: the number reported for inversions."""
    return feature_inversion(pred, target).sqrt()


class _FeatureMatchGroup(Group):
    full_size = True  # a target map of the full input's size

    def __init__(self, terms: Sequence[FeatureMatch], rows: Tensor | None, device: torch.device) -> None:
        super().__init__(terms, rows, device)
        self.name = terms[0].layer
        self.layer = None if self.name in OUTPUTS else self.name
        self.targets = torch.stack([t.target.detach().float() for t in terms]).to(device)

    def __call__(self, step: Step) -> Tensor:
        return self.weights * feature_inversion(pick(step.layer(self.name), self.rows), self.targets)

    def report(self, step: Step) -> dict[str, Tensor]:
        return {"feature_error": feature_error(pick(step.layer(self.name), self.rows), self.targets)}


@dataclass
class FeatureMatch(Term):
    """Match a feature map: `layer` is pool5 / fc6 / fc7 / fc8 or the name of a pathway module
    (e.g. "features.3"), whose output the engine captures with a forward hook."""

    target: Tensor
    layer: str = "pool5"
    weight: float = 1.0
    group_class: ClassVar[type[Group]] = _FeatureMatchGroup

    def key(self) -> Hashable:
        return (type(self), self.layer)


VECTORS = ("fc6", "fc7", "fc8")  # the outputs that are vectors whatever the input's size


class _DirectionGroup(Group):
    def __init__(self, terms: Sequence[Direction], rows: Tensor | None, device: torch.device) -> None:
        super().__init__(terms, rows, device)
        self.name = terms[0].layer
        self.layer = None if self.name in OUTPUTS else self.name
        self.full_size = self.name not in VECTORS  # a direction in a map (a unit at a position) has the map's size
        vectors = torch.stack([t.vector.detach().float().flatten() for t in terms]).to(device)
        self.directions = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def __call__(self, step: Step) -> Tensor:
        values = pick(step.layer(self.name), self.rows).flatten(1)
        projection: Tensor = (values * self.directions).sum(1)
        return -self.weights * projection


@dataclass
class Direction(Term):
    """-<phi(I), v / ||v||>: push a layer's activations along a direction (Lucid's `direction`
    objective), e.g. one style's NMF direction in fc7."""

    vector: Tensor
    layer: str = "fc7"
    weight: float = 1.0
    group_class: ClassVar[type[Group]] = _DirectionGroup

    def key(self) -> Hashable:
        return (type(self), self.layer)


def channel_values(features: Tensor) -> Tensor:
    """(B, C, ...) activations as (B, C, positions); a vector layer (B, C) has one position."""
    return features.reshape(features.shape[0], features.shape[1], -1)


def quantiles(ordered: Tensor, count: int) -> Tensor:
    """Sorted values (..., M) resampled to `count` (..., count): the value at each quantile
    (i + 0.5) / count, linearly interpolated, so sets of different sizes compare value by value."""
    if ordered.shape[-1] == count:
        return ordered
    flat = ordered.reshape(-1, 1, ordered.shape[-1])
    return F.interpolate(flat, size=count, mode="linear", align_corners=False).reshape(*ordered.shape[:-1], count)


def reference_distribution(reference: Tensor) -> Tensor:
    """Each channel's values over all reference images and positions, sorted and resampled to one
    image's count of positions: (N, C, ...) -> (C, positions), the target of a sliced match."""
    values = channel_values(reference)
    pooled = values.transpose(0, 1).reshape(values.shape[1], -1)
    return quantiles(pooled.sort(dim=1).values, values.shape[2])


def sliced_distance(features: Tensor, target: Tensor, moments: float = 0.0) -> Tensor:
    """Per sample, the 1-D Wasserstein-2 distance between each channel's activations and its
    target distribution (VITAL's sorted matching): mean over channels and quantiles of
    (sort(x) - target)^2, plus `moments` x the squared gaps of the per-channel mean and std,
    over the target's mean square, so that one weight fits every layer and net.
    features (B, C, ...); target (B, C, Q) sorted, resampled to the features' positions."""
    values = channel_values(features).sort(dim=2).values
    target = quantiles(target, values.shape[2])
    distance = (values - target).pow(2).mean((1, 2))
    if moments:
        mean_gap = (values.mean(2) - target.mean(2)).pow(2)
        std_gap = (values.std(2, correction=0) - target.std(2, correction=0)).pow(2)
        distance = distance + moments * (mean_gap + std_gap).mean(1)
    return distance / target.pow(2).mean((1, 2)).clamp_min(1e-12)


class _FeatureDistributionGroup(Group):
    def __init__(self, terms: Sequence[FeatureDistribution], rows: Tensor | None, device: torch.device) -> None:
        super().__init__(terms, rows, device)
        self.names = list(terms[0].layer_weights)
        self.moments = terms[0].moments
        self.layer_weights = torch.tensor([[t.layer_weights[n] for n in self.names] for t in terms], device=device)
        self.targets = {n: torch.stack([reference_distribution(t.reference[n].detach().float()) for t in terms]).to(device)
                        for n in self.names}

    def captures(self) -> set[str]:
        return {n for n in self.names if n not in OUTPUTS and n not in BANDS}

    def distances(self, step: Step) -> Tensor:
        """(rows, layers) sliced distances of the group's problems."""
        return torch.stack([sliced_distance(pick(step.layer(n), self.rows), self.targets[n], self.moments)
                            for n in self.names], 1)

    def __call__(self, step: Step) -> Tensor:
        return self.weights * (self.distances(step) * self.layer_weights).sum(1)

    def report(self, step: Step) -> dict[str, Tensor]:
        """The layer-weighted mean sliced distance to the problem's reference set."""
        total = self.layer_weights.sum(1).clamp_min(1e-12)
        return {"distribution": (self.distances(step) * self.layer_weights).sum(1) / total}


@dataclass
class FeatureDistribution(Term):
    """Hold the *distribution* of the image's features to a reference set's (VITAL, arXiv
    2503.22399): at each layer, each channel's sorted activations against the sorted values of
    the reference images' same channel (sliced Wasserstein), optionally with their per-channel
    mean and std. A feature match asks for one image's map; this asks only for its statistics, so
    the picture may put the reference's parts, colours and textures anywhere. `reference` maps a
    layer (pool5 / fc6 / fc7 / fc8 or a module name, as FeatureMatch, or one of BANDS, the
    image's own bands) to the reference images' activations (N, C, ...) there; `layers` weights
    them (None: 1 each). A gated level is read under the problem's gates: trunk layers and pool5
    are never gated."""

    reference: Mapping[str, Tensor]
    layers: Mapping[str, float] | None = None
    moments: float = 0.0
    weight: float = 1.0
    group_class: ClassVar[type[Group]] = _FeatureDistributionGroup

    @property
    def layer_weights(self) -> dict[str, float]:
        return dict(self.layers) if self.layers is not None else {name: 1.0 for name in self.reference}

    def key(self) -> Hashable:
        return (type(self), tuple(self.layer_weights), self.moments)


def styles(features: Tensor) -> Tensor:
    """(B, C, ...) activations -> (B, D): a map's channel Gram matrix over its positions (its style,
    wherever things are), a vector layer's values as they are."""
    values = channel_values(features)
    if values.shape[2] == 1:
        return values.flatten(1)
    return (values @ values.transpose(1, 2) / values.shape[2]).flatten(1)


def style_vectors(features: Tensor, centre: Tensor | None = None) -> Tensor:
    """Unit style vectors (`styles`), measured from `centre` (a (D,) style) where given."""
    values = styles(features)
    return F.normalize(values if centre is None else values - centre, dim=1, eps=1e-12)


class _DiversityGroup(Group):
    def __init__(self, terms: Sequence[Diversity], rows: Tensor | None, device: torch.device) -> None:
        super().__init__(terms, rows, device)
        self.name = terms[0].layer
        self.layer = None if self.name in OUTPUTS else self.name
        centre = terms[0].centre
        self.centre = None if centre is None else centre.detach().float().flatten().to(device)

    def similarities(self, step: Step) -> Tensor:
        """(rows,) each problem's mean cosine similarity to the other problems of its set."""
        vectors = style_vectors(pick(step.layer(self.name), self.rows), self.centre)
        count = vectors.shape[0]
        if count < 2:
            return vectors.new_zeros(count)
        cosines = vectors @ vectors.T
        return (cosines.sum(1) - cosines.diagonal()) / (count - 1)

    def __call__(self, step: Step) -> Tensor:
        return self.weights * self.similarities(step)

    def report(self, step: Step) -> dict[str, Tensor]:
        return {"similarity": self.similarities(step)}


@dataclass
class Diversity(Term):
    """Set a group of problems apart (Lucid's diversity objective, Olah et al. 2017): each
    problem's energy is the mean cosine similarity of its `layer` style (`styles`: a map's Gram
    matrix, a vector's values) to the other problems' with the same `among` id, measured from
    `centre` where given (e.g. the class images' mean style, so that what the pictures share with
    the class does not count). The only term that couples problems: the pictures of one set are
    pushed to differ while each keeps its own data terms. A set of one costs nothing."""

    layer: str
    among: Hashable = 0
    centre: Tensor | None = None
    weight: float = 1.0
    group_class: ClassVar[type[Group]] = _DiversityGroup

    def key(self) -> Hashable:
        return (type(self), self.layer, self.among)


# --------------------------------------------------------------------------------------------
# Regularizers


class _CentredSquare(torch.autograd.Function):
    """mean((x - c)^2) per sample with its gradient 2 (x - c) / N written out: two passes over
    the batch instead of autograd's five."""

    @staticmethod
    def forward(ctx: Any, images: Tensor, centre: Tensor) -> Tensor:
        offset = images - centre
        ctx.save_for_backward(offset)
        return offset.pow(2).flatten(1).mean(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None]:
        (offset,) = ctx.saved_tensors
        return offset * (2.0 / offset[0].numel() * grad_out.view(-1, *[1] * (offset.dim() - 1))), None


def centred_square(images: Tensor, centre: Tensor | Sequence[float] | float = 0.5) -> Tensor:
    """mean((x - centre)^2) per sample; `centre` a float or one value per channel."""
    c = torch.as_tensor(centre, dtype=images.dtype, device=images.device)
    value: Tensor = _CentredSquare.apply(images, c.view(1, -1, 1, 1) if c.dim() == 1 else c)
    return value


class _L2Group(Group):
    def __init__(self, terms: Sequence[L2], rows: Tensor | None, device: torch.device) -> None:
        super().__init__(terms, rows, device)
        centre = torch.as_tensor(terms[0].centre, dtype=torch.float32, device=device)
        self.centre = centre.view(1, -1, 1, 1) if centre.dim() == 1 else centre

    def __call__(self, step: Step) -> Tensor:
        value: Tensor = _CentredSquare.apply(pick(step.images, self.rows), self.centre)
        return self.weights * value


@dataclass
class L2(Term):
    """R_alpha ||I - centre||^2 (mean over pixels): keeps the image from drifting to saturated
    colours the data term does not care about. The authors' ||I||^2 is on Caffe's
    mean-subtracted input, so `centre` is the model's mean colour."""

    centre: tuple[float, ...] | float = 0.5
    weight: float = 1.0
    group_class: ClassVar[type[Group]] = _L2Group

    def key(self) -> Hashable:
        return (type(self), self.centre)


class _SquaredTV(torch.autograd.Function):
    """mean(dx^2 + dy^2) per sample with its gradient written out: autograd's four slices cost
    a zero-filled batch-sized tensor each in the backward; this fills one (~2x faster)."""

    @staticmethod
    def forward(ctx: Any, images: Tensor) -> Tensor:
        corner = images[..., :-1, :-1]
        dx = images[..., :-1, 1:] - corner
        dy = images[..., 1:, :-1] - corner
        ctx.save_for_backward(dx, dy)
        ctx.shape = images.shape
        return (dx.pow(2) + dy.pow(2)).flatten(1).mean(1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Tensor:
        dx, dy = ctx.saved_tensors
        scale = (2.0 / dx[0].numel()) * grad_out.view(-1, 1, 1, 1)
        dx, dy = dx * scale, dy * scale
        grad: Tensor = dx.new_zeros(ctx.shape)
        grad[..., :-1, 1:] += dx
        grad[..., 1:, :-1] += dy
        grad[..., :-1, :-1] -= dx + dy
        return grad


def total_variation(images: Tensor, beta: float = 2.0) -> Tensor:
    """mean ||grad I||^beta per sample (beta = 2 with the written-out gradient)."""
    if beta == 2.0:
        value: Tensor = _SquaredTV.apply(images)
        return value
    dx = images[..., :, 1:] - images[..., :, :-1]
    dy = images[..., 1:, :] - images[..., :-1, :]
    grad_sq = dx[..., :-1, :].pow(2) + dy[..., :, :-1].pow(2) + 1e-6  # smooth at a flat pixel, where beta < 2 has no gradient
    return grad_sq.pow(beta / 2).flatten(1).mean(1)


class _TVGroup(Group):
    def __init__(self, terms: Sequence[TV], rows: Tensor | None, device: torch.device) -> None:
        super().__init__(terms, rows, device)
        self.beta = terms[0].beta

    def __call__(self, step: Step) -> Tensor:
        return self.weights * total_variation(pick(step.images, self.rows), self.beta)


@dataclass
class TV(Term):
    """R_beta ||grad I||^beta (mean over pixels): suppresses the high-frequency patterns a CNN
    responds to but natural images lack."""

    beta: float = 2.0
    weight: float = 1.0
    group_class: ClassVar[type[Group]] = _TVGroup

    def key(self) -> Hashable:
        return (type(self), self.beta)


def closed_activity(ungated: Tensor, gate: Tensor) -> Tensor:
    """Mean activity on the units a gate closes (gate 0), per sample: `ungated` is the level's
    values before the gate (Activations.ungated)."""
    return (ungated * (gate == 0)).flatten(1).mean(1)


class _ClosedActivityGroup(Group):
    def __init__(self, terms: Sequence[ClosedActivity], rows: Tensor | None, device: torch.device) -> None:
        super().__init__(terms, rows, device)
        self.levels = list(dict.fromkeys(level for t in terms for level in t.levels))
        self.level_weights = torch.tensor([[t.levels.get(level, 0.0) for level in self.levels] for t in terms],
                                          device=device)

    def __call__(self, step: Step) -> Tensor:
        closed = [
            closed_activity(pick(step.acts.ungated[level], self.rows), pick(step.gates[level], self.rows))
            if level in step.gates else step.images.new_zeros(self.level_weights.shape[0])
            for level in self.levels
        ]
        return self.weights * (torch.stack(closed, 1) * self.level_weights).sum(1)


@dataclass
class ClosedActivity(Term):
    """Weighted mean activity on the units the gates close, per level (e.g. {"pool5": 3.0,
    "fc7": 1.5}; a level its problem does not gate costs nothing): a gate only gates, so a code
    that must also *forbid* its off units pays for their activity."""

    levels: Mapping[str, float]
    weight: float = 1.0
    group_class: ClassVar[type[Group]] = _ClosedActivityGroup


class _AlphaNormGroup(Group):
    def __init__(self, terms: Sequence[AlphaNorm], rows: Tensor | None, device: torch.device) -> None:
        super().__init__(terms, rows, device)
        centre = torch.as_tensor(terms[0].centre, dtype=torch.float32, device=device)
        self.centre = centre.view(1, -1, 1, 1) if centre.dim() == 1 else centre
        self.alpha = terms[0].alpha

    def __call__(self, step: Step) -> Tensor:
        offset = pick(step.images, self.rows) - self.centre
        return self.weights * offset.abs().pow(self.alpha).flatten(1).mean(1)


@dataclass
class AlphaNorm(Term):
    """Mahendran & Vedaldi's alpha-norm, mean |I - centre|^alpha: like L2 but nearly flat inside
    the range and steep at its ends (alpha = 6), so it bounds the pixels without dimming the
    whole image."""

    alpha: float = 6.0
    centre: tuple[float, ...] | float = 0.5
    weight: float = 1.0
    group_class: ClassVar[type[Group]] = _AlphaNormGroup

    def key(self) -> Hashable:
        return (type(self), self.alpha, self.centre)


class _ChannelMatchGroup(Group):
    full_size = True

    def __init__(self, terms: Sequence[ChannelMatch], rows: Tensor | None, device: torch.device) -> None:
        super().__init__(terms, rows, device)
        self.layer = terms[0].before or None  # the engine captures this module's output
        self.after = terms[0].after
        self.channels = torch.tensor([t.channel for t in terms], device=device)
        self.targets = torch.stack([t.target.detach().float() for t in terms]).to(device)

    def __call__(self, step: Step) -> Tensor:
        if self.layer is None:
            maps = pick(step.acts.pool5, self.rows)[torch.arange(len(self.channels)), self.channels]
        else:  # before the ReLU where the target is active, so a silent channel is still pushed there
            before = pick(step.layers[self.layer], self.rows)[torch.arange(len(self.channels)), self.channels]
            pooled = self.after(before.unsqueeze(1))[:, 0]
            maps = torch.where(self.targets > 0, pooled, pooled.clamp_min(0))
        return self.weights * feature_inversion(maps, self.targets)


@dataclass
class ChannelMatch(Term):
    """||pool5[channel] - target||^2 / ||target||^2: Xia et al.'s one-channel code read on its kept
    channel. The zeroed channels are left out: channels co-fire, so matching them too asks for an
    image no photo is (the top image itself is far from its own one-channel code). With `before`
    (`units_run.pre_activation`), pool5 = relu(after(output of module `before`)) and the match reads
    it before the ReLU where the target is positive: a channel that is exactly 0 there gets a gradient."""

    target: Tensor  # (H, W): the kept channel's map
    channel: int
    before: str = ""
    after: nn.Module = dataclasses.field(default_factory=nn.Identity)
    weight: float = 1.0
    group_class: ClassVar[type[Group]] = _ChannelMatchGroup

    def key(self) -> Hashable:
        return (type(self), self.before)
