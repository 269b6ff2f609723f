"""A fake but schema-exact atlas output folder, for testing the site without running a build.

It writes what `generator.build` writes (ARCHITECTURE.md "Build and site"): per class a
`manifest.json`, one PNG per picture (+ a JPEG thumbnail), JPEG thumbnails of the class's own
images (the site measures claims.json and inversion.json from them). The pictures are small procedural
PIL drawings, so the site can be rendered and checked in a browser in seconds. Some classes
deliberately stress the renderer: a hostile name, a disabled method, an unknown method, a
picture without a thumbnail.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from generator.manifest import ClassRecord, ImageRecord, Manifest, MethodRecord, PictureRecord
from generator.records import Cell, Meta, Query, Step, Topic, Window, refs

HOSTILE_NAME = "<script>alert(1)</script>"

CLASS_NAMES = [
    "tench", "English springer", "cassette player", "chain saw", "church",
    "French horn", "garbage truck", "gas pump", "golf ball", "parachute",
]


def fake_picture(path: Path, size: int, seed: int) -> None:
    """A smooth gradient with a few ellipses: cheap to make, small as PNG, clearly an image."""
    rng = random.Random(seed)
    base = [rng.randrange(40, 220) for _ in range(3)]
    gradient = Image.linear_gradient("L").resize((size, size))
    image = Image.merge("RGB", [gradient.point(lambda v, b=b: (b + v // 3) % 256) for b in base])
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.randrange(size), rng.randrange(size)
        r = rng.randrange(size // 10 + 1, size // 3 + 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _thumb(src: Path, dst: Path, size: int) -> None:
    with Image.open(src) as image:
        image.convert("RGB").resize((size, size)).save(dst, quality=80)


class _ClassWriter:
    """Writes one class's pictures and collects its manifest entries."""

    def __init__(self, folder: Path, size: int, thumb: int, seed: int):
        self.folder, self.size, self.thumb, self.seed = folder, size, thumb, seed

    def picture(self, method: str, key: str, caption: str, numbers: dict | None = None,
                meta: Meta | None = None, with_thumb: bool = True) -> PictureRecord:
        file = f"{method}/{key}.png"
        self.seed += 1
        fake_picture(self.folder / file, self.size, self.seed)
        entry = PictureRecord(key=key, file=file, width=self.size, height=self.size, caption=caption,
                              alt=f"{caption} (synthetic test picture)", numbers=numbers or {}, meta=meta or Meta())
        if with_thumb:
            entry.thumb = f"{method}/{key}.thumb.jpg"
            _thumb(self.folder / file, self.folder / entry.thumb, self.thumb)
        return entry


def _record(pictures: list[PictureRecord], params: dict, numbers: dict, seed: int) -> MethodRecord:
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return MethodRecord(key=digest, version=1, params=params, seed=seed, numbers=numbers, seconds=1.5,
                        pictures=pictures)


