"""Pictures another network recognizes: the judge (benchmarks/judge.py) reads a built atlas.

    python -m benchmarks.transfer ATLAS_FOLDER [ATLAS_FOLDER ...] [--json NAME]

Reads only the atlas folder (classes/*/manifest.json, the pictures and the class images'
thumbnails) and prints, for each kind of picture: n, the judge's top-1 among the atlas's
classes and its top-5 among all 1000 (classes whose id is not an ImageNet wnid are left out).
Then two style metrics in the judge's 768-d pooled-feature space, vectors centred on the mean
of the class's own images:
- topics: fraction of topic pictures nearest (cosine) the mean of their own topic's retrieved
  images, beside the real-photo reference (each retrieved photo against the mean of the other
  retrieved photos of its topic and the means of the other topics). Chance is 1/K.
- ensemble: mean distance between pictures from different masks (same init) over that between
  pictures from different inits (same mask), in the judge's space (cosine) and in low-passed
  pixels (RMS of 8x8-block means); > 1 means the masks, not the inits, make the variety.
Naturalness: per kind of picture, the kernel inception distance (KID, unbiased; Binkowski et al.
2018) between the pictures and the photos of their classes in the judge's pooled features, beside
its floor, the class photos against other photos of the same classes (each class's even- against
its odd-numbered photos).
Also the classviz colour ratio (prior / baseline colour distance to the class photos) the
build measured, and the scale to read it on: the same distances measured on the thumbnails, beside
each class photo's distance to the class's other photos (a real photo's own distance: a picture
nearer than that has the class's colours as closely as a photo of it does). Needs the `judge`
extra (ai-edge-litert).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from benchmarks import judge as judge_module
from benchmarks.common import load_image
from generator.manifest import Manifest, ManifestError, PictureRecord
from generator.methods import method_defaults
from generator.methods.common import coarse_mean, cosine_distances, mean_pairwise
from generator.methods.metrics import colour_distance, colour_distance_per_photo
from generator.records import Cell, Step, Topic

LOW_PASS = 8  # block size (px) of the low-passed pixels for the ensemble metric


@dataclass
class Picture:
    cls: str  # the class id (wnid)
    file: Path
    picture: PictureRecord  # the manifest's picture entry


@dataclass
class ClassAtlas:
    id: str
    folder: Path
    manifest: Manifest
    kinds: dict[str, list[Picture]] = field(default_factory=lambda: defaultdict(list))

    def image_file(self, index: int) -> Path:
        return self.folder / self.manifest.images[index].thumb


def kind_of(method: str, picture: PictureRecord) -> str | None:
    """The table row a picture belongs to (None: not a synthetic picture we judge)."""
    step = picture.meta.step if isinstance(picture.meta, Step) else None
    if method == "inversion" and step is not None:
        return "photos (inversion originals)" if step == "original" else f"inversion {step}"
    if method == "classviz":
        return f"classviz {picture.key}"
    if method == "hierarchy" and step is not None:
        return None if step == "input" else f"hierarchy {step}"
    if method in ("topics", "ensemble", "location"):
        return {"topics": "topic pictures", "ensemble": "ensemble samples", "location": "location grid"}[method]
    if method in ("preimages", "caricatures") and step is not None:
        return None if step == "original" else f"{method} {step}"
    return None  # saliency maps, neighbour queries (class photos), the fc7 map: not synthetic pictures


ORDER = ("photos", "classviz baseline", "classviz prior", "topic", "ensemble", "location", "hierarchy", "inversion")


def load_atlas(folder: Path) -> list[ClassAtlas]:
    manifests = sorted((folder / "classes").glob("*/manifest.json"))
    if not manifests:
        sys.exit(f"error: no class manifests under {folder / 'classes'} (is it a built atlas folder?)")
    classes = []
    for path in manifests:
        try:
            manifest = Manifest.read(path)
        except ManifestError as error:
            sys.exit(f"error: {error}")
        entry = ClassAtlas(id=manifest.class_.id, folder=path.parent, manifest=manifest)
        for method, record in manifest.methods.items():
            for picture in record.pictures:
                kind = kind_of(method, picture)
                if kind:
                    entry.kinds[kind].append(Picture(entry.id, path.parent / picture.file, picture))
        classes.append(entry)
    return classes


def sort_key(kind: str) -> tuple[int, str]:
    return next((i for i, prefix in enumerate(ORDER) if kind.startswith(prefix)), len(ORDER)), kind


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


class Reader:
    """The judge with a cache per file (a picture is read once however many metrics use it)."""

    def __init__(self, judge: judge_module.Judge) -> None:
        self.judge = judge
        self.cache: dict[Path, tuple[np.ndarray, np.ndarray]] = {}

    def read(self, files: list[Path]) -> judge_module.Reading:
        missing = [f for f in dict.fromkeys(files) if f not in self.cache]
        if missing:
            reading = self.judge.read([open_rgb(f) for f in missing])
            for i, f in enumerate(missing):
                self.cache[f] = (reading.logits[i], reading.features[i])
        return judge_module.Reading(
            logits=np.stack([self.cache[f][0] for f in files]) if files else np.zeros((0, 1000)),
            features=np.stack([self.cache[f][1] for f in files]) if files else np.zeros((0, 768)),
        )


def recognition(classes: list[ClassAtlas], reader: Reader, among: list[str] | None = None) -> list[dict[str, Any]]:
    """Per kind: n, top-1 among the atlas's classes (or the wnids `among`), top-5 among the 1000."""
    index = judge_module.wnid_indices()
    known = [c for c in classes if c.id in index]
    left_out = [c.id for c in classes if c.id not in index]
    if left_out:
        print(f"left out (not ImageNet wnids, the judge cannot name them): {', '.join(left_out)}")
    candidates = [index[w] for w in among] if among else [index[c.id] for c in known]
    rows = []
    for kind in sorted({k for c in known for k in c.kinds}, key=sort_key):
        pictures = [p for c in known for p in c.kinds.get(kind, [])]
        reading = reader.read([p.file for p in pictures])
        truth = np.array([index[p.cls] for p in pictures])
        rows.append({
            "kind": kind,
            "n": len(pictures),
            "top1_among_classes": float((reading.top1_among(candidates) == truth).mean()),
            "top5_among_1000": float((reading.top(5) == truth[:, None]).any(1).mean()),
        })
    return rows


