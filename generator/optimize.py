"""The one engine: solve a batch of visualization problems together (DESIGN.md).

CONTRACT (owned by the engine; methods rely on exactly these names):

    Problem   — one image to optimize: a class target or a feature target, masks, init, prior
    Settings  — schedule and regularizer weights (defaults tuned on the shared alexnet-slim)
    Solution  — the optimized image and its numbers
    solve(pathway, problems, settings, progress=True) -> list[Solution]   (same order)
    settings_from(engine: dict, **overrides) -> Settings                   (catalog -> Settings)

All problems of a call share one forward/backward per step (their masks and targets are
stacked per sample), which is what makes a class's whole suite cheap. Every problem keeps its
own random generator, so its image does not depend on what else is in the batch.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from generator import energy
from generator.pathway import Pathway


@dataclass
class Problem:
    """One image to optimize. Exactly one of target_class / target_feature is set."""

    target_class: int | None = None  # E_class: maximize fc8[target_class] (pre-softmax)
    target_feature: Tensor | None = None  # E_inv: pool5 target (C, H, W)
    m5: Tensor | None = None  # (C, H, W) 0/1 mask on pool5
    m6: Tensor | None = None  # (D6,) mask on fc6: 0/1, or 0 or 1/keep for a dropout member (ensemble)
    m7: Tensor | None = None  # (D7,) mask on fc7, likewise
    init: Tensor | None = None  # (3, S, S) in [0, 1]; None: random init from `seed`
    prior: Any = None  # generator.prior.PatchDatabase or None (no patch prior)
    keep: Tensor | None = None  # (1, S, S) 1 where pixels stay fixed to `init` (completion)
    closed_weights: tuple[float, float, float] | None = None  # pool5/fc6/fc7: cost of activity on closed units
    seed: int = 0
    label: str = ""


@dataclass
class Settings:
    """Engine settings; every field can be set from the catalog's `engine:` section.

    Starting point: the authors' AlexNet class-visualization values (PAPER.md: lambda_L2 1e-10,
    lambda_TV 1e2, lambda_D 1e-2 on fc8, 200 iterations, SGD with momentum and step drops,
    pixels 0-255, regularizers divided by the init's variance). What we changed and why:

    - Pixels are in [0, 1] and every regularizer is a per-pixel *mean* (energy.py), so the
      authors' numbers do not transfer literally; the weights below were re-tuned on the shared
      alexnet-slim (10 Imagenette classes) by looking at the images and at the target prob.
    - Adam with a cosine decay instead of SGD + momentum with step drops and max-step
      rescaling: Adam normalizes each pixel's step itself (which is what the authors' step
      rescaling did by hand), is invariant to the overall energy scale and converged in fewer
      iterations; schedule="step" gives the authors' 1 / 0.1 / 0.01 drops.
    - Small random jitter (roll) each step: the model is small and trained at one scale, so
      plain gradient ascent finds high-frequency adversarial patterns; jitter (Mahendran &
      Vedaldi, Lucid) removes them at no cost.
    - Random init: mid-grey plus Gaussian noise (std `init_std`), as the authors' Gaussian init.
    - L2 is centred at the model's mean colour (the authors' ||I||^2 is on mean-subtracted input).
    - Tuned values (alexnet-slim, 100 iterations, 5k-patch class databases of 7 px patches at
      stride 4): l2 30, tv 300, prior_weight 200, re-match every 10 steps (first tuning; superseded by the two changes below). Over the 10 classes:
      prior weight 300 -> colour distance 0.57x the baseline's but one class at prob 0.47;
      200 -> 0.62x, mean prob 0.98 (lowest 0.78); 100 -> 0.72x, all probs 1.00 (misses the
      30% target). Honest caveat: at every weight the prior image is still patchy ("confetti")
      rather than the baseline's structure in natural colours.
    - Re-match every 2 steps on a query grid of stride 8 (its offset redrawn at each re-match,
      so every pixel is covered): matching only every 10 steps lets the image drift from its
      matches, and the result is "confetti" of unrelated patches; re-matching often (every 1, 2
      or 5 steps were tried, shared model, 200 iterations) gives coherent regions instead (blue
      sky over the church's towers, white balls on green for golf ball). Stride 8 keeps the
      queries per step at 1.25x those of the old every-10-at-stride-4 (784 / 2 vs 3136 / 10).
    - Then 200 iterations and prior weight 100 (the authors' 200 iterations): with frequent
      re-matching, the extra iterations let the class term build larger structures, and weight
      100 keeps them (church towers under blue sky, a white ball on green, brown-and-white fur;
      topic pictures of church show its towers). Over the 10 classes, 200 iterations: weight
      150 -> colour distance 0.64x the baseline's, 100 -> 0.67x, 75 -> 0.72x, 50 -> 0.78x, all
      probs 1.00; 100 is the lowest weight that keeps the 30% colour gain. At 100 iterations
      and weight 200 the Sec. 4 pictures were confetti that all looked alike.
    - prior_start / prior_full (a ramp, off by default): tried so the class term forms the
      structure before the prior acts. It keeps more of the structure, but the colour gain
      vanishes: switching the prior on after only 10% of the steps gives 0.93x (4 classes,
      vs 0.69x with no delay), and the weight after the delay (300 to 3000) hardly matters --
      by then the class term has fixed saturated colours and the decayed step size cannot
      move them. Larger patches (9 px; 11 px at stride 6 with 20k patches) were blockier, not
      more natural. A query stride of 8 (non-overlapping patches) gives worse confetti.
    - Speed of the prior (benchmarks/speed.py): the energy is computed without unfolding the
      image (energy.patch_prior_folded: the matches are folded back onto the image once per
      re-match), problems sharing a database are matched in one faiss search, the search runs
      on the database's 32 principal components (classviz `search_dims`), and the prior is
      neither matched nor evaluated while its weight is 0.
    """

    iterations: int = 200
    lr: float = 0.05
    l2: float = 30.0
    tv: float = 300.0
    prior_weight: float = 100.0
    rematch_every: int = 2
    jitter: int = 4
    extra: dict[str, Any] = field(default_factory=dict)
    alpha_norm: float = 0.0  # weight of the alpha-norm (alpha = 6) regularizer, optional
    feature_weight: float = 1.0  # lambda_D: weight of E_inv's data term (class term weight is 1)
    schedule: str = "cosine"  # "cosine" | "step" (authors: 1 / 0.1 / 0.01 at 62.5% / 87.5%) | "constant"
    init_std: float = 0.1  # std of the Gaussian random init around mid-grey
    jitter_seed: int = 0  # jitter and patch-grid offsets come from their own generators (same for the batch)
    prior_stride: int | None = 8  # stride of the image's patches for the prior (None: the database's)
    prior_start: float = 0.0  # fraction of the iterations before the prior switches on (no matching before)
    prior_full: float = 0.0  # fraction at which the prior reaches prior_weight (linear ramp from prior_start)


def settings_from(engine: dict[str, Any] | None = None, **overrides: Any) -> Settings:
    """Settings from the catalog's `engine:` dict, then a method's overrides on top.

    Unknown names fail loudly so a typo in catalog.yaml is not silently ignored."""
    values = {**(engine or {}), **overrides}
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"engine: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return Settings(**values)


def lr_at(step: int, settings: Settings) -> float:
    """The learning rate at `step`: cosine decay to 5% of lr, or the authors' step drops."""
    progress = step / max(settings.iterations - 1, 1)
    if settings.schedule == "cosine":
        return settings.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
    if settings.schedule == "constant":
        return settings.lr
    if settings.schedule == "step":
        return settings.lr * (1.0 if progress < 0.625 else 0.1 if progress < 0.875 else 0.01)
    raise ValueError(f"engine: schedule must be 'cosine', 'step' or 'constant', got {settings.schedule!r}")


def prior_weight_at(step: int, settings: Settings) -> float:
    """The prior's weight at `step`: 0 before prior_start, a linear ramp to prior_weight at
    prior_full. Off at first so the class term forms the object's structure; the prior then
    only has to fix the colours and textures of a structure that is already there."""
    progress = step / max(settings.iterations - 1, 1)
    if progress < settings.prior_start:
        return 0.0
    ramp = settings.prior_full - settings.prior_start
    if ramp <= 0:
        return settings.prior_weight
    return settings.prior_weight * min(1.0, (progress - settings.prior_start) / ramp)


def initial_image(problem: Problem, size: int, settings: Settings) -> Tensor:
    """The problem's init, or mid-grey + Gaussian noise from a generator seeded by problem.seed."""
    if problem.init is not None:
        return problem.init.detach().float().cpu().clone()
    generator = torch.Generator().manual_seed(problem.seed)
    noise = torch.randn(3, size, size, generator=generator)
    return (0.5 + settings.init_std * noise).clamp(0, 1)


def _stack_optional(tensors: list[Tensor | None], shape: tuple[int, ...], fill: float, device) -> Tensor | None:
    """Stack per-problem tensors, `fill` where a problem has none; None if no problem has one."""
    if all(t is None for t in tensors):
        return None
    return torch.stack(
        [torch.full(shape, fill) if t is None else t.detach().float().cpu().reshape(shape) for t in tensors]
    ).to(device)


def _check(problem: Problem, index: int, pathway: Pathway) -> None:
    if (problem.target_class is None) == (problem.target_feature is None):
        raise ValueError(f"problem {index} ({problem.label!r}): set exactly one of target_class / target_feature")
    if problem.target_class is not None and not 0 <= problem.target_class < pathway.num_classes:
        raise ValueError(f"problem {index}: target_class {problem.target_class} not in [0, {pathway.num_classes})")
    if problem.target_feature is not None and tuple(problem.target_feature.shape) != pathway.pool5_shape:
        raise ValueError(
            f"problem {index}: target_feature has shape {tuple(problem.target_feature.shape)}, "
            f"pool5 is {pathway.pool5_shape}"
        )


class _PriorTerm:
    """The patch prior for the problems that have a database, with the paper's alternation:
    match (no grad) every `rematch_every` steps, then keep the matches fixed as targets.

    The image is normalized by the mean and std of the *whole* image (the paper's global
    normalization). Patches are cut at `stride` (the database's, or Settings.prior_stride) on a
    grid whose offset is redrawn at each re-match, so a stride larger than the database's (fewer
    queries, cheaper exact matching) still covers every pixel over the run. The fixed targets
    are folded back onto the full image (zero where the shifted grid leaves a margin), so each
    step is a few passes over the pixels: no crop, and no gather when every problem has a prior
    (both would cost a zero-filled copy of the batch in the backward)."""

    def __init__(self, problems: list[Problem], device, stride: int | None = None, seed: int = 0) -> None:
        self.groups: dict[tuple[int, int], list[int]] = {}
        self.databases = {i: p.prior for i, p in enumerate(problems) if p.prior is not None}
        for i, db in self.databases.items():
            self.groups.setdefault((db.patch, stride or db.stride), []).append(i)
        everyone = list(range(len(problems)))
        # None: the group is the whole batch in order, so images need no indexing
        self.index = {key: None if idx == everyone else torch.tensor(idx, device=device) for key, idx in self.groups.items()}
        # per group, fixed between re-matches: (coverage, folded matches, sum ||d_p||^2, P * D)
        self.targets: dict[tuple[int, int], tuple[Tensor, Tensor, Tensor, int]] = {}
        self.rng = torch.Generator().manual_seed(seed)

    def __bool__(self) -> bool:
        return bool(self.databases)

    @property
    def matched(self) -> bool:
        return bool(self.targets)

    def _members(self, images: Tensor, key: tuple[int, int]) -> Tensor:
        index = self.index[key]
        return images if index is None else images[index]

    @torch.no_grad()
    def rematch(self, images: Tensor) -> None:
        """New grid offset, nearest natural patches for every patch, and the folded targets.

        Problems sharing one database are matched in a single search (one big BLAS call)."""
        from generator.prior import normalize_images, unfold_patches

        stride = min(stride for _, stride in self.groups)
        top, left = torch.randint(0, stride, (2,), generator=self.rng).tolist()
        for (patch, stride), members in self.groups.items():
            normalized = normalize_images(self._members(images, (patch, stride)))
            cropped = normalized[..., top:, left:]
            current = unfold_patches(cropped, patch, stride).cpu()
            matched = torch.empty_like(current)
            by_database: dict[int, list[int]] = {}
            for j, i in enumerate(members):
                by_database.setdefault(id(self.databases[i]), []).append(j)
            for rows in by_database.values():
                database = self.databases[members[rows[0]]]
                found = database.match(current[rows].reshape(-1, current.shape[-1]))
                matched[rows] = found.reshape(len(rows), *current.shape[1:])

            def fold(columns: Tensor) -> Tensor:
                """Patches summed back onto the crop, then padded to the full image."""
                folded = F.fold(columns.transpose(1, 2), cropped.shape[-2:], kernel_size=patch, stride=stride)
                return F.pad(folded, (left, 0, top, 0)).to(images.device)

            self.targets[(patch, stride)] = (
                fold(torch.ones_like(current[:1, :, :1]).expand(1, -1, patch * patch)),
                fold(matched),
                matched.pow(2).flatten(1).sum(1).to(images.device),
                current.shape[1] * current.shape[2],
            )

    def energy(self, images: Tensor, weight: float) -> Tensor:
        total = None
        for key, index in self.index.items():
            per_sample = energy.patch_prior_normalized(self._members(images, key), *self.targets[key], weight)
            if index is None:
                return per_sample
            total = (images.new_zeros(images.shape[0]) if total is None else total).index_add(0, index, per_sample)
        return total


def solve(
    pathway: Pathway, problems: list[Problem], settings: Settings | None = None, progress: bool = True
) -> list[Solution]:
    """Optimize all problems together: one forward/backward of the batch per step.

    Energy per sample: data term (-fc8_t, or feature_weight * E_inv at pool5) + L2 + alpha-norm
    + TV + (for problems with a database) the patch prior + (for problems with closed_weights)
    the weighted mean activity on the units their masks close (Pathway.head). A problem whose
    energy or image becomes non-finite is frozen at its last finite image and reported `diverged`.
    """
    settings = settings or Settings()
    if not problems:
        return []
    for i, problem in enumerate(problems):
        _check(problem, i, pathway)
    device = pathway.mean.device
    size = pathway.input_size
    batch = len(problems)

    init = torch.stack([initial_image(p, size, settings) for p in problems]).to(device)
    m5 = _stack_optional([p.m5 for p in problems], pathway.pool5_shape, 1.0, device)
    m6 = _stack_optional([p.m6 for p in problems], (pathway.fc6_dim,), 1.0, device)
    m7 = _stack_optional([p.m7 for p in problems], (pathway.fc7_dim,), 1.0, device)
    closed_weights = _stack_optional(
        [None if p.closed_weights is None else torch.tensor(p.closed_weights) for p in problems], (3,), 0.0, device
    )
    free = _stack_optional(
        [None if p.keep is None else 1.0 - p.keep.float() for p in problems], (1, size, size), 1.0, device
    )
    class_rows = torch.tensor([i for i, p in enumerate(problems) if p.target_class is not None], dtype=torch.long)
    feature_rows = torch.tensor([i for i, p in enumerate(problems) if p.target_feature is not None], dtype=torch.long)
    class_rows, feature_rows = class_rows.to(device), feature_rows.to(device)
    class_targets = torch.tensor([p.target_class for p in problems if p.target_class is not None], dtype=torch.long, device=device)
    feature_targets = (
        torch.stack([p.target_feature.detach().float() for p in problems if p.target_feature is not None]).to(device)
        if len(feature_rows)
        else None
    )
    prior = _PriorTerm(problems if settings.prior_weight > 0 else [], device, settings.prior_stride, settings.jitter_seed)
    jitter_rng = torch.Generator().manual_seed(settings.jitter_seed)

    def data_energy(acts) -> Tensor:
        data = acts.fc8.new_zeros(batch)
        if len(class_rows):
            data = data.index_copy(0, class_rows, energy.class_score(acts.fc8[class_rows], class_targets))
        if len(feature_rows):
            inv = energy.feature_inversion(acts.pool5[feature_rows], feature_targets)
            data = data.index_copy(0, feature_rows, settings.feature_weight * inv)
        return data

    def total_energy(images: Tensor, shift: tuple[int, int], prior_weight: float) -> Tensor:
        seen = torch.roll(images, shifts=shift, dims=(2, 3)) if shift != (0, 0) else images
        acts = pathway(seen, m5=m5, m6=m6, m7=m7, closed_activity=closed_weights is not None)
        total = data_energy(acts)
        if closed_weights is not None:
            total = total + (acts.closed * closed_weights).sum(1)
        if settings.l2:
            total = total + energy.l2(images, settings.l2, pathway.mean)
        if settings.alpha_norm:
            total = total + energy.alpha_norm(images, settings.alpha_norm, centre=pathway.mean)
        if settings.tv:
            total = total + energy.tv(images, settings.tv)
        if prior and prior_weight > 0:
            total = total + prior.energy(images, prior_weight)
        return total

    image = init.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=settings.lr, **_fast_adam(device))
    active = torch.ones(batch, dtype=torch.bool, device=device)
    last_finite = init.clone()
    history: list[Tensor] = []

    for step in tqdm(range(settings.iterations), disable=not progress, desc="solve", unit="step", leave=False):
        prior_weight = prior_weight_at(step, settings) if prior else 0.0
        if prior_weight > 0 and (not prior.matched or step % max(settings.rematch_every, 1) == 0):
            prior.rematch(image.detach())
        shift = (0, 0)
        if settings.jitter:
            shift = tuple(torch.randint(-settings.jitter, settings.jitter + 1, (2,), generator=jitter_rng).tolist())
        per_sample = total_energy(image, shift, prior_weight)
        history.append(per_sample.detach().cpu())
        active &= torch.isfinite(per_sample.detach())
        optimizer.zero_grad(set_to_none=True)
        everyone_active = bool(active.all())
        (per_sample if everyone_active else torch.where(active, per_sample, torch.zeros_like(per_sample))).sum().backward()
        with torch.no_grad():
            if not everyone_active:
                image.grad.mul_(active.view(-1, 1, 1, 1).float())
            image.grad.nan_to_num_(0.0)
            if free is not None:
                image.grad.mul_(free)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, settings)
            optimizer.step()
            image.clamp_(0, 1)
            if free is not None:
                image.copy_(free * image + (1 - free) * init)
            # clamp_ keeps NaN (and maps inf into [0, 1]), and a NaN anywhere makes the sum NaN:
            # one reduction instead of a batch-sized boolean tensor
            active &= torch.isfinite(image.flatten(1).sum(1))
            if not bool(active.all()):
                frozen = ~active
                image[frozen] = last_finite[frozen]
            last_finite.copy_(image)

    return _solutions(pathway, problems, image.detach(), history, ~active, m5, m6, m7)


