"""The data-driven patch prior of Sec. 3.2 as an engine term.

R_gamma sum_p ||I~_p - D~_p||^2 with the paper's alternation: every `rematch_every` steps the
image's patches are matched (no grad) to their nearest natural patches in the problem's
`generator.engine.patch_database.PatchDatabase`; between re-matches the matches are fixed targets. Both sides
are globally normalized (generator/engine/patch_database.py says why). Settings and their history:
docs/tuning.md#engine.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from generator.engine.terms import Group, Step, Term

NORMALIZE_EPS = 1e-5  # added to an image's std before dividing by it


def global_normalize(images: Tensor, eps: float = NORMALIZE_EPS) -> tuple[Tensor, Tensor]:
    """(images - mean) / (std + eps) per image (B,3,H,W) over all its values, and that std."""
    centred = images - images.mean((1, 2, 3), keepdim=True)
    # the unbiased std written out: Tensor.std is a slow single-pass kernel on CPU
    std = (centred.pow(2).sum((1, 2, 3), keepdim=True) / max(images[0].numel() - 1, 1)).sqrt()
    return centred / (std + eps), std


def patch_prior(patches: Tensor, matched: Tensor) -> Tensor:
    """mean ||I~_p - D~_p||^2 over patch entries, per sample: the prior on cut patches (B,P,D).
    The reference for the folded form the engine uses."""
    return (patches - matched).pow(2).flatten(1).mean(1)


def patch_prior_folded(normalized: Tensor, coverage: Tensor, folded: Tensor, matched_sq: Tensor, entries: int) -> Tensor:
    """`patch_prior` without cutting the image into patches: the same value and gradient.

    sum_p ||x_p - d_p||^2 = sum_pixels (coverage * x^2 - 2 * folded * x) + sum_p ||d_p||^2,
    where coverage counts the patches over each pixel and `folded` is the matched patches
    summed back onto the image (F.fold), both fixed between re-matches."""
    dense = (coverage * normalized.pow(2) - 2 * folded * normalized).flatten(1).sum(1)
    return (dense + matched_sq).clamp_min(0) / entries


def patch_prior_normalized(images: Tensor, coverage: Tensor, folded: Tensor, matched_sq: Tensor, entries: int,
                           eps: float = NORMALIZE_EPS) -> Tensor:
    """`patch_prior_folded(global_normalize(images), ...)` with the gradient written out
    (~18 passes over the batch per step instead of autograd's ~35)."""
    value: Tensor = _NormalizedFoldedPrior.apply(images, coverage, folded, matched_sq, eps)
    return value / entries


class _NormalizedFoldedPrior(torch.autograd.Function):
    """sum_pixels (c n^2 - 2 f n) + sum ||d_p||^2 with n = (x - mean(x)) / (std(x) + eps).

    With g = dE/dn = 2 (c n - f), the normalization's backward is
    dE/dx = (g - mean(g)) / (std + eps) - n * sum(g n) / ((N - 1) std), per image of N values."""

    @staticmethod
    def forward(ctx: Any, images: Tensor, coverage: Tensor, folded: Tensor, matched_sq: Tensor, eps: float) -> Tensor:
        normalized, std = global_normalize(images, eps)
        residual = coverage * normalized - folded
        dense = ((residual - folded) * normalized).flatten(1).sum(1)
        ctx.save_for_backward(normalized, residual, std)
        ctx.count, ctx.eps = images[0].numel(), eps
        return (dense + matched_sq).clamp_min(0)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None, None, None]:
        normalized, residual, std = ctx.saved_tensors
        g = residual * (2 * grad_out.view(-1, 1, 1, 1))
        g_mean = g.mean((1, 2, 3), keepdim=True)
        g_dot_n = (g * normalized).sum((1, 2, 3), keepdim=True)
        through_std = normalized * (g_dot_n / ((ctx.count - 1) * std.clamp_min(1e-12)))
        return (g - g_mean).div_(std + ctx.eps).sub_(through_std), None, None, None, None


