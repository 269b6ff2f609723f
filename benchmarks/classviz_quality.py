"""Class visualization quality on the shared alexnet-slim: baseline [10] vs the patch prior.

    python -m benchmarks.classviz_quality [--quick] [--classes 0,4,9] [--iterations N]

For each Imagenette class, `generator.methods.classviz.run` (baseline and prior in one batch,
with the classviz parameters and engine settings of catalogs/shared-alexnet-slim.yaml, i.e.
what the shared atlas publishes) with the class's train images as ctx.images; reports the
target probability and the colour distance (energy.colour_distance: per-channel mean +
covariance of the pixels) to the class's real images, the mean over classes, and
distance(prior) / distance(baseline). Target: the prior's distance >= 30% below the
baseline's, with prob >= 0.9. Writes benchmarks/out/classviz_quality.{json,png}
(rows: baseline, prior, a real image).
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import (
    IMAGENETTE,
    IMAGENETTE_NAMES,
    OUT,
    class_images,
    contact_sheet,
    print_table,
    shared_pathway,
    write_json,
)
from generator.catalog import load_catalog
from generator.methods import ClassContext
from generator.methods.classviz import run

CATALOG = Path(__file__).resolve().parents[1] / "catalogs" / "shared-alexnet-slim.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 classes, 60 iterations, 20 prior images")
    parser.add_argument("--classes", default=None, help="comma-separated class indices (default: all 10)")
    parser.add_argument("--iterations", type=int, default=None, help="default: the shared catalog's")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    indices = [int(c) for c in args.classes.split(",")] if args.classes else ([0, 4, 9] if args.quick else list(range(10)))
    catalog = load_catalog(CATALOG)
    params = {k: v for k, v in catalog.methods["classviz"].items() if k != "enabled"}
    prior = catalog.prior
    if args.quick:
        prior = dataclasses.replace(prior, images=20)
        params.update(iterations=60)
    if args.iterations:
        params["iterations"] = args.iterations

    pathway = shared_pathway()
    rows, sheet = [], {"baseline": [], "prior": [], "real": []}
    for index in indices:
        start = time.perf_counter()
        images = class_images(IMAGENETTE[index], prior.images)
        with torch.no_grad():
            features = pathway(images)
        ctx = ClassContext(
            pathway=pathway, class_index=index, class_id=IMAGENETTE[index], class_name=IMAGENETTE_NAMES[index],
            images=images, image_names=[str(i) for i in range(len(images))], features=features, engine=catalog.engine,
            seed=args.seed, prior=prior,
        )
        result = run(ctx, params)
        n = result.numbers
        rows.append({
            "class": IMAGENETTE_NAMES[index],
            "prob_baseline": n["baseline_prob"], "prob_prior": n["prior_prob"],
            "colour_baseline": n["baseline_colour_distance"], "colour_prior": n["prior_colour_distance"],
            "ratio": n["colour_ratio"], "seconds": time.perf_counter() - start,
        })
        for picture in result.pictures:
            sheet[picture.key].append(picture.image)
        sheet["real"].append(images[0])
        print_table(rows[-1:], list(rows[-1]))

    columns = ["prob_baseline", "prob_prior", "colour_baseline", "colour_prior", "ratio"]
    mean = {c: statistics.fmean(r[c] for r in rows) for c in columns}
    summary = {
        **mean,
        "distance_ratio_of_means": mean["colour_prior"] / mean["colour_baseline"],
        "classes_prior_prob_ge_0.9": sum(r["prob_prior"] >= 0.9 for r in rows),
        "classes": len(rows),
    }
    print()
    print_table(rows + [{"class": "MEAN", **mean}], ["class", *columns, "seconds"])
    reduction = 1 - summary["distance_ratio_of_means"]
    print(f"\ncolour distance, prior vs baseline: {reduction:+.0%} lower (target >= 30% lower); "
          f"prior prob >= 0.9 in {summary['classes_prior_prob_ge_0.9']}/{len(rows)} classes")
    name = "classviz_quality" + ("_quick" if args.quick else "")
    sheet_path = contact_sheet(
        [sheet["baseline"], sheet["prior"], sheet["real"]], OUT / f"{name}.png",
        labels=["baseline L2+TV", "patch prior", "real image"],
    )
    path = write_json(name, {"params": params, "rows": rows, "summary": summary, "sheet": sheet_path.name})
    print(f"wrote {path} and {sheet_path}")


if __name__ == "__main__":
    main()