def _fast_adam(device) -> dict[str, Any]:
    """Adam's fused kernel where this torch has it for the device (one pass over the pixels
    instead of about ten); the same update up to float rounding."""
    try:
        torch.optim.Adam([torch.zeros(1, device=device, requires_grad=True)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return {}
    return {"fused": True}


@torch.no_grad()
def _solutions(pathway, problems, images, history, diverged, m5, m6, m7) -> list[Solution]:
    """Final numbers, under each problem's masks and without jitter."""
    acts = pathway(images, m5=m5, m6=m6, m7=m7)
    probs = acts.fc8.softmax(1)
    energies = torch.stack(history, 1) if history else torch.zeros(len(problems), 0)
    solutions = []
    for i, problem in enumerate(problems):
        score = prob = error = float("nan")
        if problem.target_class is not None:
            score = float(acts.fc8[i, problem.target_class])
            prob = float(probs[i, problem.target_class])
        else:
            target = problem.target_feature.to(images.device).float().unsqueeze(0)
            error = float(energy.feature_error(acts.pool5[i : i + 1], target))
        solutions.append(
            Solution(
                image=images[i].cpu(),
                energy=energies[i].tolist(),
                score=score,
                prob=prob,
                feature_error=error,
                diverged=bool(diverged[i]),
                label=problem.label,
            )
        )
    return solutions


@dataclass
class Solution:
    image: Tensor  # (3, S, S) in [0, 1], on CPU
    energy: list[float]  # total energy per step (for plots and the "lowers its energy" test)
    score: float  # final fc8[target] (class problems) or nan
    prob: float  # final softmax prob of target (class problems, under its masks) or nan
    feature_error: float  # ||phi(I) - phi0|| / ||phi0|| (inversion problems) or nan
    diverged: bool  # NaN/inf met: the image is the last finite iterate and must not be shown as a result
    label: str = ""