def cosine_nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    p = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    c = centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    return np.argmax(p @ c.T, axis=1)


BLURS = (2, 4)  # Gaussian radii (px of the 224 px thumbnails) of the blurred top photos' spread


def blurred(path: Path, radius: float) -> Image.Image:
    return open_rgb(path).filter(ImageFilter.GaussianBlur(radius))


def facet_start(files: list[Path], side: int) -> Image.Image:
    """A topic's facet start as the method makes it (methods.common.coarse_mean), without its noise."""
    start = coarse_mean(torch.stack([load_image(f) for f in files]), side, 0.0, seed=0)
    return Image.fromarray((start.permute(1, 2, 0) * 255).round().byte().numpy())


def spread(features: np.ndarray) -> float:
    """Mean pairwise cosine distance between rows: how different a class's topic pictures are
    from each other (0: the same picture K times)."""
    return mean_pairwise(cosine_distances(torch.from_numpy(features)))


def topic_metric(classes: list[ClassAtlas], reader: Reader) -> dict[str, Any] | None:
    """Fraction of topic pictures nearest their own topic's retrieved-image mean, and the
    leave-one-out real-photo reference, in the judge's pooled space centred on the class mean;
    and how far apart a class's topic pictures are (their spread), beside the spread of each
    topic's top-loading photo."""
    hits, reference_hits, chance, spreads, photo_spreads, mean_spreads, start_spreads = [], [], [], [], [], [], []
    blurred_spreads: dict[int, list[float]] = {radius: [] for radius in BLURS}
    for c in classes:
        topics = sorted(((p.picture.meta, p) for p in c.kinds.get("topic pictures", [])
                         if isinstance(p.picture.meta, Topic) and p.picture.meta.retrieved), key=lambda t: t[0].topic)
        pictures = [p for _, p in topics]
        if len(pictures) < 2:
            continue
        centre = reader.read([c.image_file(i) for i in range(len(c.manifest.images))]).features.mean(0)
        retrieved = [[r.image for r in topic.retrieved] for topic, _ in topics]
        topic_features = [reader.read([c.image_file(i) for i in shown]).features - centre for shown in retrieved]
        means = np.stack([f.mean(0) for f in topic_features])
        picture_features = reader.read([p.file for p in pictures]).features - centre
        hits += list(cosine_nearest(picture_features, means) == np.arange(len(pictures)))
        spreads.append(spread(picture_features))
        photo_spreads.append(spread(np.stack([f[0] for f in topic_features])))
        mean_spreads.append(spread(means))
        # how far the measure falls for the same photos, blurred: what a picture's softness alone costs
        tops = [c.image_file(shown[0]) for shown in retrieved]
        for radius in BLURS:
            blurred_spreads[radius].append(spread(reader.judge.read([blurred(f, radius) for f in tops]).features - centre))
        # what the starts alone give: each topic's facet start (its params), read as a picture
        params = {**method_defaults("topics"), **c.manifest.methods["topics"].params}  # an older manifest: the defaults
        if params["init"] == "facet":
            count = params["facet_images"] or len(retrieved[0])
            starts = [facet_start([c.image_file(i) for i in shown[:count]], int(params["facet_side"])) for shown in retrieved]
            start_spreads.append(spread(reader.judge.read(starts).features - centre))
        for k, features in enumerate(topic_features):
            for j in range(len(features)):
                others = np.delete(features, j, axis=0)
                if len(others) == 0:
                    continue
                loo = means.copy()
                loo[k] = others.mean(0)
                reference_hits.append(cosine_nearest(features[j : j + 1], loo)[0] == k)
        chance.append(1 / len(pictures))
    if not hits:
        return None
    return {
        "pictures_nearest_own_topic": float(np.mean(hits)),
        "n": len(hits),
        "real_photos_reference": float(np.mean(reference_hits)),
        "chance": float(np.mean(chance)),
        "pictures_spread": float(np.mean(spreads)),
        "top_photos_spread": float(np.mean(photo_spreads)),
        # a picture stands for its topic, not one photo: the spread of the topics' mean photos beside it
        "topic_means_spread": float(np.mean(mean_spreads)),
        # the top photos' spread after a Gaussian blur of this radius (px): the measure reads softness
        "blurred_top_photos_spread": {str(radius): float(np.mean(v)) for radius, v in blurred_spreads.items()},
        # the spread of the pictures' own starts (None: they start from noise): what the net added is the rest
        "facet_starts_spread": float(np.mean(start_spreads)) if start_spreads else None,
    }


