"""The one loop: optimize a batch of problems together, one forward/backward per step.

Each `Problem` is one image with its own energy (a list of terms), masks, init and keep-mask.
`solve` groups the same kind of term across problems (terms.py), so a batch of different
problems shares one pass; every problem has its own random init, so its picture does not
depend on what else is in the batch. A problem whose energy or image becomes non-finite is
frozen at its last finite image and reported `diverged`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from generator.engine.params import Parameterization
from generator.engine.settings import Settings, lr_at
from generator.engine.terms import ClassScore, FeatureMatch, Group, Step, Term, feature_error
from generator.engine.transforms import Transform
from generator.pathway import Pathway

OptimizerFactory = Callable[[list[Tensor], float], torch.optim.Optimizer]


@dataclass
class Problem:
    """One image to optimize: its energy terms, masks on the pathway, init and fixed pixels."""

    terms: Sequence[Term]
    m5: Tensor | None = None  # (C, H, W) mask on pool5
    m6: Tensor | None = None  # (D6,) mask on fc6: 0/1, or 0 or 1/keep for a dropout member
    m7: Tensor | None = None  # (D7,) mask on fc7, likewise
    init: Tensor | None = None  # (3, S, S) in [0, 1]; None: mid-grey + noise from `seed`
    keep: Tensor | None = None  # (1, S, S) 1 where pixels stay fixed to `init` (inpainting)
    seed: int = 0
    label: str = ""


@dataclass
class Solution:
    image: Tensor  # (3, S, S) in [0, 1], on CPU
    energy: list[float]  # total energy per step
    score: float = float("nan")  # final fc8 of the first ClassScore's target, under the masks
    prob: float = float("nan")  # its softmax probability
    feature_error: float = float("nan")  # ||phi(I) - phi0|| / ||phi0|| of the first FeatureMatch
    diverged: bool = False  # NaN/inf met: the image is the last finite iterate, not a result
    label: str = ""
    numbers: dict[str, float] = field(default_factory=dict)


def initial_image(problem: Problem, size: int, init_std: float) -> Tensor:
    """The problem's init, or mid-grey + Gaussian noise from a generator seeded by its seed."""
    if problem.init is not None:
        return problem.init.detach().float().cpu().clone()
    generator = torch.Generator().manual_seed(problem.seed)
    return (0.5 + init_std * torch.randn(3, size, size, generator=generator)).clamp(0, 1)