def _methods(w: _ClassWriter, name: str, n_images: int, rng: random.Random) -> dict[str, MethodRecord]:
    """All six methods of the paper and the diagnostics for one class, with the meta and numbers the build
    writes."""
    classviz = [
        w.picture("classviz", "baseline", f"{name}: E_class with L2 + TV only",
                  {"prob": 0.91, "score": 18.2, "colour_distance": 0.41},
                  Meta(exemplars=refs([(j + 2) % n_images for j in range(3)], distance=[0.3 + 0.1 * j for j in range(3)]))),
        w.picture("classviz", "prior", f"{name}: E_class with the patch prior",
                  {"prob": 0.88, "score": 16.9, "colour_distance": 0.12}),
    ]
    location = [
        w.picture("location", f"window-r{r}-c{c}", f"pool5 window rows {2 * r}-{2 * r + 1}, cols {2 * c}-{2 * c + 1}",
                  {"prob": round(rng.random(), 3), "score": round(10 * rng.random(), 2)},
                  Window(row=r, col=c, top=2 * r, left=2 * c, size=2, diverged=r == 2 and c == 0,
                         exemplars=refs([(r + c + j) % n_images for j in range(3)], score=[9.0 - j for j in range(3)])))
        for r in range(3) for c in range(3)
    ]
    topics = [
        w.picture("topics", f"topic-{k}", f"topic {k + 1}: m7 keeps fc7 units with W[:, {k}] > 1",
                  {"prob": round(rng.random(), 3)},
                  Topic(topic=k, units=rng.randrange(500, 1800),
                        retrieved=refs([(k + j) % n_images for j in range(4)], loading=[round(1 - 0.1 * j, 3) for j in range(4)])))
        for k in range(3)
    ]
    ensemble = [
        w.picture("ensemble", f"mask{m}-init{i}", f"dropout mask {m}, random init {i}",
                  {"prob": round(rng.random(), 3)},
                  Cell(row=m, column=i, row_seed=100 + m, column_seed=200 + i,
                       starts=refs([(m + j) % n_images for j in range(2)]) if i == 0 else ()))
        for m in range(2) for i in range(2)
    ]
    levels = ["input", "m7", "m6-7", "m5-7"]
    hierarchy = [
        w.picture("hierarchy", f"image0-{level}", f"image 0, code {level}" if level != "input" else "image 0 (input)",
                  {"pixel_error": round(0.8 - 0.2 * n, 3), "fc7_error": round(0.5 - 0.1 * n, 3)} if level != "input" else {},
                  Step(image=0, step=level, notes={"masks": ["m7", "m6", "m5"][:n]}))
        for n, level in enumerate(levels)
    ]
    inversion = [
        w.picture("inversion", f"img{i}-{variant}", f"pool5 inversion of image {i}, {variant}",
                  {"image_error": round(0.6 - 0.1 * v, 3), "feature_error": round(0.05 + 0.01 * v, 3)},
                  Step(image=i, step=variant))
        for i in range(2) for v, variant in enumerate(["rand", "avg", "prior"])
    ]
    # image 0 has its own "original" picture, as the build writes; image 1 falls back to its thumbnail
    inversion.insert(0, w.picture("inversion", "img0-original", "image 0 at the model's input size", {},
                                  Step(image=0, step="original")))
    diagnostics = _diagnostics(w, name, n_images)
    return {
        "classviz": _record(classviz, {"iterations": 200, "tv": 100.0, "prior": 0.01},
                            {"baseline_colour_distance": 0.41, "prior_colour_distance": 0.12,
                             "baseline_prob": 0.91, "prior_prob": 0.88}, 0),
        "location": _record(location, {"window": 2, "stride": 2},
                            {"heterogeneity": round(rng.random(), 3),
                             "heterogeneity_metric": "mean pairwise fc7 cosine distance between window images",
                             "strongest": ["window-r1-c1", "window-r0-c0"], "grid": [3, 3]}, 0),
        "topics": _record(topics, {"k": 3, "threshold": 1.0, "retrieved": 4},
                          {"distinctness": 0.6, "assignments": [k % 3 for k in range(n_images)]}, 0),
        "ensemble": _record(ensemble, {"masks": 2, "inits": 2, "keep": 0.5},
                            {"fc7_across_masks": 0.31, "fc7_across_inits": 0.12,
                             "pixel_across_masks": 0.2, "pixel_across_inits": 0.1}, 0),
        "hierarchy": _record(hierarchy, {"images": 1},
                             {"pixel_m7": 0.8, "pixel_m6-7": 0.6, "pixel_m5-7": 0.4,
                              "fc7_m7": 0.5, "fc7_m6-7": 0.4, "fc7_m5-7": 0.3}, 0),
        "inversion": _record(inversion, {"images": 2, "iterations": 800}, {}, 0),
        **diagnostics,
    }


PREIMAGE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8")