def kid(x: np.ndarray, y: np.ndarray) -> float | None:
    """Unbiased kernel inception distance (Binkowski et al. 2018): MMD^2 between the rows of x and
    y with the cubic polynomial kernel k(a, b) = (a.b / d + 1)^3, the diagonal left out of the
    within-set means, so a set against another sample of its own distribution is 0 in expectation
    (and may fall below it) at any size. None with fewer than 2 rows on a side."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        return None
    x, y = x.astype(np.float64), y.astype(np.float64)
    d = x.shape[1]
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def naturalness(classes: list[ClassAtlas], reader: Reader) -> dict[str, Any] | None:
    """KID of each kind of picture to the photos of the classes that have it, and the floor:
    photos against other photos of the same classes (even- vs odd-numbered)."""
    photos = {c.id: reader.read([c.image_file(i) for i in range(len(c.manifest.images))]).features for c in classes}
    floor = kid(np.concatenate([f[0::2] for f in photos.values()]), np.concatenate([f[1::2] for f in photos.values()]))
    if floor is None:
        return None
    kinds: dict[str, float | None] = {}
    for kind in sorted({k for c in classes for k in c.kinds if not k.startswith("photos")}, key=sort_key):
        having = [c for c in classes if c.kinds.get(kind)]
        pictures = reader.read([p.file for c in having for p in c.kinds[kind]]).features
        kinds[kind] = kid(pictures, np.concatenate([photos[c.id] for c in having]))
    return {"photos_floor": floor, "kinds": kinds}


def low_passed(path: Path, block: int = LOW_PASS) -> np.ndarray:
    array = np.asarray(open_rgb(path), dtype=np.float32) / 255
    h, w = (array.shape[0] // block) * block, (array.shape[1] // block) * block
    return array[:h, :w].reshape(h // block, block, w // block, block, 3).mean((1, 3)).ravel()


def ensemble_metric(classes: list[ClassAtlas], reader: Reader) -> dict[str, Any] | None:
    """Across-masks / across-inits mean distance, per class, in the judge's space and low-passed pixels."""
    spaces: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "judge": lambda a, b: 1 - float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)),
        "lowpass_pixels": lambda a, b: float(np.sqrt(np.mean((a - b) ** 2))),
    }
    ratios: dict[str, list[float]] = {s: [] for s in spaces}
    for c in classes:
        pictures = [p for p in c.kinds.get("ensemble samples", []) if isinstance(p.picture.meta, Cell)]
        if len(pictures) < 3:
            continue
        cells = [(p.picture.meta.row, p.picture.meta.column) for p in pictures if isinstance(p.picture.meta, Cell)]
        pairs = list(combinations(range(len(pictures)), 2))
        across_masks = [(a, b) for a, b in pairs if cells[a][1] == cells[b][1] and cells[a][0] != cells[b][0]]
        across_inits = [(a, b) for a, b in pairs if cells[a][0] == cells[b][0] and cells[a][1] != cells[b][1]]
        if not across_masks or not across_inits:
            continue
        vectors = {
            "judge": reader.read([p.file for p in pictures]).features,
            "lowpass_pixels": np.stack([low_passed(p.file) for p in pictures]),
        }
        for space, distance in spaces.items():
            v = vectors[space]
            masks = float(np.mean([distance(v[a], v[b]) for a, b in across_masks]))
            inits = float(np.mean([distance(v[a], v[b]) for a, b in across_inits]))
            ratios[space].append(masks / max(inits, 1e-12))
    if not ratios["judge"]:
        return None
    return {
        "classes": len(ratios["judge"]),
        **{f"{s}_ratio_mean": float(np.mean(r)) for s, r in ratios.items()},
        **{f"{s}_classes_masks_differ_more": float(np.mean(np.array(r) > 1)) for s, r in ratios.items()},
    }


