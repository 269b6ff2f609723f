"""The paper's intra-class claims (Sec. 4.1-4.4), measured from a built atlas's manifests.

Everything here reads only `classes/*/manifest.json` (what `generator.build` wrote, as
`generator.manifest.Manifest` records), so the claims page can be refreshed without rerunning a
single optimization. Each claim's statement is declared with its method in the registry
(`MethodSpec.claims`); this module measures it. Two claims need planted
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
from typing import Any, Callable, Iterator, Mapping

from generator import safefs
from generator.errors import AtlasError
from generator.manifest import Manifest, ManifestError, MethodRecord, _Reader, bounded_int, class_manifests, finite
from generator.methods import METHODS, REGISTRY
from generator.nets.families import has_fc6, in_words, words_key
from generator.records import Meta, Step, Window

NMI_THRESHOLD = 0.7
LOCATION_THRESHOLD = 0.5  # a majority of classes
LEVELS = REGISTRY["hierarchy"].layout.order  # unless the manifest records the levels it ran
STATEMENTS = {claim.id: (claim.section, claim.statement) for spec in REGISTRY.values() for claim in spec.claims}


Measure = Callable[[list[Manifest], "Truth | None"], list[dict[str, Any]]]
MEASURES: dict[str, Measure] = {}  # method name -> what measures the claims it declares


def measures(method: str) -> Callable[[Measure], Measure]:
    """Register the function that measures the claims `method` declares in the registry."""

    def register(measure: Measure) -> Measure:
        MEASURES[method] = measure
        return measure

    return register


@dataclass
class Truth:
    """Planted facts about an image world."""

    styles: dict[str, int] = field(default_factory=dict)  # image file name -> style index
    layouts: dict[str, set[tuple[int, int]]] = field(default_factory=dict)  # class id -> pool5 cells (row, col)


def truth_from_demo(world) -> Truth:
    """The demo world's planted styles and layouts (`generator.demo.DemoWorld`)."""
    return Truth(styles=dict(world.styles), layouts={c: world.layout(c) for c in world.class_ids})


class TruthError(AtlasError, ValueError):
    """A truth.json that cannot be used; the message names the file and the field."""


MAX_TRUTH_BYTES = 64 * 1024 * 1024


