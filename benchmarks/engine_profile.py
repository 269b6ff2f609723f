"""Where a solve's time goes: the engine's per-step cost split into its parts, on real problems.

    python -m benchmarks.engine_profile [--methods topics,ensemble,classviz] [--iterations 20]

Runs the named methods of one class (tench) of the shared alexnet-slim catalog, with the engine's
iterations cut to `--iterations` (the split per step does not depend on the run length), under
torch.profiler, and sorts every operator's time (forward and its autograd backward) into: model
(the net's convs, pools, linears, ReLUs, the pathway's normalization and masks), parameterization
(Fourier + colour + sigmoid), transforms (pad, scale, jitter, rotate), prior (re-match: unfold,
faiss search, fold; the energy), regularizers (L2, TV), optimizer (Adam) and the rest (Python
and the loop). Prints a table; writes benchmarks/out/engine_profile.json. Needs ../shared.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from benchmarks.class_time import class_context, load_shared_catalog
from benchmarks.common import print_table, write_json
from generator.engine import decorrelated, pad_rotate, patch_prior, terms, transforms
from generator.methods import method_module
from generator.nets.pathway import Pathway

PARTS = ("model", "parameterization", "transforms", "prior", "regularizers", "optimizer", "other")

# Autograd nodes (the backward's top-level events) by the part whose forward made them.
BACKWARD = {
    "model": ("Convolution", "MaxPool", "Relu", "Threshold", "Addmm", "Mm", "AdaptiveAvgPool", "View", "Reshape",
              "Flatten", "T", "Mul", "Div", "Sub", "Gather", "Index", "Sum", "Mean", "Neg", "Add", "Where", "Stack",
              "Unsqueeze", "Squeeze", "Expand", "Select", "Linear"),
    "parameterization": ("FftC2R", "FftR2C", "ViewAsComplex", "Sigmoid", "Einsum", "Bmm", "Permute"),
    "transforms": ("GridSampler", "AffineGrid", "UpsampleBilinear", "ReplicationPad", "ConstantPadNd", "Roll",
                   "Slice"),
    "prior": ("_NormalizedFoldedPrior",),
    "regularizers": ("_CentredSquare", "_SquaredTV", "Abs", "Pow"),
}


Undo = list[tuple[Any, str, Any]]


def _wrap(owner: Any, name: str, label: str, undo: Undo) -> None:
    """Put every call of owner.name under a profiler scope called `label` (undone by `restore`)."""
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    undo.append((owner, name, original))

    def scoped(*args: Any, **kwargs: Any) -> Any:
        with record_function(label):
            return original(*args, **kwargs)

    setattr(owner, name, scoped)


def instrument() -> Undo:
    """Scopes around the engine's parts (monkeypatched for the profile; `restore` puts them back)."""
    undo: Undo = []
    _wrap(decorrelated.Decorrelated, "image", "part:parameterization", undo)
    for cls in (transforms.Jitter, transforms.RandomScale, pad_rotate.Pad, pad_rotate.RandomRotate):
        _wrap(cls, "__call__", "part:transforms", undo)
    _wrap(Pathway, "forward", "part:model", undo)
    _wrap(patch_prior._PatchPriorGroup, "before_step", "part:prior", undo)
    _wrap(patch_prior._PatchPriorGroup, "__call__", "part:prior", undo)
    for group in (terms._L2Group, terms._TVGroup, terms._AlphaNormGroup):
        _wrap(group, "__call__", "part:regularizers", undo)
    for data in (terms._ClassScoreGroup, terms._FeatureMatchGroup, terms._DirectionGroup, terms._ClosedActivityGroup,
                 terms._ChannelMatchGroup):
        _wrap(data, "__call__", "part:model", undo)
    _wrap(torch.optim.Adam, "step", "part:optimizer", undo)
    return undo


def restore(undo: Undo) -> None:
    for owner, name, original in reversed(undo):
        setattr(owner, name, original)