def colour_ratio(classes: list[ClassAtlas]) -> dict[str, Any] | None:
    """Mean over classes of the colour distances the classviz method recorded (prior / baseline)."""
    numbers = [c.manifest.methods["classviz"].numbers for c in classes if "classviz" in c.manifest.methods]
    base = [n["baseline_colour_distance"] for n in numbers if "baseline_colour_distance" in n]
    prior = [n["prior_colour_distance"] for n in numbers if "prior_colour_distance" in n]
    if not base or not prior:
        return None
    result = {"baseline": float(np.mean(base)), "prior": float(np.mean(prior)), "ratio": float(np.mean(prior) / np.mean(base))}
    per_photo = [(n["prior_colour_distance_per_photo"], n["baseline_colour_distance_per_photo"])
                 for n in numbers if "prior_colour_distance_per_photo" in n]
    if per_photo:
        p, b = np.mean(per_photo, axis=0)
        result.update(per_photo_prior=float(p), per_photo_baseline=float(b), per_photo_ratio=float(p / b))
    return result


def photo_colour(classes: list[ClassAtlas]) -> dict[str, float] | None:
    """Colour distances at the thumbnails' size, mean over classes: the classviz baseline and prior
    pictures to all the class photos, and each photo to the class's *other* photos (leave one out),
    pooled and per photo (as generator.methods.metrics measures them)."""
    rows = []
    for c in classes:
        pictures = {p.picture.key: p for p in c.kinds.get("classviz baseline", []) + c.kinds.get("classviz prior", [])}
        if "baseline" not in pictures or "prior" not in pictures or len(c.manifest.images) < 3:
            continue
        with Image.open(c.image_file(0)) as first:
            size = first.width
        photos = torch.stack([load_image(c.image_file(i), size) for i in range(len(c.manifest.images))])
        others = [torch.cat([photos[:i], photos[i + 1:]]) for i in range(len(photos))]
        row = {f"{key}_{measure}": fn(load_image(pictures[key].file, size), photos)
               for key in ("baseline", "prior")
               for measure, fn in (("pooled", colour_distance), ("per_photo", colour_distance_per_photo))}
        row["photo_pooled"] = float(np.mean([colour_distance(photo, rest) for photo, rest in zip(photos, others)]))
        row["photo_per_photo"] = float(np.mean([colour_distance_per_photo(photo, rest) for photo, rest in zip(photos, others)]))
        rows.append(row)
    if not rows:
        return None
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]} | {"classes": len(rows)}


