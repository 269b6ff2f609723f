"""The one loop: optimize a batch of problems together, one forward/backward per step.

Each `Problem` is one image with its own energy (a list of terms), gates, init and keep-mask.
`solve` groups the same kind of term across problems (terms.py), so a batch of different
problems shares one pass; every problem has its own random init, so its picture does not
depend on what else is in the batch. A problem whose energy or image becomes non-finite is
frozen at its last finite image and reported `diverged`. The loop knows neither the methods nor
the pathway's levels: gates are named by the levels the pathway takes them at
(`Pathway.gate_shapes`), and each kind of term reports its own numbers (`Group.report`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from generator.engine.params import Parameterization, Pixels
from generator.engine.settings import Settings, lr_at
from generator.engine.terms import Group, Step, Term
from generator.engine.transforms import Transform
from generator.nets.pathway import Activations, Pathway

OptimizerFactory = Callable[[list[Tensor], float], torch.optim.Optimizer]


@dataclass
class Problem:
    """One image to optimize: its energy terms, gates on the pathway, init and fixed pixels."""

    terms: Sequence[Term]
    # level -> gate of one sample, e.g. {"pool5": (C, H, W) window, "fc7": (D7,) 0/1 code, or 0 or
    # 1/keep for a dropout member}; a level this problem leaves out is open (gate 1)
    gates: Mapping[str, Tensor] = field(default_factory=dict)
    init: Tensor | None = None  # (3, S, S) in [0, 1]; None: mid-grey + noise from `seed`
    keep: Tensor | None = None  # (1, S, S) 1 where pixels stay fixed to `init` (inpainting)
    seed: int = 0
    label: str = ""


@dataclass
class Solution:
    image: Tensor  # (3, S, S) in [0, 1], on CPU
    energy: list[float]  # total energy per step
    diverged: bool = False  # NaN/inf met: the image is the last finite iterate, not a result
    label: str = ""
    # what the problem's terms report on the final image under its gates, without transforms
    # (Group.report): e.g. ClassScore's "score" and "prob", FeatureMatch's "feature_error"
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


def nadam(params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    """NAdam (Adam with Nesterov momentum), MACO's optimizer."""
    return torch.optim.NAdam(params, lr=lr)


OPTIMIZERS: dict[str, OptimizerFactory] = {"adam": adam, "nadam": nadam}


def _stack(tensors: Sequence[Tensor | None], shape: tuple[int, ...], fill: float, device: torch.device) -> Tensor | None:
    """Per-problem tensors stacked, `fill` where a problem has none; None if no problem has one."""
    if all(t is None for t in tensors):
        return None
    return torch.stack(
        [torch.full(shape, fill) if t is None else t.detach().float().cpu().reshape(shape) for t in tensors]
    ).to(device)


def _gates(pathway: Pathway, problems: Sequence[Problem], device: torch.device) -> dict[str, Tensor]:
    """Each level some problem gates -> (B, ...) gates, 1 (open) for the problems without one."""
    shapes = pathway.gate_shapes
    unknown = sorted({level for p in problems for level in p.gates} - set(shapes))
    if unknown:
        raise ValueError(f"solve: a gate at {', '.join(unknown)}, but this pathway gates {', '.join(shapes)}")
    stacked = {level: _stack([p.gates.get(level) for p in problems], shape, 1.0, device) for level, shape in shapes.items()}
    return {level: gate for level, gate in stacked.items() if gate is not None}