def load_truth(path: str | Path) -> Truth | None:
    """Planted truth from a truth.json (the demo world's format: {"styles": {image name: int},
    "layouts": {class id: [[row, col], ...]}}), or None when there is none; TruthError for a
    file that is not one (not JSON, a FIFO, the wrong shape)."""
    path = Path(path)
    try:
        raw = json.loads(safefs.read_regular(path, max_bytes=MAX_TRUTH_BYTES))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TruthError(f"{path.name}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise TruthError(f"{path.name}: not valid JSON: {exc}") from None
    try:
        return _truth_of(raw, _Reader(path.name))
    except ManifestError as exc:
        raise TruthError(str(exc)) from None


def _truth_of(raw: Any, read: _Reader) -> Truth:
    """The Truth of a parsed truth.json, its shape checked (ManifestError naming the field)."""
    raw = read.mapping(raw, "")
    styles = read.mapping(raw.get("styles", {}), "styles")
    layouts = read.mapping(raw.get("layouts", {}), "layouts")
    for name, style in styles.items():
        read.integer(style, f"styles.{name}")
    cells = {}
    for class_id, found in layouts.items():
        pairs = read.items(found, f"layouts.{class_id}")
        if not all(isinstance(cell, list) and len(cell) == 2 and all(bounded_int(v, 0, 4096) is not None for v in cell)
                   for cell in pairs):
            raise read.fail(f"layouts.{class_id}", "expected a list of [row, col] pairs of small integers")
        cells[class_id] = {(cell[0], cell[1]) for cell in pairs}
    return Truth(styles=dict(styles), layouts=cells)


def as_truth(truth: Truth | Mapping[str, int] | None) -> Truth | None:
    """A `Truth`; a plain mapping is read as image name -> style (layouts unknown)."""
    if truth is None or isinstance(truth, Truth):
        return truth
    return Truth(styles=dict(truth))


def read_manifests(output_dir: str | Path) -> list[Manifest]:
    """Every usable class manifest under output_dir/classes, sorted by class id (one the site
    cannot use either is left out: `atlas render` warns about it)."""
    return sorted((m for _, m in class_manifests(Path(output_dir), warn=lambda _: None)), key=lambda m: m.class_.id)


def _claim(id: str, metric: str, per_class: dict[str, float], threshold: float | None,
           value: float | None = None) -> dict[str, Any]:
    """A claim declared in the registry, measured: `value` (default: the mean over classes)
    against `threshold`."""
    section, statement = STATEMENTS[id]
    if value is None and per_class:
        value = mean(per_class.values())
    holds = None if value is None or threshold is None else bool(value > threshold)
    return {"id": id, "section": section, "statement": statement, "metric": metric, "value": value,
            "threshold": threshold, "holds": holds, "per_class": per_class}


def _method(manifest: Manifest, name: str) -> MethodRecord | None:
    return manifest.methods.get(name)


def _number(value: Any) -> float | None:
    """A finite-or-not float from a manifest number (None for anything that is not a number)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# --------------------------------------------------------------------------- 4.1 location

def _with_number(manifests: list[Manifest], name: str, number: str) -> Iterator[tuple[Manifest, MethodRecord, float]]:
    """(manifest, method `name`'s record, its `number`) for each class whose run recorded the number."""
    for manifest in manifests:
        method = _method(manifest, name)
        value = _number(method.numbers.get(number)) if method else None
        if method is not None and value is not None:
            yield manifest, method, value


def window_on_layout(meta: Meta, cells: set[tuple[int, int]]) -> bool:
    """A window lies on the planted parts when at least half of its pool5 cells are parts
    (False for a picture without a usable window)."""
    if not isinstance(meta, Window):
        return False
    return 2 * len(meta.cells() & cells) >= meta.size * meta.size


@measures("location")
def location_claims(manifests: list[Manifest], truth: Truth | None = None) -> list[dict[str, Any]]:
    hits: dict[str, float] = {}
    spread: dict[str, float] = {}
    for manifest, method, heterogeneity in _with_number(manifests, "location", "heterogeneity"):
        class_id = manifest.class_.id
        spread[class_id] = heterogeneity
        strongest = method.numbers.get("strongest")
        if truth is not None and class_id in truth.layouts and isinstance(strongest, list) and strongest:
            best = method.picture(str(strongest[0]))
            if best is not None:
                hits[class_id] = float(window_on_layout(best.meta, truth.layouts[class_id]))
    claims = []
    if truth is not None and truth.layouts:
        claims.append(_claim("location-layout", "fraction of classes whose top-scoring window lies on the planted parts",
                             hits, LOCATION_THRESHOLD))
    else:
        claims.append(_claim("location-layout", "not measurable: needs planted part layouts", {}, LOCATION_THRESHOLD))
    values = list(spread.values())
    claims.append(_claim(
        "location-heterogeneity",
        "per class: mean pairwise fc7 cosine distance between window pictures; value: max - min over classes",
        spread, None, value=(max(values) - min(values)) if values else None))
    return claims


# --------------------------------------------------------------------------- 4.2 topics

@measures("topics")
def topic_claims(manifests: list[Manifest], truth: Truth | None = None) -> list[dict[str, Any]]:
    nmi: dict[str, float] = {}
    distinct: dict[str, float] = {}
    matched: dict[str, float] = {}
    for manifest, method, distinctness in _with_number(manifests, "topics", "distinctness"):
        class_id, numbers = manifest.class_.id, method.numbers
        distinct[class_id] = distinctness
        if _number(numbers.get("picture_match")) is not None:
            matched[class_id] = float(numbers["picture_match"])
        if truth is None:
            continue
        assigned = numbers.get("assignments")
        assigned = assigned if isinstance(assigned, list) else []
        names = [image.name for image in manifest.images][: len(assigned)]
        labelled = [(truth.styles[n], a) for n, a in zip(names, assigned) if n in truth.styles and isinstance(a, int)]
        if len(labelled) >= 2:
            from sklearn.metrics import normalized_mutual_info_score  # only with planted truth: ~2-4 s to import

            nmi[class_id] = float(normalized_mutual_info_score([s for s, _ in labelled], [a for _, a in labelled]))
    claims = []
    if truth is not None and truth.styles:
        claims.append(_claim("topics-styles", "NMI between each image's strongest topic and its planted style, mean over classes",
                             nmi, NMI_THRESHOLD))
    else:
        claims.append(_claim("topics-styles", "not measurable: needs planted styles", {}, NMI_THRESHOLD))
    claims.append(_claim(
        "topics-distinct",
        "mean pairwise Jaccard distance between a class's topic masks m7 (0: identical, 1: disjoint)",
        distinct, None))
    claims.append(_claim(
        "topics-pictures",
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


@measures("ensemble")
def ensemble_claims(manifests: list[Manifest], truth: Truth | None = None) -> list[dict[str, Any]]:
    """Sec. 4.3: per class, mean distance across masks / across inits (generator.methods.ensemble);
    over classes, the geometric mean of those ratios (why: that module's docstring)."""
    claims = []
    seeded = any("favourites" in m.numbers for manifest in manifests if (m := _method(manifest, "ensemble")))
    caveat = ("; each member started from its favourite images' blurred mean, so its inits differ only by their "
              "noise: this mostly measures how far apart the members' starts are (ensemble-favourites says whether "
              "a member's favourites are a taste)") if seeded else ""
    for space, label in (("fc7", "fc7 cosine distance (unmasked net)"), ("pixel", "RMS pixel difference")):
        ratios: dict[str, float] = {}
        for manifest in manifests:
            method = _method(manifest, "ensemble")
            numbers = method.numbers if method else {}
            masks, inits = finite(numbers.get(f"{space}_across_masks")), finite(numbers.get(f"{space}_across_inits"))
            if masks is not None and masks >= 0 and inits and inits > 0:  # no ratio when the inits gave identical pictures
                ratios[manifest.class_.id] = masks / inits
        claims.append(_claim(
            f"ensemble-{space}",
            f"{label}: mean across masks / mean across inits per class; geometric mean over classes{caveat}",
            ratios, 1.0, value=geometric_mean(list(ratios.values()))))
    beaten: dict[str, float] = {}
    members = 0
    purity: dict[str, float] = {}
    for manifest in manifests:
        method = _method(manifest, "ensemble")
        numbers = method.numbers if method else {}
        if (value := finite(numbers.get("favourites_beat_random"))) is not None:
            beaten[manifest.class_.id] = value
            members += len(numbers["favourites"]) if isinstance(numbers.get("favourites"), list) else 1
        favourites = numbers.get("favourites")
        if truth is not None and isinstance(favourites, list) and favourites:
            styles = [truth.styles.get(image.name) for image in manifest.images]
            gain = style_purity_gain(styles, favourites)
            if gain is not None:
                purity[manifest.class_.id] = gain
    # Under chance a member's share is uniform on [0, 1] (sd 1 / sqrt(12)): the claim needs the mean
    # over all members two standard errors above 0.5, so a few lucky members cannot make it hold.
    threshold = 0.5 + 2 / math.sqrt(12 * members) if members else 0.5
    claims.append(_claim(
        "ensemble-favourites",
        "share of 1000 random sets of as many class images that are less alike in fc7 (mean pairwise cosine "
        f"distance) than a member's favourite images; mean over classes (chance 0.5; holds above {threshold:.2f}, "
        f"two standard errors over {members} members)",
        beaten, threshold))
    if truth is not None and truth.styles:
        claims.append(_claim(
            "ensemble-favourite-styles",
            "share of a member's favourite images in their most common planted style, minus the same for random "
            "subsets of the class's images; mean over members and classes (> 0: members favour a style)",
            purity, 0.0))
    else:
        claims.append(_claim("ensemble-favourite-styles", "not measurable: needs planted styles", {}, 0.0))
    return claims


def majority_share(styles: list[int]) -> float:
    """Share of the most common entry."""
    return max(styles.count(s) for s in set(styles)) / len(styles)


def style_purity_gain(styles: list[int | None], favourites: list[Any]) -> float | None:
    """Mean majority share of planted styles among each member's favourites, minus its expectation
    for random subsets of the same size (sampled with a fixed seed: a claim reads the same twice)."""
    import random

    known = [s for s in styles if s is not None]
    groups = [[styles[i] for i in f if isinstance(i, int) and 0 <= i < len(styles) and styles[i] is not None]
              for f in favourites if isinstance(f, list)]
    groups = [g for g in groups if len(g) >= 2]
    if not groups or len(known) < 2:
        return None
    rng = random.Random(0)
    chance = mean(majority_share(rng.sample(known, len(g))) for g in groups for _ in range(200))
    return mean(majority_share(g) for g in groups) - chance  # type: ignore[arg-type]


# --------------------------------------------------------------------------- 4.4 hierarchy

def smallest_drop(errors: Mapping[str, float]) -> float:
    """min(err[m7] - err[m6-7], err[m6-7] - err[m5-7]): positive iff the error falls at each step
    (over the levels the net has: m7 -> m5-7 alone for a net without fc6)."""
    present = [lv for lv in LEVELS if lv in errors]
    return min((errors[a] - errors[b] for a, b in zip(present, present[1:])), default=math.nan)


def _levels(manifest: Manifest) -> tuple[str, ...]:
    """The code levels the hierarchy ran for this class, as it recorded them."""
    method = _method(manifest, "hierarchy")
    recorded = method.numbers.get("levels") if method else None
    return tuple(map(str, recorded)) if isinstance(recorded, list) and recorded else LEVELS


@measures("hierarchy")
def hierarchy_claims(manifests: list[Manifest], truth: Truth | None = None) -> list[dict[str, Any]]:
    """The class-averaged error must fall at every step, over the levels every class has."""
    claims = []
    for space, label in (("pixel", "||I0 - I|| / ||I0||"), ("fc7", "fc7 cosine distance 1 - cos(fc7(I0), fc7(I))")):
        per_class: dict[str, dict[str, float]] = {}
        for manifest in manifests:
            method = _method(manifest, "hierarchy")
            if method is None:
                continue
            found = {lv: _number(method.numbers.get(f"{space}_{lv}")) for lv in LEVELS}
            errors = {lv: e for lv, e in found.items() if e is not None}
            if LEVELS[0] in errors and LEVELS[-1] in errors:
                per_class[manifest.class_.id] = errors
        averaged = {lv: mean(e[lv] for e in per_class.values()) for lv in LEVELS
                    if all(lv in e for e in per_class.values())} if per_class else None
        claims.append(_claim(
            f"hierarchy-{space}",
            f"smallest fall of the class-averaged error {label} along {{code_path}} (> 0: falls at every step)",
            {c: smallest_drop(e) for c, e in per_class.items()}, 0.0,
            value=smallest_drop(averaged) if averaged else None))
    claims.append(hierarchy_specific_claim(manifests))
    return claims


def hierarchy_specific_claim(manifests: list[Manifest]) -> dict[str, Any]:
    """The control for hierarchy-pixel: a picture that only got calmer comes closer to *every*
    class image. Per class, error to I0 / mean error to the class's other images, at m7 minus
    at m5-7 (> 0: fixing the whole code brings the picture closer to its own image than to the
    others). Over classes: the ratio of the class-averaged errors."""
    errors: dict[str, dict[str, float]] = {}
    for manifest in manifests:
        method = _method(manifest, "hierarchy")
        levels = _levels(manifest)
        first, last = levels[0], levels[-1]
        keys = {f"{kind}_{end}": f"{kind}_{lv}" for kind in ("pixel", "pixel_others")
                for end, lv in (("first", first), ("last", last))}
        if method is not None and all(_number(method.numbers.get(k)) is not None for k in keys.values()):
            errors[manifest.class_.id] = {name: float(method.numbers[k]) for name, k in keys.items()}

    def gain(e: Mapping[str, float]) -> float:
        return e["pixel_first"] / e["pixel_others_first"] - e["pixel_last"] / e["pixel_others_last"]

    averaged = {k: mean(e[k] for e in errors.values()) for k in next(iter(errors.values()))} if errors else None
    return _claim(
        "hierarchy-specific",
        "(error to I0 / error to the class's other images) at m7 minus at m5-7 (> 0: relatively closer to I0)",
        {c: gain(e) for c, e in errors.items()}, 0.0, value=gain(averaged) if averaged else None)


# --------------------------------------------------------------------------- 3 patch prior

@measures("classviz")
def prior_claims(manifests: list[Manifest], truth: Truth | None = None) -> list[dict[str, Any]]:
    """Sec. 3: the patch prior brings the class visualization's colours closer to real images."""
    ratios, probs = {}, {}
    for manifest in manifests:
        method = _method(manifest, "classviz")
        numbers = method.numbers if method else {}
        prior, baseline = _number(numbers.get("prior_colour_distance")), _number(numbers.get("baseline_colour_distance"))
        if prior is not None and baseline:
            ratios[manifest.class_.id] = prior / baseline
            probs[manifest.class_.id] = _number(numbers.get("prior_prob")) or 0.0
    colour = _claim("prior-colour",
                    "colour distance to the class's images, prior / baseline (below 1: closer)", ratios, None)
    if colour["value"] is not None:
        colour["threshold"] = 1.0
        colour["holds"] = bool(colour["value"] < 1.0)
    prob = _claim("prior-prob", "softmax probability of the class with the patch prior", probs, 0.9)
    return [colour, prob]


# --------------------------------------------------------------------------- all

def claims_from_manifests(output_dir: str | Path, truth: Truth | Mapping[str, int] | None = None) -> dict[str, Any]:
    """The four claims (plus truth-free proxies) measured from output_dir's manifests."""
    return claims_of(read_manifests(output_dir), truth)


def claims_of(manifests: list[Manifest], truth: Truth | Mapping[str, int] | None = None) -> dict[str, Any]:
    """The claims measured from these manifests (any order)."""
    truth = as_truth(truth)
    manifests = sorted(manifests, key=lambda m: m.class_.id)
    models = sorted({str(m.model.get("name")) for m in manifests})
    counts = [len(m.images) for m in manifests]
    per_class = (f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}") if counts else ""
    images = f"{sum(counts)} images, {per_class} per class" if counts else "no images"
    keys = {words_key(m.model) for m in manifests}  # the statements name the levels the net has
    words = keys.pop() if len(keys) == 1 else all(has_fc6(m.model) for m in manifests)
    claims = [claim for spec in METHODS if spec.claims for claim in MEASURES[spec.name](manifests, truth)]
    return {
        "model": ", ".join(models),
        "images": images,
        "classes": len(manifests),
        "claims": [{**c, "statement": in_words(c["statement"], words), "metric": in_words(c["metric"], words)}
                   for c in claims],
    }


def inversion_table(output_dir: str | Path) -> dict[str, Any]:
    """The paper's Table 1 for the atlas's own model: pool5 inversion errors of every inverted
    class image, per variant (mean and std over images), from the inversion pictures' numbers."""
    return inversion_table_of(read_manifests(output_dir))


def inversion_table_of(manifests: list[Manifest]) -> dict[str, Any]:
    """inversion_table from manifests; variants in the registry's order, named by its titles."""
    layout = REGISTRY["inversion"].layout
    errors: dict[str, list[tuple[float, float]]] = {v: [] for v in layout.order}
    for manifest in manifests:
        method = _method(manifest, "inversion")
        for picture in method.pictures if method else []:
            variant = picture.meta.step if isinstance(picture.meta, Step) else None
            numbers = picture.numbers
            image_error = _number(numbers.get("image_error"))
            if isinstance(variant, str) and variant in errors and image_error is not None:
                errors[variant].append((image_error, _number(numbers.get("feature_error")) or float("nan")))
    rows = []
    for variant, pairs in errors.items():
        if pairs:
            image = [p[0] for p in pairs]
            rows.append({"variant": layout.titles.get(variant, variant), "n": len(pairs),
                         "image_error_mean": mean(image), "image_error_std": pstdev(image),
                         "feature_error_mean": mean(p[1] for p in pairs)})
    return {"rows": rows}


def write_claims(output_dir: str | Path, truth: Truth | Mapping[str, int] | None = None) -> Path:
    """Measure the claims and write output_dir/claims.json atomically; returns its path."""
    from generator.store import write_json

    path = Path(output_dir) / "claims.json"
    write_json(claims_from_manifests(output_dir, truth), path)
    return path