def measure(folder: Path, judge: judge_module.Judge | None = None, among: list[str] | None = None) -> dict[str, Any]:
    """Everything the table prints, as a dict (top-1 among the atlas's classes, or the wnids `among`)."""
    classes = load_atlas(folder)
    reader = Reader(judge or judge_module.Judge.load())
    return {
        "atlas": str(folder),
        "classes": len(classes),
        "recognition": recognition(classes, reader, among),
        "topics": topic_metric(classes, reader),
        "ensemble": ensemble_metric(classes, reader),
        "colour": colour_ratio(classes),
        "photo_colour": photo_colour(classes),
        "kid": naturalness(classes, reader),
    }


def report(result: dict[str, Any]) -> None:
    print(f"atlas {result['atlas']}: {result['classes']} classes")
    print(f"{'pictures':<32} {'n':>4}  {'top-1 among classes':>19}  {'top-5 among 1000':>16}")
    for row in result["recognition"]:
        print(f"{row['kind']:<32} {row['n']:>4}  {row['top1_among_classes']:>19.2f}  {row['top5_among_1000']:>16.2f}")
    if result["topics"]:
        t = result["topics"]
        print(f"topics: {t['pictures_nearest_own_topic']:.2f} of {t['n']} topic pictures nearest their own topic's "
              f"retrieved images (judge pool, class-centred); real photos {t['real_photos_reference']:.2f}; "
              f"chance {t['chance']:.2f}")
        print(f"  a class's topic pictures differ by {t['pictures_spread']:.2f} (mean pairwise cosine distance, same "
              f"space); each topic's top photo by {t['top_photos_spread']:.2f}, the means of the topics' retrieved "
              f"photos by {t.get('topic_means_spread', float('nan')):.2f}")
        if t.get("facet_starts_spread") is not None:
            print(f"  their facet starts alone (no noise) by {t['facet_starts_spread']:.2f}")
        for radius, value in t.get("blurred_top_photos_spread", {}).items():
            print(f"  the top photos blurred (Gaussian, radius {radius} px): {value:.2f}")
    if result.get("kid"):
        k = result["kid"]
        print(f"KID to the class photos (judge pool; photos vs other photos of their classes: {k['photos_floor']:.4f})")
        for kind, value in k["kinds"].items():
            print(f"  {kind:<30} {'-' if value is None else f'{value:.4f}'}")
    if result["ensemble"]:
        e = result["ensemble"]
        print(f"ensemble ({e['classes']} classes): across masks / across inits = {e['judge_ratio_mean']:.2f} in the "
              f"judge's space ({e['judge_classes_masks_differ_more']:.0%} of classes > 1), "
              f"{e['lowpass_pixels_ratio_mean']:.2f} in low-passed pixels "
              f"({e['lowpass_pixels_classes_masks_differ_more']:.0%} > 1)")
    if result["colour"]:
        c = result["colour"]
        print(f"classviz colour distance to the class photos: prior {c['prior']:.3f} / baseline {c['baseline']:.3f} "
              f"= {c['ratio']:.2f}x (target <= 0.7x)")
        if "per_photo_ratio" in c:
            print(f"  the same to a typical single photo (median over the photos): prior {c['per_photo_prior']:.3f} / "
                  f"baseline {c['per_photo_baseline']:.3f} = {c['per_photo_ratio']:.2f}x")
    if result.get("photo_colour"):
        c = result["photo_colour"]
        for measure, what in (("pooled", "to all the class photos"), ("per_photo", "to a typical single photo")):
            base = c[f"baseline_{measure}"]
            print(f"  thumbnails, {what}: baseline {base:.3f}, prior {c[f'prior_{measure}']:.3f} "
                  f"({c[f'prior_{measure}'] / base:.2f}x); a class photo to the other photos {c[f'photo_{measure}']:.3f} "
                  f"({c[f'photo_{measure}'] / base:.2f}x the baseline's)")


