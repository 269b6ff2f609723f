"""Reproduces docs/tuning.md#unit-visualizations: unit pictures in raw pixels against the defaults.

Are the unit atlas's pictures readable, and what do they cost? On the shared alexnet-slim, 16 pool5
channels (every 8th) and 4 fc7 units, the plain and prior pictures of each, solved as the unit step
solves them, once with raw pixels (`pixels`: 16 steps from noise of std 0.5, no transform) and once
with the catalog defaults (`defaults`), in one process one after the other:

- activation: the unit's value on the picture (pool5: maximum over positions) over its top dataset
  activation among the catalog's 500 images (>= 1: the picture drives the unit as hard as its best
  photo), and over its start's (what the optimization added);
- noise: the picture's share of power above 0.25 cycles/px (generator.methods.metrics.high_frequency_share):
  white noise ~0.8, the catalog photos 0.03;
- cost: CPU seconds per problem (process time, so other jobs on the machine count less).

    python -m benchmarks.studies.units_pictures     # prints a table; benchmarks/out/units_pictures.{json,png}
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import torch

from benchmarks.common import OUT, contact_sheet, print_table, shared_units_dataset, write_json
from generator.engine.solve import initial_image, solve
from generator.methods.metrics import high_frequency_share
from generator.units import UnitsParams
from generator.units import run as units_run

UNITS = [("pool5", i) for i in range(0, 128, 8)] + [("fc7", i) for i in (16, 75, 86, 94)]
VARIANTS = {
    "pixels": UnitsParams(iterations=16, parameterization="pixels", jitter=0, init_std=0.5, start_std=0.0),
    "defaults": UnitsParams(),
}


def unit(data: units_run.Dataset, layer: str, index: int, k: int = 9) -> dict[str, Any]:
    """The unit step's unit record (its top-k images) for one unit."""
    top = data.values[layer][:, index].topk(k)
    patches = [{"rank": r, "class": data.slugs[data.owners[i]], "image": data.positions[i], "name": data.names[i],
                "activation": float(v)} for r, (v, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()))]
    return {"layer": layer, "index": index, "patches": patches, "pictures": []}


def main() -> None:
    base, pathway, data = shared_units_dataset()
    units = [unit(data, layer, index) for layer, index in UNITS]
    rows, pictures = [], {}
    for name, params in VARIANTS.items():
        catalog = dataclasses.replace(base, units=params)
        settings = units_run.visualization_settings(catalog.engine, params)
        jobs = [units_run._Job(u, variant, "") for variant in ("plain", "prior") for u in units]
        start = time.process_time()
        problems = [units_run._problem(job, catalog, pathway, data, settings, seed=1000 * (job.unit["layer"] == "fc7")
                                       + job.unit["index"]) for job in jobs]
        images = torch.stack([s.image for s in solve(pathway, problems, settings, progress=False)])
        seconds = time.process_time() - start
        keys = [(job.unit["layer"], job.unit["index"]) for job in jobs]
        reached = units_run.unit_activations(pathway, images, keys)
        starts = units_run.unit_activations(
            pathway, torch.stack([initial_image(p, pathway.input_size, settings.init_std) for p in problems]), keys)
        noise = high_frequency_share(images).tolist()
        for kind in ("plain", "prior"):
            for layer in ("pool5", "fc7"):
                chosen = [i for i, job in enumerate(jobs) if job.variant == kind and job.unit["layer"] == layer]
                ratios = [reached[i] / jobs[i].unit["patches"][0]["activation"] for i in chosen]
                rows.append({"settings": name, "picture": kind, "layer": layer, "units": len(chosen),
                             "median_vs_top": statistics.median(ratios), "at_least_top": sum(r >= 1 for r in ratios),
                             "zero": sum(reached[i] <= 0 for i in chosen),
                             "above_start": sum(reached[i] > starts[i] for i in chosen),
                             "high_freq": statistics.mean(noise[i] for i in chosen),
                             "cpu_s_per_problem": seconds / len(jobs)})
        pictures[name] = images
    photos = float(high_frequency_share(data.images).mean())
    print_table(rows, list(rows[0]))
    pixels, defaults = (next(r["cpu_s_per_problem"] for r in rows if r["settings"] == s) for s in VARIANTS)
    print(f"catalog photos' high_freq: {photos:.3f}; CPU per problem defaults / pixels: {defaults / pixels:.2f}")
    write_json("units_pictures", {"rows": rows, "photos_high_freq": photos, "cpu_ratio": defaults / pixels})
    top = [units_run._image_of(data, u["patches"][0]) for u in units]
    sheet = [[top[i], pictures["pixels"][i], pictures["defaults"][i], pictures["pixels"][i + len(units)],
              pictures["defaults"][i + len(units)]] for i in range(len(units))]
    path = contact_sheet(sheet, OUT / "units_pictures.png", [f"{layer} {index}" for layer, index in UNITS])
    print(f"columns: top image, pixels plain, defaults plain, pixels prior, defaults prior -> {path}")


if __name__ == "__main__":
    main()