def _diagnostics(w: _ClassWriter, name: str, n_images: int) -> dict[str, MethodRecord]:
    """The per-class diagnostics (pre-images, caricatures, neighbours, fc7 map, saliency)."""
    errors = {layer: round(0.01 + 0.02 * n, 3) for n, layer in enumerate(PREIMAGE_LAYERS)}
    pixels = {layer: round(0.2 + 0.05 * n, 3) for n, layer in enumerate(PREIMAGE_LAYERS)}
    preimages = [w.picture("preimages", "img0-original", f"{name} image 0", {}, Step(image=0, step="original"))]
    preimages += [w.picture("preimages", f"img0-{layer}", f"pre-image of image 0 at {layer}",
                            {"feature_error": errors[layer], "pixel_error": pixels[layer]},
                            Step(image=0, step=layer)) for layer in PREIMAGE_LAYERS]
    caricatures = [w.picture("caricatures", "img0-original", f"{name} image 0", {}, Step(image=0, step="original"))]
    caricatures += [w.picture("caricatures", f"img0-{layer}", f"caricature of image 0 at {layer}", {"gain": 3.5},
                              Step(image=0, step=layer)) for layer in ("conv3", "fc7")]
    queries = [w.picture("neighbours", f"query-{q}", f"query: image {q}", {"fc7_same_topic": 0.8},
                         Query(image=q, topic=0,
                               fc7=refs([(q + j) % n_images for j in range(1, 4)], distance=[0.1 * j for j in range(1, 4)],
                                        topic=[1] * 3),
                               pixel=refs([(q + 2 * j) % n_images for j in range(1, 4)], distance=[20.0 + j for j in range(1, 4)],
                                          topic=[2] * 3)))
               for q in range(2)]
    fc7map = [w.picture("fc7map", "map", f"{name}: t-SNE of fc7 on a grid, borders by topic", {},
                        Meta(notes={"side": 3, "topics": [1] * n_images}))]
    saliency = [w.picture("saliency", f"img{i}-{kind}", f"image {i}, {kind}",
                          {} if kind == "original" else {"rank_correlation": 0.5, "top_iou": 0.4},
                          Step(image=i, step=kind)) for i in (0, 1) for kind in ("original", "occlusion", "gradcam")]
    return {
        "preimages": _record(preimages, {"images": 1, "iterations": 300},
                             {"layers": list(PREIMAGE_LAYERS), "feature_error": errors, "pixel_error": pixels}, 0),
        "caricatures": _record(caricatures, {"layers": "conv3,fc7"}, {"layers": ["conv3", "fc7"]}, 0),
        "neighbours": _record(queries, {"queries": 2, "k": 3},
                              {"fc7_same_topic": 0.8, "pixel_same_topic": 0.4, "topic_chance": 0.3}, 0),
        "fc7map": _record(fc7map, {"perplexity": 15.0}, {"trustworthiness": 0.9}, 0),
        "saliency": _record(saliency, {"images": 2}, {"rank_correlation": 0.5, "top_iou": 0.4}, 0),
    }


def write_fake_atlas(output: Path, n_classes: int = 3, size: int = 64, thumb: int = 48,
                     n_images: int = 6, claims: bool = True, hostile: bool = True) -> list[str]:
    """Write a fake atlas into `output`; returns the class slugs in index order.

    Class 0 is named `HOSTILE_NAME` when `hostile`; class 1 lacks the ensemble method (disabled)
    and has an unknown method plus a completion; the last class's prior picture has no thumb.
    """
    rng = random.Random(0)
    slugs = []
    for index in range(n_classes):
        slug = f"n{index:08d}"
        name = HOSTILE_NAME if hostile and index == 0 else CLASS_NAMES[index % len(CLASS_NAMES)]
        folder = output / "classes" / slug
        writer = _ClassWriter(folder, size, thumb, seed=1000 * index)
        images = []
        for i in range(n_images):
            thumb_file = folder / "images" / f"{i:03d}.jpg"
            fake_picture(thumb_file, thumb, seed=50_000 + 100 * index + i)
            images.append(ImageRecord(index=i, name=f"{slug}_{i}.JPEG", thumb=f"images/{i:03d}.jpg"))
        methods = _methods(writer, name, n_images, rng)
        if not claims:  # nothing the claims page could measure
            for record in methods.values():
                record.numbers = {}
                for picture in record.pictures:
                    picture.numbers = {}
        if index == 1:
            del methods["ensemble"]
            methods["caricature"] = _record(
                [writer.picture("caricature", "fc7", "fc7 caricature", {"gain": 2.0}, Meta(notes={"layer": "fc7"}))],
                {"layer": "fc7"}, {"note": "unknown to the site"}, 3)
            methods["completion"] = _record(
                [writer.picture("completion", "scene0-topic1", "completion of scene 0 under topic 1",
                                {"prob": 0.7}, Meta(notes={"topic": 1, "scene": 0}))],
                {"topic": 1}, {}, 0)
        if index == n_classes - 1 and index > 1:
            prior = methods["classviz"].pictures[1]
            (folder / str(prior.thumb)).unlink()
            prior.thumb = None
        manifest = Manifest(class_=ClassRecord(id=slug, name=name, index=index, slug=slug),
                            model={"name": "fake-alexnet", "weights": "none", "digest": "0" * 16},
                            images=images, methods=methods)
        (folder / "manifest.json").write_text(json.dumps(manifest.to_json(), indent=1))
        slugs.append(slug)
    return slugs


