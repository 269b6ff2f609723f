"""Engine speed: image-iterations per second of `solve` against the bare model, in one run.

    python -m benchmarks.speed [--quick] [--batch 16] [--iterations N] [--rounds 3]

On torchvision's AlexNet (random init: speed does not depend on the weights), at the batch a
class uses. Reports, all measured here and now (the machine is shared, so only ratios from one
run mean anything):
  - bare:     forward + backward to the input of the batch (the floor any engine pays)
  - solve:    the engine without the prior (L2 + TV + jitter + clamp + NaN guard)
  - prior:    the engine with every problem using a patch prior (class images as database)
  - single:   the same problems solved one at a time (what batching buys)
Targets: prior / bare >= 0.85 and batched / single >= 1.5. Writes benchmarks/out/speed.json.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from benchmarks.common import IMAGENETTE, SHARED, bare_rate, class_images, print_table, write_json
from generator.engine import recipes
from generator.engine.patch_database import PatchDatabase
from generator.engine.settings import Settings, settings_from
from generator.engine.solve import Problem, solve
from generator.methods import PriorParams
from generator.methods.common import class_problem
from generator.nets.pathway import Pathway


def solve_rate(pathway: Pathway, problems: list[Problem], settings: Settings) -> float:
    start = time.perf_counter()
    solve(pathway, problems, settings, progress=False)
    return len(problems) * settings.iterations / (time.perf_counter() - start)


def prior_database(size: int, normalize: str) -> PatchDatabase:
    """The database a class would use: its images if ../shared exists, else smooth random images."""
    database = PriorParams()
    n = database.images
    if (SHARED / "data" / "imagenette").is_dir():
        images = class_images(IMAGENETTE[4], n, size=size)
    else:
        coarse = torch.rand(n, 3, 14, 14, generator=torch.Generator().manual_seed(0))
        images = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear")
    return PatchDatabase.from_images(
        images, patch=database.patch, stride=database.stride, max_patches=database.max_patches,
        search_dims=database.search_dims, normalize=normalize,
    )


def parse_setting(item: str) -> tuple[str, object]:
    """'name=value' with the value typed like the setting's default."""
    name, _, value = item.partition("=")
    default = getattr(Settings(), name)
    return name, value if isinstance(default, str) else type(default)(float(value)) if default is not None else int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few iterations, small single-problem run")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=None, help="solve iterations per measurement")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved bare/solve/prior rounds (median)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="an engine setting for every run, e.g. --set param=pixels (repeat)")
    args = parser.parse_args()
    # full mode: the engine's default run length, so fixed costs (setup, the final evaluation)
    # weigh what they weigh in a real solve
    iterations = args.iterations or (20 if args.quick else Settings().iterations)
    args.rounds = args.rounds or (1 if args.quick else 3)
    singles = 2 if args.quick else 4

    pathway = Pathway(torchvision.models.alexnet(weights=None))
    settings = settings_from(None, iterations=iterations, **dict(parse_setting(item) for item in args.set))
    database = prior_database(pathway.input_size, settings.prior_normalize)
    plain = [class_problem(pathway, settings, i, seed=i) for i in range(args.batch)]
    with_prior = [class_problem(pathway, settings, i, database=database, seed=i) for i in range(args.batch)]

    # Interleaved rounds, median per run: this VM's speed drifts by 10% within a minute, so a
    # single bare / solve / prior sequence can put a slow phase on one side of a ratio.
    rounds: dict[str, list[float]] = {"bare": [], "solve": [], "prior": []}
    for _ in range(args.rounds):
        rounds["bare"].append(bare_rate(pathway, args.batch, iterations // 2))
        rounds["solve"].append(solve_rate(pathway, plain, settings))
        rounds["prior"].append(solve_rate(pathway, with_prior, settings))
    rates = {name: statistics.median(values) for name, values in rounds.items()}
    single_times = [solve_rate(pathway, [problem], settings) for problem in plain[:singles]]
    rates["single"] = len(single_times) / sum(1 / r for r in single_times)

    rows = [
        {"run": name, "image_it_per_s": rate, "ms_per_image_it": 1000 / rate, "vs_bare": rate / rates["bare"]}
        for name, rate in rates.items()
    ]
    print(f"engine settings: param {settings.param}, transforms {recipes.transforms(settings)}")
    print(f"torchvision AlexNet (random init), batch {args.batch}, {iterations} iterations, median of {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads; prior: {database.size} patches, "
          f"re-match every {settings.rematch_every} steps, query stride {settings.prior_stride or database.stride}")
    print_table(rows, ["run", "image_it_per_s", "ms_per_image_it", "vs_bare"])
    ratios = {
        "solve_vs_bare": rates["solve"] / rates["bare"],
        "prior_vs_bare": rates["prior"] / rates["bare"],
        "batched_vs_single": rates["solve"] / rates["single"],
    }
    targets = {"prior_vs_bare": 0.85, "batched_vs_single": 1.5}
    for name, value in ratios.items():
        verdict = "" if name not in targets else ("  (target >= %.2f: %s)" % (targets[name], "met" if value >= targets[name] else "MISSED"))
        print(f"{name}: {value:.2f}{verdict}")
    path = write_json("speed", {
        "model": "torchvision alexnet (random init)", "batch": args.batch, "iterations": iterations,
        "threads": torch.get_num_threads(), "quick": args.quick, "rates": rates, "rounds": rounds, "ratios": ratios,
        "targets": targets, "prior": {"patches": database.size, "rematch_every": settings.rematch_every,
                                      "query_stride": settings.prior_stride or database.stride},
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
