"""The paper's intra-class claims (Sec. 4.1-4.4), measured from a built atlas's manifests.

Everything here reads only `classes/*/manifest.json` (what `generator.build` wrote), so the
claims page can be refreshed without rerunning a single optimization. Two claims need planted
truth (which style each image has, where each class keeps its parts): the demo world has it
(`truth_from_demo`); for real data we say "not measurable" and add a truth-free proxy.

Output (rendered by `generator.site`; keep the schema):
    {"model": str, "images": str, "classes": int,
     "claims": [{"id", "section", "statement", "metric", "value", "threshold", "holds", "per_class"}]}
`holds` is value > threshold, or null when there is no value or no threshold (proxies).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, pstdev
from typing import Any, Mapping

from sklearn.metrics import normalized_mutual_info_score

NMI_THRESHOLD = 0.7
LOCATION_THRESHOLD = 0.5  # a majority of classes
LEVELS = ("m7", "m6-7", "m5-7")


@dataclass
class Truth:
    """Planted facts about an image world."""

    styles: dict[str, int] = field(default_factory=dict)  # image file name -> style index
    layouts: dict[str, set[tuple[int, int]]] = field(default_factory=dict)  # class id -> pool5 cells (row, col)


def truth_from_demo(world) -> Truth:
    """The demo world's planted styles and layouts (`generator.demo.DemoWorld`)."""
    return Truth(styles=dict(world.styles), layouts={c: world.layout(c) for c in world.class_ids})