def write_large_atlas(output: Path, n_classes: int = 1000) -> list[str]:
    """A fake atlas of `n_classes` ImageNet classes (real names, wnids as slugs), for the site at
    scale: one class's pictures are drawn once and hard-linked (copied where links fail) into
    every class folder, so each class page references real files; the location heterogeneity
    varies so sorting means something. Returns the slugs in index order."""
    import os
    import shutil

    from generator.nets.models import imagenet_classes

    template = output / ".template"
    write_fake_atlas(template, n_classes=1, hostile=False)
    source = template / "classes" / "n00000000"
    manifest = json.loads((source / "manifest.json").read_text())
    files = [p.relative_to(source) for p in source.rglob("*") if p.is_file() and p.name != "manifest.json"]
    rng = random.Random(1)
    table = imagenet_classes()
    slugs = []
    for index in range(n_classes):
        wnid, name = table[index % len(table)] if index < len(table) else (f"x{index:08d}", f"class {index}")
        folder = output / "classes" / wnid
        for relative in files:
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source / relative, folder / relative)
            except OSError:
                shutil.copyfile(source / relative, folder / relative)
        manifest["class"] = {"id": wnid, "name": name, "index": index, "slug": wnid}
        manifest["methods"]["location"]["numbers"]["heterogeneity"] = round(rng.random(), 3)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
        slugs.append(wnid)
    shutil.rmtree(template)
    return slugs


def write_fake_units(output: Path, pool5: int = 256, fc: int = 4096, per_class: int = 8, top_k: int = 9) -> dict:
    """A schema-exact `units/manifest.json` for the classes under `output/classes` (write them
    first): a page for each of `pool5` channels and `per_class` fc6/fc7 units per class, `top_k`
    patches each, AlexNet's shapes by default. Every unit names the same few small pictures
    (the site opens none of them; the browser finds them all). Returns the manifest."""
    from generator.units import FOLDER, MANIFEST, SELECTIVITY

    classes = []
    for path in sorted((output / "classes").glob("*/manifest.json")):
        info = json.loads(path.read_text())["class"]
        classes.append({"id": info["id"], "name": info["name"], "slug": info["slug"]})
    slugs = [c["slug"] for c in classes]
    base = output / FOLDER
    for name, size in (("viz.png", 224), ("viz.thumb.jpg", 96), ("viz.icon.jpg", 56), ("patch.jpg", 112),
                       ("patch.icon.jpg", 56), ("conv1.png", 64)):
        fake_picture(base / "img" / name, size, seed=len(name))
    rng = random.Random(2)

    def unit(layer: str, index: int, for_classes: list[str]) -> dict:
        top = for_classes[0] if for_classes else rng.choice(slugs)
        patches = [{"activation": round(5 - 0.3 * r, 3), "class": top, "file": "img/patch.jpg", "height": 112,
                    "width": 112, "icon": "img/patch.icon.jpg", "image": r, "name": f"{top}_{r}.JPEG", "rank": r,
                    **({"box": [0, 0, 161, 161], "position": [1, 2]} if layer == "pool5" else {})}
                   for r in range(top_k)]
        kinds = [("plain", "Visualization"), ("prior", "With patch prior")]
        kinds += [("texture", "Per-filter texture")] if layer == "pool5" else []
        pictures = [{"key": key, "title": title, "file": "img/viz.png", "thumb": "img/viz.thumb.jpg",
                     "icon": "img/viz.icon.jpg", "width": 224, "height": 224, "thumb_width": 96, "thumb_height": 96,
                     "caption": f"{title}, 16 steps", "alt": f"{title} of {layer} unit {index}", "diverged": False,
                     "numbers": {"activation": round(rng.random() * 5, 3)}} for key, title in kinds]
        return {"index": index, "layer": layer, "selectivity": round(rng.random(), 3), "top_class": top,
                "for_classes": for_classes, "class_means": [round(rng.random(), 3) for _ in slugs],
                "patches": patches, "pictures": pictures}

    chosen = {c["slug"]: {"pool5": rng.sample(range(pool5), min(8, pool5)),
                          **{layer: rng.sample(range(fc), per_class) for layer in ("fc6", "fc7")}} for c in classes}
    layers = {}
    for layer, count in (("pool5", pool5), ("fc6", fc), ("fc7", fc)):
        indices = range(pool5) if layer == "pool5" else sorted({i for units in chosen.values() for i in units[layer]})
        units = [unit(layer, i, [s for s in slugs if i in chosen[s][layer]]) for i in indices]
        layers[layer] = {"count": count, "units": sorted(units, key=lambda u: -u["selectivity"])}
    manifest = {"schema": 1, "version": 1, "key": "0" * 64, "layers": layers, "absent": {},
                "classes": [{**c, "units": chosen[c["slug"]]} for c in classes],
                "conv1": {"file": "img/conv1.png", "width": 64, "height": 64}, "selectivity": SELECTIVITY,
                "numbers": {"solved": 0, "reused": 0}, "seconds": 0.0, "pool5_shape": [pool5, 6, 6]}
    (base / MANIFEST).write_text(json.dumps(manifest))
    return manifest
