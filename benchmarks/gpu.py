"""The GPU path in one command: the net's pass, the engine's rate, and a class's full suite on CUDA.

    python -m benchmarks.gpu [--families alexnet,...] [--batch 32] [--steps 5] [--classes 2]
                             [--no-suite] [--device cuda]

1. The bare forward + backward to the input of each family of benchmarks/net_speed.py at random
   init, batch `--batch`: the eager torchvision model, the model with its batch norms folded
   (what `load_pathway` gives), and the folded model under bf16 autocast; ms per image, TFLOP/s.
2. The engine's image-iterations per second (`solve` on class-score problems, no patch prior)
   on folded MobileNet-v2 and on AlexNet: at the batch a build's methods use today (9 problems)
   and at a batch sized to the card's free memory (measured from a short solve, capped at 1024).
3. Seconds per class of the demo world's full suite (`atlas build` of `--classes` classes with
   --device cuda, forced, into a temporary folder; the first class also loads the model and
   warms CUDA up). Making the demo world trains its net on the CPU once (minutes): point
   ATLAS_CACHE at a folder that already holds it to skip that, or pass --no-suite.

Without a CUDA GPU it prints one line saying so and exits 0. Writes benchmarks/out/gpu.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from typing import Any

import torch

from benchmarks.common import print_table, write_json
from benchmarks.net_speed import FAMILIES, Step, flops, fwd_bwd, pathways

TODAY_BATCH = 9  # the problems a class's location, ensemble and hierarchy solve together
MAX_BATCH = 1024


def synchronized(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(step: Step, steps: int, device: torch.device) -> float:
    step()  # warm-up (cuDNN picks its algorithms here)
    synchronized(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronized(device)
    return (time.perf_counter() - start) / steps


def autocast(step: Step, device: torch.device) -> Step:
    def run() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            step()
    return run


def bare_rows(families: list[str], batch: int, size: int, steps: int, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    for name in families:
        eager, folded = (p.to(device) for p in pathways(FAMILIES.get(name, name), size))
        images = torch.rand(batch, 3, size, size, device=device)
        variants = {"eager": fwd_bwd(eager, images.clone().requires_grad_(True)),
                    "folded": fwd_bwd(folded, images.clone().requires_grad_(True))}
        variants["folded bf16"] = autocast(fwd_bwd(folded, images.clone().requires_grad_(True)), device)
        work = flops(variants["eager"])
        base = None
        for variant, step in variants.items():
            s = seconds_per_step(step, steps, device)
            base = base or s
            rows.append({"family": name, "variant": variant, "ms/image": 1000 * s / batch,
                         "speedup": base / s, "TFLOP/s": work / s / 1e12})
        del eager, folded, variants
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def engine_rate(pathway: Any, batch: int, steps: int) -> float:
    """Image-iterations per second of `solve` on `batch` class-score problems (no prior)."""
    from generator.engine.settings import settings_from
    from generator.engine.solve import solve
    from generator.methods.common import class_problem

    settings = settings_from(None, iterations=steps)
    problems = [class_problem(pathway, settings, i % pathway.num_classes, seed=i) for i in range(batch)]
    solve(pathway, problems[:1], settings_from(None, iterations=1), progress=False)  # warm-up
    synchronized(pathway.mean.device)
    start = time.perf_counter()
    solve(pathway, problems, settings, progress=False)
    synchronized(pathway.mean.device)
    return batch * steps / (time.perf_counter() - start)


def memory_batch(pathway: Any, device: torch.device) -> int:
    """The batch that fills about 80% of the card's free memory, from one short solve's peak."""
    if device.type != "cuda":
        return TODAY_BATCH
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    engine_rate(pathway, TODAY_BATCH, 2)
    per_image = max(1, (torch.cuda.max_memory_allocated(device) - before) // TODAY_BATCH)
    free, _ = torch.cuda.mem_get_info(device)
    return max(TODAY_BATCH, min(MAX_BATCH, int(0.8 * free / per_image)))


def engine_rows(steps: int, size: int, device: torch.device) -> list[dict[str, Any]]:
    from generator.modelspec import ModelSpec
    from generator.nets.models import load_pathway

    rows = []
    for name in ("mobilenet_v2", "alexnet"):
        pathway = load_pathway(ModelSpec(name, input_size=size), device)
        for label, batch in (("today", TODAY_BATCH), ("memory", memory_batch(pathway, device))):
            rows.append({"model": name, "batch": f"{batch} ({label})",
                         "image-its/s": engine_rate(pathway, batch, steps)})
        del pathway
    return rows


def suite_rows(catalog: Any, classes: int) -> list[dict[str, Any]]:
    """`atlas build` of the catalog's first `classes` classes, every method, forced, one at a time."""
    from generator.build import build

    rows = []
    for entry in catalog.classes[:classes]:
        report = build(catalog, only=[entry.id], force=True, progress=False)
        if not report.ok:
            print(report.summary(), file=sys.stderr)
        seconds = sum(report.class_seconds)
        rows.append({"class": entry.id, "methods": len(report.ran), "seconds": seconds,
                     "image-its": report.iterations, "image-its/s": report.iterations / max(seconds, 1e-9)})
    return rows


def demo_suite_rows(classes: int, device: torch.device) -> list[dict[str, Any]]:
    """The demo world's suite on `device`, built into a temporary folder."""
    from generator.catalog import load_catalog
    from generator.demo import ensure_demo

    world = ensure_demo(progress=False)
    with tempfile.TemporaryDirectory() as output:
        return suite_rows(load_catalog(world.catalog_path, {"device": str(device), "output": output}), classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--batch", type=int, default=32, help="batch of the bare forward + backward")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement after a warm-up")
    parser.add_argument("--classes", type=int, default=2, help="demo classes whose full suite is built")
    parser.add_argument("--no-suite", action="store_true", help="skip the demo world's suite")
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # cpu: a check of this script only
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("benchmarks.gpu: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured")
        return
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}")
    bare = bare_rows(args.families.split(","), args.batch, args.size, args.steps, device)
    print(f"\nforward + backward to the input, batch {args.batch}, {args.size} px, mean of {args.steps} steps")
    print_table(bare, ["family", "variant", "ms/image", "speedup", "TFLOP/s"])
    engine = engine_rows(args.steps, args.size, device)
    print(f"\nthe engine (solve, class score + regularizers, no prior), {args.steps} steps")
    print_table(engine, ["model", "batch", "image-its/s"])
    suite = [] if args.no_suite else demo_suite_rows(args.classes, device)
    if suite:
        print("\nthe demo world's full suite per class (the first class also loads the model)")
        print_table(suite, ["class", "methods", "seconds", "image-its", "image-its/s"])
    path = write_json("gpu", {"device": name, "batch": args.batch, "size": args.size, "steps": args.steps,
                              "bare": bare, "engine": engine, "suite": suite})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