def load_truth(path: str | Path) -> Truth | None:
    """Planted truth from a truth.json (the demo world's format), or None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    layouts = {c: {tuple(cell) for cell in cells} for c, cells in raw.get("layouts", {}).items()}
    return Truth(styles=dict(raw.get("styles", {})), layouts=layouts)


def as_truth(truth: Truth | Mapping[str, int] | None) -> Truth | None:
    """A `Truth`; a plain mapping is read as image name -> style (layouts unknown)."""
    if truth is None or isinstance(truth, Truth):
        return truth
    return Truth(styles=dict(truth))


def read_manifests(output_dir: str | Path) -> list[dict[str, Any]]:
    """Every class manifest under output_dir/classes, sorted by class id."""
    manifests = [json.loads(p.read_text()) for p in sorted(Path(output_dir).glob("classes/*/manifest.json"))]
    return sorted(manifests, key=lambda m: m["class"]["id"])


def _claim(id: str, section: str, statement: str, metric: str, per_class: dict[str, float],
           threshold: float | None, value: float | None = None) -> dict[str, Any]:
    if value is None and per_class:
        value = mean(per_class.values())
    holds = None if value is None or threshold is None else bool(value > threshold)
    return {"id": id, "section": section, "statement": statement, "metric": metric, "value": value,
            "threshold": threshold, "holds": holds, "per_class": per_class}


def _method(manifest: dict[str, Any], name: str) -> dict[str, Any] | None:
    return manifest.get("methods", {}).get(name)


# --------------------------------------------------------------------------- 4.1 location

def window_on_layout(meta: Mapping[str, Any], cells: set[tuple[int, int]]) -> bool:
    """A window lies on the planted parts when at least half of its pool5 cells are parts."""
    size, top, left = meta["size"], meta["top"], meta["left"]
    inside = sum((top + i, left + j) in cells for i in range(size) for j in range(size))
    return 2 * inside >= size * size


def location_claims(manifests: list[dict[str, Any]], truth: Truth | None) -> list[dict[str, Any]]:
    statement = "Opening one pool5 window, a class is drawn best where it keeps its parts (Sec. 4.1)."
    hits: dict[str, float] = {}
    spread: dict[str, float] = {}
    for manifest in manifests:
        class_id, method = manifest["class"]["id"], _method(manifest, "location")
        if method is None or "heterogeneity" not in method["numbers"]:
            continue
        spread[class_id] = float(method["numbers"]["heterogeneity"])
        if truth is not None and class_id in truth.layouts and method["numbers"].get("strongest"):
            best = next(p for p in method["pictures"] if p["key"] == method["numbers"]["strongest"][0])
            hits[class_id] = float(window_on_layout(best["meta"], truth.layouts[class_id]))
    claims = []
    if truth is not None and truth.layouts:
        claims.append(_claim("location-layout", "4.1", statement,
                             "fraction of classes whose top-scoring window lies on the planted parts",
                             hits, LOCATION_THRESHOLD))
    else:
        claims.append(_claim("location-layout", "4.1", statement,
                             "not measurable: needs planted part layouts", {}, LOCATION_THRESHOLD))
    values = list(spread.values())
    claims.append(_claim(
        "location-heterogeneity", "4.1",
        "Classes differ in how much their picture changes across windows (monastery vs terrier) "
        "(truth-free proxy).",
        "per class: mean pairwise fc7 cosine distance between window pictures; value: max - min over classes",
        spread, None, value=(max(values) - min(values)) if values else None))
    return claims


# --------------------------------------------------------------------------- 4.2 topics

def topic_claims(manifests: list[dict[str, Any]], truth: Truth | None) -> list[dict[str, Any]]:
    statement = "NMF topics of a class's fc7 recover its styles (Sec. 4.2)."
    nmi: dict[str, float] = {}
    distinct: dict[str, float] = {}
    matched: dict[str, float] = {}
    for manifest in manifests:
        class_id, method = manifest["class"]["id"], _method(manifest, "topics")
        if method is None or "distinctness" not in method["numbers"]:
            continue
        numbers = method["numbers"]
        distinct[class_id] = float(numbers["distinctness"])
        if "picture_match" in numbers:
            matched[class_id] = float(numbers["picture_match"])
        if truth is None:
            continue
        assigned = numbers.get("assignments", [])
        names = [image["name"] for image in manifest["images"]][: len(assigned)]
        labelled = [(truth.styles[n], a) for n, a in zip(names, assigned) if n in truth.styles]
        if len(labelled) >= 2:
            nmi[class_id] = float(normalized_mutual_info_score([s for s, _ in labelled], [a for _, a in labelled]))
    claims = []
    if truth is not None and truth.styles:
        claims.append(_claim("topics-styles", "4.2", statement,
                             "NMI between each image's strongest topic and its planted style, mean over classes",
                             nmi, NMI_THRESHOLD))
    else:
        claims.append(_claim("topics-styles", "4.2", statement,
                             "not measurable: needs planted styles", {}, NMI_THRESHOLD))
    claims.append(_claim(
        "topics-distinct", "4.2",
        "A class's topics open different fc7 units (truth-free proxy).",
        "mean pairwise Jaccard distance between a class's topic masks m7 (0: identical, 1: disjoint)",
        distinct, None))
    claims.append(_claim(
        "topics-pictures", "4.2",
        "Each topic's picture shows its topic: to the network it looks most like that topic's images.",
        "fraction of topic pictures whose nearest topic (fc7 cosine to the mean fc7 of each topic's shown images) "
        "is their own; mean over classes (chance 1/K)",
        matched, 0.5))
    return claims


# --------------------------------------------------------------------------- 4.3 ensemble

def geometric_mean(values: list[float]) -> float | None:
    """exp(mean(log v)) of non-negative values (0 if one is 0, None for none): the average of
    ratios that treats 2x and 0.5x as opposites and that one class with a near-zero
    denominator cannot dominate."""
    if not values:
        return None
    if min(values) == 0:
        return 0.0
    return math.exp(mean(math.log(v) for v in values))


def ensemble_claims(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sec. 4.3: per class, mean distance across masks / across inits (generator.methods.ensemble);
    over classes, the geometric mean of those ratios (why: that module's docstring)."""
    claims = []
    for space, label in (("fc7", "fc7 cosine distance (unmasked net)"), ("pixel", "RMS pixel difference")):
        ratios: dict[str, float] = {}
        for manifest in manifests:
            method = _method(manifest, "ensemble")
            numbers = method["numbers"] if method else {}
            masks, inits = numbers.get(f"{space}_across_masks"), numbers.get(f"{space}_across_inits")
            if masks is not None and inits:  # no ratio when the inits gave identical pictures
                ratios[manifest["class"]["id"]] = float(masks) / float(inits)
        claims.append(_claim(
            f"ensemble-{space}", "4.3",
            "Different dropout masks (m6-7) change a class's picture more than different random inits (Sec. 4.3).",
            f"{label}: mean across masks / mean across inits per class; geometric mean over classes",
            ratios, 1.0, value=geometric_mean(list(ratios.values()))))
    return claims


