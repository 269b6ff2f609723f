"""Do occlusion and Grad-CAM put their weight on the labelled object? On the shared alexnet-slim
and the shared mobilenet-v2 (Grad-CAM at its last conv map, 1280 x 7 x 7), for the 20 hand-boxed
images of benchmarks/saliency_boxes.json (the two images per class alexnet-slim scores highest,
which its saliency method shows first): each map's share of positive mass inside the box, beside
the box's share of the image (what a flat map would get), the pointing game (the map's peak inside
the box) against its chance level (a peak dropped uniformly at random lands inside with
probability = the box's area: the expected hits are the sum of the areas, and p is the chance of
at least the observed hits under those independent odds), and the agreement of the two maps.

    python -m benchmarks.saliency_boxes [--model alexnet-slim|mobilenet-v2|both]
                                                 # prints tables; writes benchmarks/out/saliency_boxes.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import IMAGENETTE, OUT, REPO, require_shared, shared_pathway
from generator.catalog import ImageSpec, load_catalog
from generator.images import class_images
from generator.methods import method_defaults
from generator.methods.saliency import maps_for, mass_inside, rank_correlation, top_overlap
from generator.nets.models import load_pathway
from generator.nets.pathway import Pathway

BOXES = Path(__file__).with_name("saliency_boxes.json")


def chance_of_at_least(hits: int, odds: list[float]) -> float:
    """P(at least `hits` successes) of independent trials with these success odds (Poisson-binomial)."""
    counts = [1.0]  # counts[k]: P(k successes so far)
    for p in odds:
        counts = [(counts[k] if k < len(counts) else 0.0) * (1 - p) + (counts[k - 1] * p if k else 0.0)
                  for k in range(len(counts) + 1)]
    return float(sum(counts[hits:]))


def model(name: str) -> tuple[Pathway, list[int]]:
    """A shared net and the fc8 index of each Imagenette class (IMAGENETTE order)."""
    if name == "alexnet-slim":
        return shared_pathway(), list(range(len(IMAGENETTE)))
    catalog = load_catalog(REPO / "catalogs" / "shared-mobilenet-v2.yaml")
    index = {entry.id: entry.index for entry in catalog.classes}
    return load_pathway(catalog.model, "cpu"), [index[wnid] for wnid in IMAGENETTE]


def measure(name: str, shared: Path, spec: dict[str, Any]) -> dict[str, Any]:
    pathway, indices = model(name)
    params = method_defaults("saliency")
    settings = spec["images"]
    rows = []
    start = time.perf_counter()
    for entry in spec["boxes"]:
        loaded = class_images(ImageSpec("folder", shared / "data" / "imagenette" / settings["split"],
                                        per_class=settings["per_class"]),
                              entry["class"], settings["per_class"], settings["seed"], settings["size"])
        image = loaded.images[loaded.names.index(entry["name"])]
        maps = maps_for(pathway, image, indices[IMAGENETTE.index(entry["class"])], params["patch"], params["stride"])
        x, y, w, h = entry["box"]
        row = {"class": entry["class"], "name": entry["name"], "area": w * h / image[0].numel(),
               "rank_correlation": rank_correlation(maps["occlusion"], maps["gradcam"]),
               "top_iou": top_overlap(maps["occlusion"], maps["gradcam"], params["top"])}
        for kind, heat in maps.items():
            peak_y, peak_x = divmod(int(heat.argmax()), heat.shape[1])
            row[f"{kind}_mass"] = mass_inside(heat, (x, y, w, h))
            row[f"{kind}_peak_inside"] = bool(x <= peak_x < x + w and y <= peak_y < y + h)
        rows.append(row)
    seconds = time.perf_counter() - start

    print(f"\n{name}")
    print(f"{'image':38s} {'area':>5s} {'occ mass':>8s} {'cam mass':>8s} {'occ pk':>6s} {'cam pk':>6s} {'rho':>5s}")
    for r in rows:
        print(f"{r['class'] + ' ' + r['name']:38s} {r['area']:5.2f} {r['occlusion_mass']:8.2f} {r['gradcam_mass']:8.2f} "
              f"{str(r['occlusion_peak_inside']):>6s} {str(r['gradcam_peak_inside']):>6s} {r['rank_correlation']:5.2f}")
    mean = lambda key: float(torch.tensor([float(r[key]) for r in rows]).nanmean())  # noqa: E731
    summary: dict[str, Any] = {key: mean(key) for key in ("area", "occlusion_mass", "gradcam_mass", "occlusion_peak_inside",
                                          "gradcam_peak_inside", "rank_correlation", "top_iou")}
    summary["occlusion_mass_over_area"] = summary["occlusion_mass"] / summary["area"]
    summary["gradcam_mass_over_area"] = summary["gradcam_mass"] / summary["area"]
    summary["mass_above_area"] = {kind: sum(r[f"{kind}_mass"] > r["area"] for r in rows) for kind in ("occlusion", "gradcam")}
    areas = [r["area"] for r in rows]
    summary["pointing_chance_hits"] = sum(areas)  # expected peaks inside for a uniformly random peak
    for kind in ("occlusion", "gradcam"):
        hits = sum(r[f"{kind}_peak_inside"] for r in rows)
        summary[f"{kind}_pointing_hits"] = hits
        summary[f"{kind}_pointing_p"] = chance_of_at_least(hits, areas)
    summary["images"] = len(rows)
    summary["seconds_per_image"] = seconds / len(rows)
    print(json.dumps(summary, indent=1))
    return {"summary": summary, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["alexnet-slim", "mobilenet-v2", "both"], default="both")
    names = ["alexnet-slim", "mobilenet-v2"] if (choice := parser.parse_args().model) == "both" else [choice]
    shared = require_shared()
    spec = json.loads(BOXES.read_text())
    results = {name: measure(name, shared, spec) for name in names}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "saliency_boxes.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