def adam(params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    """Adam, with the fused kernel where this torch has it for the device (one pass over the
    pixels instead of about ten; the same update up to rounding)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


def _stack(tensors: Sequence[Tensor | None], shape: tuple[int, ...], fill: float, device: torch.device) -> Tensor | None:
    """Per-problem tensors stacked, `fill` where a problem has none; None if no problem has one."""
    if all(t is None for t in tensors):
        return None
    return torch.stack(
        [torch.full(shape, fill) if t is None else t.detach().float().cpu().reshape(shape) for t in tensors]
    ).to(device)


def _groups(problems: Sequence[Problem], pathway: Pathway) -> list[Group]:
    """One group per kind of term (Term.key), holding the rows of the problems that have it."""
    members: dict[Any, list[tuple[int, Term]]] = {}
    for row, problem in enumerate(problems):
        for term in problem.terms:
            members.setdefault(term.key(), []).append((row, term))
    device = pathway.mean.device
    everyone = list(range(len(problems)))
    groups = []
    for entries in members.values():
        rows = [row for row, _ in entries]
        index = None if rows == everyone else torch.tensor(rows, device=device)
        groups.append(entries[0][1].group([term for _, term in entries], index, pathway))
    return groups


class _Capture:
    """Forward hooks that keep the outputs of the named pathway modules some group reads."""

    def __init__(self, pathway: Pathway, names: set[str]) -> None:
        self.outputs: dict[str, Tensor] = {}
        self.handles = [pathway.get_submodule(name).register_forward_hook(self._keeper(name)) for name in sorted(names)]

    def _keeper(self, name: str) -> Callable[..., None]:
        def keep(module: Any, inputs: Any, output: Tensor) -> None:
            self.outputs[name] = output
        return keep

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def solve(
    pathway: Pathway,
    problems: Sequence[Problem],
    settings: Settings | None = None,
    *,
    transforms: Sequence[Transform] | None = None,
    param: Parameterization | None = None,
    optimizer: OptimizerFactory = adam,
    schedule: Callable[[int], float] | None = None,
    progress: bool = True,
) -> list[Solution]:
    """Minimize each problem's summed terms; transforms and parameterization default to the
    Settings' recipe (recipes.py), the learning rate to its schedule."""
    from generator.engine import recipes

    settings = settings or Settings()
    if not problems:
        return []
    transforms = recipes.transforms(settings) if transforms is None else transforms
    param = recipes.parameterization(settings) if param is None else param
    schedule = schedule or (lambda step: lr_at(step, settings))
    device, size, batch = pathway.mean.device, pathway.input_size, len(problems)

    init = torch.stack([initial_image(p, size, settings.init_std) for p in problems]).to(device)
    fc6_dim = pathway.fc6_dim
    if fc6_dim is None and any(p.m6 is not None for p in problems):
        raise ValueError("solve: an m6 mask was given but this pathway has no fc6")
    masks = {
        "m5": _stack([p.m5 for p in problems], pathway.pool5_shape, 1.0, device),
        "m6": None if fc6_dim is None else _stack([p.m6 for p in problems], (fc6_dim,), 1.0, device),
        "m7": _stack([p.m7 for p in problems], (pathway.fc7_dim,), 1.0, device),
    }
    free = _stack([None if p.keep is None else 1.0 - p.keep.float() for p in problems], (1, size, size), 1.0, device)
    if any(not p.terms for p in problems):
        raise ValueError("solve: every problem needs at least one term")
    groups = _groups(problems, pathway)
    capture = _Capture(pathway, {g.layer for g in groups if g.layer})
    closed = any(g.closed for g in groups)
    rng = torch.Generator().manual_seed(settings.jitter_seed)

    def images_of(params: Tensor) -> Tensor:
        images = param.image(params)
        return images if free is None else free * images + (1 - free) * init

    params = param.init(init).requires_grad_(True)
    opt = optimizer([params], schedule(0))
    active = torch.ones(batch, dtype=torch.bool, device=device)
    last_finite = params.detach().clone()
    history: list[Tensor] = []
    try:
        for index in tqdm(range(settings.iterations), disable=not progress, desc="solve", unit="step", leave=False):
            images = images_of(params)
            for group in groups:
                group.before_step(index, settings.iterations, images.detach())
            seen = images
            for transform in transforms:
                seen = transform(seen, rng)
            acts = pathway(seen, closed_activity=closed, **masks)
            step = Step(index, settings.iterations, images, acts, capture.outputs)
            per_sample = images.new_zeros(batch)
            for group in groups:
                value = group(step)
                per_sample = per_sample + value if group.rows is None else per_sample.index_add(0, group.rows, value)
            history.append(per_sample.detach().cpu())
            active &= torch.isfinite(per_sample.detach())
            everyone_active = bool(active.all())
            opt.zero_grad(set_to_none=True)
            total = per_sample if everyone_active else torch.where(active, per_sample, torch.zeros_like(per_sample))
            torch.autograd.backward(total.sum())
            with torch.no_grad():
                assert params.grad is not None
                if not everyone_active:
                    params.grad.mul_(active.view(-1, *[1] * (params.dim() - 1)).float())
                params.grad.nan_to_num_(0.0)
                for param_group in opt.param_groups:
                    param_group["lr"] = schedule(index)
                opt.step()
                param.after_step(params)
                # a NaN anywhere makes the sum NaN: one reduction instead of a batch-sized mask
                active &= torch.isfinite(params.flatten(1).sum(1))
                if not bool(active.all()):
                    params[~active] = last_finite[~active]
                last_finite.copy_(params)
        with torch.no_grad():
            return _solutions(pathway, problems, images_of(params).detach(), history, ~active, masks, capture)
    finally:
        capture.close()


@torch.no_grad()
def _solutions(pathway: Pathway, problems: Sequence[Problem], images: Tensor, history: list[Tensor],
               diverged: Tensor, masks: dict[str, Tensor | None], capture: _Capture) -> list[Solution]:
    """Final numbers under each problem's masks, without transforms."""
    acts = pathway(images, **masks)
    probs = acts.fc8.softmax(1)
    energies = torch.stack(history, 1) if history else torch.zeros(len(problems), 0)
    step = Step(len(history), len(history), images, acts, capture.outputs)
    solutions = []
    for i, problem in enumerate(problems):
        solution = Solution(image=images[i].cpu(), energy=energies[i].tolist(), diverged=bool(diverged[i]), label=problem.label)
        score = next((t for t in problem.terms if isinstance(t, ClassScore)), None)
        if score is not None:
            solution.score, solution.prob = float(acts.fc8[i, score.target]), float(probs[i, score.target])
        match = next((t for t in problem.terms if isinstance(t, FeatureMatch)), None)
        if match is not None:
            target = match.target.to(images.device).float().unsqueeze(0)
            solution.feature_error = float(feature_error(step.layer(match.layer)[i : i + 1], target))
        solutions.append(solution)
    return solutions