def _groups(problems: Sequence[Problem], pathway: Pathway) -> tuple[list[Group], list[list[tuple[int, int]]]]:
    """One group per kind of term (Term.key), holding the rows of the problems that have it; and
    for each problem, where each of its terms went: (group, place among the group's terms)."""
    members: dict[Any, list[tuple[int, Term]]] = {}
    places: list[list[tuple[int, int]]] = []
    for row, problem in enumerate(problems):
        places.append([])
        for term in problem.terms:
            entries = members.setdefault(term.key(), [])
            places[row].append((list(members).index(term.key()), len(entries)))
            entries.append((row, term))
    device = pathway.mean.device
    everyone = list(range(len(problems)))
    groups = []
    for entries in members.values():
        rows = [row for row, _ in entries]
        index = None if rows == everyone else torch.tensor(rows, device=device)
        groups.append(entries[0][1].group([term for _, term in entries], index, pathway))
    return groups, places


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
    optimizer: OptimizerFactory | None = None,
    schedule: Callable[[int], float] | None = None,
    progress: bool = True,
) -> list[Solution]:
    """Minimize each problem's summed terms; transforms and parameterization default to the
    Settings' recipe (recipes.py), the optimizer and the learning rate to its own."""
    from generator.engine import recipes

    settings = settings or Settings()
    if not problems:
        return []
    transforms = recipes.transforms(settings) if transforms is None else transforms
    drawn: Parameterization = recipes.parameterization(settings) if param is None else param
    schedule = schedule or (lambda step: lr_at(step, settings))
    optimizer = optimizer or OPTIMIZERS[settings.optimizer]
    device, size, batch = pathway.mean.device, pathway.input_size, len(problems)

    init = torch.stack([initial_image(p, size, settings.init_std) for p in problems]).to(device)
    gates = _gates(pathway, problems, device)
    free = _stack([None if p.keep is None else 1.0 - p.keep.float() for p in problems], (1, size, size), 1.0, device)
    if any(not p.terms for p in problems):
        raise ValueError("solve: every problem needs at least one term")
    groups, places = _groups(problems, pathway)
    capture = _Capture(pathway, set().union(*(g.captures() for g in groups)))
    rng = torch.Generator().manual_seed(settings.jitter_seed)

    def images_of(params: Tensor) -> Tensor:
        images = drawn.image(params)
        return images if free is None else free * images + (1 - free) * init

    stages = small_stages(settings, pathway, groups, gates)
    params = drawn.init(init).requires_grad_(True)
    opt = optimizer([params], schedule(0))
    active = torch.ones(batch, dtype=torch.bool, device=device)
    last_finite = params.detach().clone()
    history: list[Tensor] = []
    try:
        steps = settings.iterations + settings.detail_steps
        for index in tqdm(range(steps), disable=not progress, desc="solve", unit="step", leave=False):
            if index == settings.iterations:  # the detail steps: raw pixels from the picture so far
                with torch.no_grad():
                    picture = images_of(params)
                drawn = Pixels()
                params = drawn.init(picture).requires_grad_(True)
                opt = optimizer([params], settings.detail_lr)
                last_finite = params.detach().clone()
            images = images_of(params)
            for group in groups:
                group.before_step(index, settings.iterations, images.detach())
            seen = images
            for transform in transforms:
                seen = transform(seen, rng)
            seen_gates = gates
            stage = next((stage for stage in stages if index < stage.until), None)
            if stage is not None:
                seen = F.interpolate(seen, size=stage.size, mode="bilinear", antialias=True, align_corners=False)
                seen_gates = stage.gates
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.autocast == "bf16"):
                acts = pathway(seen, seen_gates)
            layers = capture.outputs
            if settings.autocast != "off":  # the terms and their gradients in float32
                acts, layers = in_float32(acts), {name: value.float() for name, value in layers.items()}
            step = Step(index, settings.iterations, images, acts, layers, seen_gates)
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
                    param_group["lr"] = schedule(index) if index < settings.iterations else settings.detail_lr
                opt.step()
                drawn.after_step(params)
                # a NaN anywhere makes the sum NaN: one reduction instead of a batch-sized mask
                active &= torch.isfinite(params.flatten(1).sum(1))
                if not bool(active.all()):
                    params[~active] = last_finite[~active]
                last_finite.copy_(params)
        with torch.no_grad():
            final = images_of(params).detach()
            step = Step(len(history), len(history), final, pathway(final, gates), capture.outputs, gates)
            return _solutions(problems, step, history, ~active, groups, places)
    finally:
        capture.close()


def in_float32(acts: Activations) -> Activations:
    """The activations of an autocast forward pass as float32 (differentiably), field by field."""
    def up(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: up(item) for key, item in value.items()}
        return value.float() if isinstance(value, Tensor) else value
    return dataclasses.replace(acts, **{f.name: up(getattr(acts, f.name)) for f in dataclasses.fields(acts)})


@dataclass(frozen=True)
class Stage:
    """The first steps up to `until` show the net the image resized to `size` px, under `gates`."""

    until: int
    size: int
    gates: dict[str, Tensor]


def small_stages(settings: Settings, pathway: Pathway, groups: Sequence[Group],
                 gates: Mapping[str, Tensor]) -> list[Stage]:
    """The coarse steps (`coarse_size` up to `coarse_until`), then the mid ones (`mid_size` from
    there up to `mid_until`), each with the gates the net sees them under: a gated map's gate (a
    pool5 window) averaged down to that map's size there. None where a size is not smaller than
    the input, where a problem matches a map of the full size, or where the net takes only its own
    input size (an fc head on a flattened map, a ViT's grid)."""
    wanted = [(until, size) for until, size in ((settings.coarse_until, settings.coarse_size),
                                                (settings.mid_until, settings.mid_size))
              if until and 0 < size < pathway.input_size]
    if len(wanted) == 2 and wanted[1][0] <= wanted[0][0]:  # the mid steps would end before the coarse ones do
        wanted = wanted[:1]
    if not wanted or any(group.full_size for group in groups):
        return []
    stages = []
    for until, size in wanted:
        probe = torch.zeros(1, 3, size, size, device=pathway.mean.device)
        try:
            with torch.no_grad():
                acts = pathway(probe)
        except (RuntimeError, AssertionError, ValueError):
            return []
        small = {level: F.adaptive_avg_pool2d(gate, getattr(acts, level).shape[2:]) if gate.dim() == 4 else gate
                 for level, gate in gates.items()}
        stages.append(Stage(int(until * settings.iterations), size, small))
    return stages


def _solutions(problems: Sequence[Problem], step: Step, history: list[Tensor], diverged: Tensor,
               groups: Sequence[Group], places: list[list[tuple[int, int]]]) -> list[Solution]:
    """Each problem's image, energies and the numbers its terms report on the final images
    (`step`: under each problem's gates, without transforms)."""
    energies = torch.stack(history, 1) if history else torch.zeros(len(problems), 0)
    reports = [{name: values.tolist() for name, values in group.report(step).items()} for group in groups]
    solutions = []
    for i, problem in enumerate(problems):
        numbers: dict[str, float] = {}
        for group, place in places[i]:
            for name, values in reports[group].items():
                numbers.setdefault(name, values[place])
        solutions.append(Solution(image=step.images[i].cpu(), energy=energies[i].tolist(), diverged=bool(diverged[i]),
                                  label=problem.label, numbers=numbers))
    return solutions