class _PatchPriorGroup(Group):
    """Problems with the same patch size, stride and schedule; each keeps its own database.

    Patches are cut at `stride` on a grid whose offset is redrawn at each re-match, so a stride
    larger than the database's still covers every pixel over the run. The fixed targets are
    folded back onto the full image, so a step is a few passes over the pixels. Problems
    sharing one database are matched in a single search."""

    def __init__(self, terms: Sequence[PatchPrior], rows: Tensor | None, device: torch.device) -> None:
        super().__init__(terms, rows, device)
        first = terms[0]
        self.patch, self.stride = first.database.patch, first.stride or first.database.stride
        self.rematch_every, self.start, self.full = first.rematch_every, first.start, first.full
        self.databases = [t.database for t in terms]
        self.reference: Tensor | None = None  # (B, 2): each row's fixed (mean, std), or None: its own
        if any(getattr(d, "normalization", "image") != first.normalize for d in self.databases):
            raise ValueError(f"prior_normalize {first.normalize!r} cuts the picture's patches differently from "
                             "its database's (PatchDatabase.from_images(normalize=...) must be the same)")
        if first.normalize == "photos":
            if any(getattr(d, "reference", None) is None for d in self.databases):
                raise ValueError("prior_normalize 'photos' needs databases made from photos (PatchDatabase.from_images)")
            self.reference = torch.tensor([d.reference for d in self.databases], device=device)
        self.rng = torch.Generator().manual_seed(first.seed)
        self.targets: tuple[Tensor, Tensor, Tensor, int] | None = None
        self.factor = 1.0

    def schedule(self, step: int, iterations: int) -> float:
        """0 before `start`, a linear ramp to 1 at `full` (fractions of the iterations)."""
        progress = step / max(iterations - 1, 1)
        if progress < self.start:
            return 0.0
        ramp = self.full - self.start
        return 1.0 if ramp <= 0 else min(1.0, (progress - self.start) / ramp)

    @torch.no_grad()
    def before_step(self, step: int, iterations: int, images: Tensor) -> None:
        self.factor = self.schedule(step, iterations)
        if self.factor > 0 and (self.targets is None or step % self.rematch_every == 0):
            self.rematch(images if self.rows is None else images.index_select(0, self.rows))

    def rematch(self, images: Tensor) -> None:
        patch, stride = self.patch, self.stride
        top, left = torch.randint(0, stride, (2,), generator=self.rng).tolist()
        cropped = self.normalize(images)[..., top:, left:]
        current = F.unfold(cropped, kernel_size=patch, stride=stride).transpose(1, 2).cpu()
        matched = torch.empty_like(current)
        by_database: dict[int, list[int]] = {}
        for j, database in enumerate(self.databases):
            by_database.setdefault(id(database), []).append(j)
        for rows in by_database.values():
            found = self.databases[rows[0]].match(current[rows].reshape(-1, current.shape[-1]))
            matched[rows] = found.reshape(len(rows), *current.shape[1:])

        def fold(columns: Tensor) -> Tensor:
            folded = F.fold(columns.transpose(1, 2), cropped.shape[-2:], kernel_size=patch, stride=stride)
            return F.pad(folded, (left, 0, top, 0)).to(images.device)

        self.targets = (
            fold(torch.ones_like(current[:1, :, :1]).expand(1, -1, patch * patch)),
            fold(matched),
            matched.pow(2).flatten(1).sum(1).to(images.device),
            current.shape[1] * current.shape[2],
        )

    def normalize(self, images: Tensor) -> Tensor:
        """The images as the prior compares them: by their own mean and std, or the photos'."""
        if self.reference is None:
            return global_normalize(images)[0]
        mean, std = self.reference[:, 0].view(-1, 1, 1, 1), self.reference[:, 1].view(-1, 1, 1, 1)
        return (images - mean.to(images)) / std.to(images)

    def __call__(self, step: Step) -> Tensor:
        images = step.images if self.rows is None else step.images.index_select(0, self.rows)
        if self.factor <= 0 or self.targets is None:
            return images.new_zeros(images.shape[0])
        if self.reference is None:
            value = patch_prior_normalized(images, *self.targets)
        else:  # a fixed affine map: autograd's gradient is already cheap
            value = patch_prior_folded(self.normalize(images), *self.targets)
        return (self.weights * self.factor) * value


@dataclass
class PatchPrior(Term):
    """The patch prior against `database` (a generator.engine.patch_database.PatchDatabase)."""

    database: Any
    rematch_every: int = 2
    stride: int | None = None  # the image's patch stride (None: the database's)
    start: float = 0.0  # fraction of the iterations before the prior switches on
    full: float = 0.0  # fraction at which it reaches its weight
    seed: int = 0  # the grid offsets' generator
    weight: float = 1.0
    normalize: str = "image"  # "image": by its own mean and std (the paper's) | "photos": the database's
    group_class: ClassVar[type[Group]] = _PatchPriorGroup

    def key(self) -> Hashable:
        return (type(self), self.database.patch, self.stride or self.database.stride, self.rematch_every,
                self.start, self.full, self.seed, self.normalize)