# --------------------------------------------------------------------------- 4.4 hierarchy

def smallest_drop(errors: Mapping[str, float]) -> float:
    """min(err[m7] - err[m6-7], err[m6-7] - err[m5-7]): positive iff the error falls at each step
    (over the levels the net has: m7 -> m5-7 alone for a net without fc6)."""
    present = [lv for lv in LEVELS if lv in errors]
    return min(errors[a] - errors[b] for a, b in zip(present, present[1:]))


def hierarchy_claims(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    claims = []
    for space, label in (("pixel", "||I0 - I|| / ||I0||"), ("fc7", "fc7 cosine distance 1 - cos(fc7(I0), fc7(I))")):
        per_class: dict[str, dict[str, float]] = {}
        for manifest in manifests:
            method = _method(manifest, "hierarchy")
            if method is not None and all(f"{space}_{lv}" in method["numbers"] for lv in ("m7", "m5-7")):
                per_class[manifest["class"]["id"]] = {lv: float(method["numbers"][f"{space}_{lv}"]) for lv in LEVELS
                                                      if f"{space}_{lv}" in method["numbers"]}
        averaged = {lv: mean(e[lv] for e in per_class.values()) for lv in LEVELS
                    if all(lv in e for e in per_class.values())} if per_class else None
        claims.append(_claim(
            f"hierarchy-{space}", "4.4",
            "Inverting an image's binary code with more constraints (m7, m6-7, m5-7) comes closer to the image (Sec. 4.4).",
            f"smallest fall of the class-averaged error {label} along m7 -> m6-7 -> m5-7 (> 0: falls at every step)",
            {c: smallest_drop(e) for c, e in per_class.items()}, 0.0,
            value=smallest_drop(averaged) if averaged else None))
    claims.append(hierarchy_specific_claim(manifests))
    return claims


def hierarchy_specific_claim(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The control for hierarchy-pixel: a picture that only got calmer comes closer to *every*
    class image. Per class, error to I0 / mean error to the class's other images, at m7 minus
    at m5-7 (> 0: fixing the whole code brings the picture closer to its own image than to the
    others). Over classes: the ratio of the class-averaged errors."""
    errors: dict[str, dict[str, float]] = {}
    for manifest in manifests:
        method = _method(manifest, "hierarchy")
        keys = [f"{kind}_{lv}" for kind in ("pixel", "pixel_others") for lv in ("m7", "m5-7")]
        if method is not None and all(k in method["numbers"] for k in keys):
            errors[manifest["class"]["id"]] = {k: float(method["numbers"][k]) for k in keys}

    def gain(e: Mapping[str, float]) -> float:
        return e["pixel_m7"] / e["pixel_others_m7"] - e["pixel_m5-7"] / e["pixel_others_m5-7"]

    averaged = {k: mean(e[k] for e in errors.values()) for k in next(iter(errors.values()))} if errors else None
    return _claim(
        "hierarchy-specific", "4.4",
        "The pictures come closer to their own image, not only to every image of the class (control for hierarchy-pixel).",
        "(error to I0 / error to the class's other images) at m7 minus at m5-7 (> 0: relatively closer to I0)",
        {c: gain(e) for c, e in errors.items()}, 0.0, value=gain(averaged) if averaged else None)


# --------------------------------------------------------------------------- 3 patch prior

def prior_claims(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sec. 3: the patch prior brings the class visualization's colours closer to real images."""
    ratios, probs = {}, {}
    for manifest in manifests:
        numbers = (_method(manifest, "classviz") or {}).get("numbers", {})
        if numbers.get("prior_colour_distance") is not None and numbers.get("baseline_colour_distance"):
            class_id = manifest["class"]["id"]
            ratios[class_id] = float(numbers["prior_colour_distance"]) / float(numbers["baseline_colour_distance"])
            probs[class_id] = float(numbers.get("prior_prob") or 0.0)
    colour = _claim("prior-colour", "3",
                    "The patch prior gives class visualizations the colour statistics of real images, "
                    "where L2 + TV alone gives pop-art colours (Sec. 3).",
                    "colour distance to the class's images, prior / baseline (below 1: closer)", ratios, None)
    if colour["value"] is not None:
        colour["threshold"] = 1.0
        colour["holds"] = bool(colour["value"] < 1.0)
    prob = _claim("prior-prob", "3", "With the prior the picture still reaches the class (target probability).",
                  "softmax probability of the class with the patch prior", probs, 0.9)
    return [colour, prob]


# --------------------------------------------------------------------------- all

def claims_from_manifests(output_dir: str | Path, truth: Truth | Mapping[str, int] | None = None) -> dict[str, Any]:
    """The four claims (plus truth-free proxies) measured from output_dir's manifests."""
    truth = as_truth(truth)
    manifests = read_manifests(output_dir)
    models = sorted({m["model"]["name"] for m in manifests})
    counts = [len(m.get("images", [])) for m in manifests]
    per_class = (f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}") if counts else ""
    images = f"{sum(counts)} images, {per_class} per class" if counts else "no images"
    return {
        "model": ", ".join(models),
        "images": images,
        "classes": len(manifests),
        "claims": [
            *prior_claims(manifests),
            *location_claims(manifests, truth),
            *topic_claims(manifests, truth),
            *ensemble_claims(manifests),
            *hierarchy_claims(manifests),
        ],
    }


INVERSION_VARIANTS = {"retrieved": "[7] patch average", "rand": "[8]+rand", "avg": "[8]+[7]", "prior": "ours (patch prior)"}


def inversion_table(output_dir: str | Path) -> dict[str, Any]:
    """The paper's Table 1 for the atlas's own model: pool5 inversion errors of every inverted
    class image, per variant (mean and std over images), from the inversion pictures' numbers."""
    errors: dict[str, list[tuple[float, float]]] = {v: [] for v in INVERSION_VARIANTS}
    for manifest in read_manifests(output_dir):
        for picture in (_method(manifest, "inversion") or {}).get("pictures", []):
            variant, numbers = picture.get("meta", {}).get("variant"), picture.get("numbers", {})
            if variant in errors and numbers.get("image_error") is not None:
                errors[variant].append((numbers["image_error"], numbers.get("feature_error") or float("nan")))
    rows = []
    for variant, pairs in errors.items():
        if pairs:
            image = [p[0] for p in pairs]
            rows.append({"variant": INVERSION_VARIANTS[variant], "n": len(pairs),
                         "image_error_mean": mean(image), "image_error_std": pstdev(image),
                         "feature_error_mean": mean(p[1] for p in pairs)})
    return {"rows": rows}


def write_claims(output_dir: str | Path, truth: Truth | Mapping[str, int] | None = None) -> Path:
    """Measure the claims and write output_dir/claims.json atomically; returns its path."""
    from generator.store import write_json

    path = Path(output_dir) / "claims.json"
    write_json(claims_from_manifests(output_dir, truth), path)
    return path