def profiled(run: Callable[[], Any]) -> tuple[float, dict[str, float], list[str]]:
    """Profile `run` (whose solves must run under an "engine:solve" scope): the seconds inside
    the solves, their split into PARTS (seconds; "other" = the rest of the solves' time) and the
    backward nodes nothing claimed."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    parts, unknown = split(prof)
    in_solve = parts.pop("solve", 0.0)
    parts["other"] = parts.get("other", 0.0) + max(in_solve - sum(parts.values()), 0.0)
    return in_solve, parts, unknown


def _scope(event: Any, prefix: str = "part:") -> str | None:
    """The innermost `prefix` scope an event ran under, if any."""
    while event is not None:
        if event.name.startswith(prefix):
            return str(event.name[len(prefix):])
        event = event.cpu_parent
    return None


def backward_part(name: str) -> str:
    """The part of an autograd node whose forward could not be traced, by its name."""
    node = name.split("evaluate_function: ", 1)[-1]
    for part, prefixes in BACKWARD.items():
        if any(node.startswith(p) for p in prefixes):
            return part
    return "other"


def split(prof: Any) -> tuple[dict[str, float], list[str]]:
    """Seconds per part: the forward scopes (part:*, outermost only), plus each autograd node's
    backward charged to the scope its forward op ran under (matched by sequence number; by the
    node's name where that fails). Also the backward nodes left unattributed."""
    events = list(prof.events())
    forward_part: dict[int, str] = {}
    for event in events:
        seq = getattr(event, "sequence_nr", -1)
        if seq is not None and seq >= 0 and not event.name.startswith("autograd::"):
            part = _scope(event)
            if part is not None:
                forward_part.setdefault(seq, part)
    seconds: dict[str, float] = defaultdict(float)
    unknown: set[str] = set()
    for event in events:
        if event.name == "engine:solve":
            seconds["solve"] += event.cpu_time_total / 1e6
        if _scope(event, "engine:") is None:
            continue
        if event.name.startswith("part:") and _scope(event.cpu_parent) is None:
            seconds[event.name[5:]] += event.cpu_time_total / 1e6
        elif event.name.startswith("autograd::engine::evaluate_function:"):
            seq = getattr(event, "sequence_nr", -1)
            part = forward_part.get(seq) if seq is not None and seq >= 0 else None
            if part is None:
                part = backward_part(event.name)
                if part == "other":
                    unknown.add(event.name.split(": ", 1)[-1])
            seconds[part] += event.cpu_time_total / 1e6
    return dict(seconds), sorted(unknown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="topics,ensemble,classviz")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--class", dest="wnid", default="n01440764")
    parser.add_argument("--catalog", default=None, help="a catalog path relative to the repository "
                        "(default catalogs/shared-alexnet-slim.yaml)")
    args = parser.parse_args()
    catalog = load_shared_catalog(args.catalog)
    ctx = class_context(catalog, args.wnid)
    ctx.engine = {**ctx.engine, "iterations": args.iterations}
    undo = instrument()
    rows, out = [], {}
    for name in args.methods.split(","):
        params = {k: v for k, v in catalog.methods[name].items() if k != "enabled"}
        if "iterations" in params and params["iterations"] is not None:
            params["iterations"] = args.iterations
        module = method_module(name)
        if hasattr(module, "solve"):
            _wrap(module, "solve", "engine:solve", undo)
        start = time.perf_counter()
        in_solve, parts, unknown = profiled(lambda: module.run(ctx, params))
        wall = time.perf_counter() - start
        row = {"method": name, "wall_s": wall, "solve_s": in_solve,
               **{p: parts.get(p, 0.0) / max(in_solve, 1e-9) for p in PARTS}}
        rows.append(row)
        out[name] = {"wall_s": wall, "solve_s": in_solve, "seconds": parts, "unclassified_backward": unknown}
        print_table([row], list(row))
        print("  unclassified backward nodes:", ", ".join(unknown) or "none")
    restore(undo)
    print(f"\nshares of the solve's time (profiled: the profiler's own cost inflates small ops), "
          f"{args.iterations} iterations, {torch.get_num_threads()} threads")
    print_table(rows, ["method", "wall_s", "solve_s", *PARTS])
    print(f"wrote {write_json('engine_profile', {'iterations': args.iterations, 'methods': out})}")


if __name__ == "__main__":
    main()