def compare(results: list[dict[str, Any]]) -> list[str]:
    """Several atlases side by side (e.g. the same classes on two networks): one row per kind of
    picture, "top-1 / top-5 (n)" per atlas, "-" where an atlas has no such pictures."""
    names = [Path(r["atlas"]).name for r in results]
    cells = [{row["kind"]: f"{row['top1_among_classes']:.2f} / {row['top5_among_1000']:.2f} ({row['n']})"
              for row in r["recognition"]} for r in results]
    kinds = sorted({kind for found in cells for kind in found}, key=sort_key)
    width = max(20, *(len(name) for name in names))
    lines = [f"{'top-1 among classes / top-5 among 1000 (n)':<44}" + "".join(f"{n:>{width + 2}}" for n in names)]
    lines += [f"{kind:<44}" + "".join(f"{found.get(kind, '-'):>{width + 2}}" for found in cells) for kind in kinds]
    lines += [f"{title:<44}" + "".join(f"{cell(r):>{width + 2}}" for r in results) for title, cell in SIDE_BY_SIDE]
    for kind in kinds:
        lines.append(f"{'KID ' + kind:<44}" + "".join(
            f"{_number((r.get('kid') or {}).get('kinds', {}).get(kind)):>{width + 2}}" for r in results))
    return lines


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _topics(field: str, key: str | None = None) -> Callable[[dict[str, Any]], str]:
    """A topics number of a result (`key`: an entry of a mapping field), "-" where absent."""
    def cell(r: dict[str, Any]) -> str:
        value = (r.get("topics") or {}).get(field)
        return _number(value.get(key) if key is not None and isinstance(value, dict) else value, 2)
    return cell


SIDE_BY_SIDE: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("topic pictures' spread", _topics("pictures_spread")),
    ("topics' top photos' spread", _topics("top_photos_spread")),
    ("topics' mean photos' spread", _topics("topic_means_spread")),
    *((f"top photos' spread, blurred {radius} px", _topics("blurred_top_photos_spread", str(radius))) for radius in BLURS),
    ("the pictures' facet starts' spread", _topics("facet_starts_spread")),
    ("topic pictures nearest own topic", _topics("pictures_nearest_own_topic")),
    ("real photos nearest own topic", _topics("real_photos_reference")),
    ("KID floor: photos vs other photos", lambda r: _number((r.get("kid") or {}).get("photos_floor"))),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("atlas", type=Path, nargs="+",
                        help="built atlas folders (with classes/*/manifest.json); several: also side by side")
    parser.add_argument("--json", default=None, help="also write benchmarks/out/<NAME>.json")
    args = parser.parse_args()
    why = judge_module.available()
    if why:
        sys.exit(f"error: {why}")
    judge = judge_module.Judge.load()
    results = [measure(folder, judge) for folder in args.atlas]
    for result in results:
        report(result)
        print()
    if len(results) > 1:
        print("\n".join(compare(results)))
    if args.json:
        out = Path(__file__).resolve().parent / "out" / f"{args.json}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results[0] if len(results) == 1 else results, indent=2, sort_keys=True) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
