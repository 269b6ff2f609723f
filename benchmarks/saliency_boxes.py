"""Do occlusion and Grad-CAM put their weight on the labelled object? On the shared alexnet-slim,
for the 20 hand-boxed images of benchmarks/saliency_boxes.json (the two images per class the net
scores highest, which the saliency method shows first): each map's share of positive mass inside
the box, beside the box's share of the image (what a flat map would get), the pointing game (the
map's peak inside the box) and the agreement of the two maps.

    python -m benchmarks.saliency_boxes          # prints a table; writes benchmarks/out/saliency_boxes.json
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import IMAGENETTE, OUT, require_shared, shared_pathway
from generator.catalog import ImageSpec
from generator.images import class_images
from generator.methods import method_defaults
from generator.methods.saliency import maps_for, mass_inside, rank_correlation, top_overlap

BOXES = Path(__file__).with_name("saliency_boxes.json")


def main() -> None:
    shared = require_shared()
    spec = json.loads(BOXES.read_text())
    pathway = shared_pathway()
    params = method_defaults("saliency")
    settings = spec["images"]
    rows = []
    start = time.perf_counter()
    for entry in spec["boxes"]:
        loaded = class_images(ImageSpec("folder", shared / "data" / "imagenette" / settings["split"],
                                        per_class=settings["per_class"]),
                              entry["class"], settings["per_class"], settings["seed"], settings["size"])
        image = loaded.images[loaded.names.index(entry["name"])]
        maps = maps_for(pathway, image, IMAGENETTE.index(entry["class"]), params["patch"], params["stride"])
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
    summary["images"] = len(rows)
    summary["seconds_per_image"] = seconds / len(rows)
    print(json.dumps(summary, indent=1))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "saliency_boxes.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
