"""The atlas website: a Jinja2 render of the build's manifests into static HTML.

The site is made from `classes/*/manifest.json` (+ the optional `claims.json` and
`inversion.json`) alone, so `atlas render` takes seconds and never touches a model or an image
(thumbnails are made by the build). Every link is relative, so the folder works from file:// and
on any static host, and nothing is fetched from the network. Manifest strings go through Jinja2's
autoescape; manifest paths go through `_asset_path`, which refuses absolute paths and `..`.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import http.server
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from PIL import Image

from generator import store
from generator.errors import SiteError
from generator.families import FAMILY_ROLES, model_family

# Sections of a class page, in the paper's order; unknown methods follow, alphabetically.
METHOD_TITLES = {
    "classviz": "Class visualization",
    "location": "Location grid",
    "topics": "Topic styles",
    "ensemble": "Dropout ensemble",
    "hierarchy": "Hierarchical codes",
    "inversion": "pool5 inversion",
    "completion": "Style-based completion",
}
METHOD_SUMMARIES = {
    "classviz": "Maximizing the class score with L2 + TV only (baseline) and with the data-driven patch prior.",
    "location": "Each picture opens only one window of pool5 (mask m5); they sit where their windows sit.",
    "topics": "NMF of the class's fc7 codes; each topic's units form the mask m7. Its visualization sits beside the images "
              "that load most on it.",
    "ensemble": "Random 50% dropout masks on fc6 and fc7 pick ensemble members; rows are masks, columns random initializations.",
    "hierarchy": "Class visualization constrained by a real image's on/off code at more and more layers (fc7, then fc6, "
                 "then pool5): the units the image has on carry the class score, the units it has off are kept quiet.",
    "inversion": "Reconstructing an image from its pool5 feature: random init, retrieved-patch average init, and the patch prior.",
    "completion": "Filling a masked region of a scene with the class under one topic's mask m7.",
}
HIERARCHY_LEVELS = ("m7", "m6-7", "m5-7")
INVERSION_VARIANTS = ("retrieved", "rand", "avg", "prior")



def templates_dir() -> Path:
    """The templates folder: `generator/templates` when installed as package data, else the
    repository's `templates/` next to `generator/` (editable install or a clean clone)."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "templates", package.parent / "templates"):
        if (candidate / "base.html").is_file():
            return candidate
    raise SiteError(f"templates not found next to {package} (looked for templates/base.html)")


# ---------------------------------------------------------------------------------------------
# Formatting helpers (Jinja filters)

def format_number(value: Any) -> str:
    """Numbers as people read them: 3 significant digits, ints unchanged, flat lists joined,
    anything else as JSON."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
            return f"{value:.2e}"
        return f"{value:.3g}"
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str)) for v in value):
        return ", ".join(format_number(v) for v in value)
    return json.dumps(value, separators=(", ", ": "), default=str)


def label(key: str) -> str:
    """`colour_distance` -> `colour distance`."""
    return str(key).replace("_", " ")


def _asset_path(value: Any) -> str | None:
    """A manifest path made safe for an href/src: relative, no `..`, URL-quoted; else None."""
    if not isinstance(value, str) or not value or "\\" in value:
        return None
    if value.startswith("/") or ":" in value.split("/", 1)[0]:
        return None
    parts = value.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return quote(value)


# ---------------------------------------------------------------------------------------------
# View models: what the templates need, computed once from a manifest

@dataclass
class Picture:
    key: str
    href: str  # full-size image, relative to the class folder
    src: str  # thumbnail (or the full image when the build made none)
    width: int | None
    height: int | None
    caption: str
    alt: str
    numbers: dict[str, Any]
    meta: dict[str, Any]
    srcset: str | None = None  # "thumb <w>w, full <w>w": the browser fetches the PNG only where shown large


@dataclass
class Section:
    name: str
    title: str
    summary: str
    record: dict[str, Any]  # the manifest's method entry (params, seed, numbers, ...)
    pictures: list[Picture]
    headline: dict[str, Any]  # the method's scalar numbers, shown above its pictures
    layout: dict[str, Any] = field(default_factory=dict)  # method-specific arrangement


@dataclass
class ClassPage:
    slug: str
    id: str
    name: str
    index: int | None
    model: dict[str, Any]
    images: list[dict[str, Any]]  # {"index", "name", "src"} with src relative to the class folder
    sections: list[Section]
    card: Picture | None  # the picture on the index card
    styles: int | None
    heterogeneity: float | None
    prev: "ClassPage | None" = None
    next: "ClassPage | None" = None


def _picture(raw: dict[str, Any], folder: Path) -> Picture | None:
    href = _asset_path(raw.get("file"))
    if href is None:
        return None
    caption = str(raw.get("caption") or raw.get("key") or "")
    width, height = raw.get("width"), raw.get("height")
    width = width if isinstance(width, int) and width > 0 else None
    height = height if isinstance(height, int) and height > 0 else None
    thumb = _asset_path(raw.get("thumb"))
    srcset = None
    if thumb is not None and width is not None:
        thumb_width, _ = _image_size(folder / raw["thumb"])
        if thumb_width is not None and thumb_width < width:
            srcset = f"{thumb} {thumb_width}w, {href} {width}w"
    return Picture(
        key=str(raw.get("key", "")),
        href=href,
        src=thumb or href,
        srcset=srcset,
        width=width,
        height=height,
        caption=caption,
        alt=str(raw.get("alt") or caption or raw.get("key") or "atlas picture"),
        numbers=dict(raw.get("numbers") or {}),
        meta=dict(raw.get("meta") or {}),
    )


def _image_size(path: Path) -> tuple[int | None, int | None]:
    """Width and height from the file header (no decoding), for <img> width/height attributes."""
    try:
        with Image.open(path) as image:
            return image.size
    except OSError:
        return None, None


def _classviz_layout(pictures: list[Picture]) -> dict[str, Any]:
    """Baseline first, prior second: the paper's side-by-side comparison."""
    rank = {"baseline": 0, "prior": 1}
    return {"ordered": sorted(pictures, key=lambda p: rank.get(p.key, 2))}


def _location_layout(pictures: list[Picture]) -> dict[str, Any]:
    """A CSS grid of windows at their (row, col), each with a map of the pool5 window it opened."""
    placed = [p for p in pictures if isinstance(p.meta.get("row"), int) and isinstance(p.meta.get("col"), int)]
    if not placed:
        return {}
    window_ends = [p.meta[start] + p.meta["size"] for p in placed for start in ("top", "left")
                   if isinstance(p.meta.get(start), int) and isinstance(p.meta.get("size"), int)]
    return {"cells": placed, "rows": max(p.meta["row"] for p in placed) + 1,
            "cols": max(p.meta["col"] for p in placed) + 1, "pool5": max(window_ends, default=0)}


def _topics_layout(pictures: list[Picture], images: list[dict[str, Any]]) -> dict[str, Any]:
    """Each topic beside its retrieved images (the class's own thumbnails, with loadings)."""
    by_index = {image["index"]: image for image in images}
    topics = []
    def order(picture: Picture) -> tuple[int, str]:
        topic = picture.meta.get("topic")
        return (topic if isinstance(topic, int) else 0, picture.key)

    for picture in sorted(pictures, key=order):
        retrieved = []
        for item in picture.meta.get("retrieved") or []:
            image = by_index.get(item.get("image")) if isinstance(item, dict) else None
            if image is not None:
                retrieved.append({**image, "loading": item.get("loading")})
        topics.append({"picture": picture, "retrieved": retrieved})
    return {"topics": topics}


def _ensemble_layout(pictures: list[Picture]) -> dict[str, Any]:
    """A masks x inits table."""
    cells = {(p.meta.get("mask"), p.meta.get("init")): p for p in pictures}
    if None in {key for pair in cells for key in pair}:
        return {}
    masks = sorted({m for m, _ in cells})
    inits = sorted({i for _, i in cells})
    seeds = {"mask": {p.meta.get("mask"): p.meta.get("mask_seed") for p in pictures},
             "init": {p.meta.get("init"): p.meta.get("init_seed") for p in pictures}}
    return {"masks": masks, "inits": inits, "seeds": seeds,
            "rows": [[cells.get((m, i)) for i in inits] for m in masks]}


def _by_image(pictures: list[Picture]) -> dict[Any, list[Picture]]:
    groups: dict[Any, list[Picture]] = {}
    for picture in pictures:
        groups.setdefault(picture.meta.get("image"), []).append(picture)
    return groups


def _ordered(pictures: list[Picture], key: str, order: tuple[str, ...]) -> list[Picture]:
    rank = {name: n for n, name in enumerate(order)}
    return sorted(pictures, key=lambda p: rank.get(p.meta.get(key), len(order)))


def _hierarchy_layout(pictures: list[Picture], images: list[dict[str, Any]]) -> dict[str, Any]:
    """Per input image: the image, then its inversions under {m7}, {m6-7}, {m5-7}."""
    by_index = {image["index"]: image for image in images}
    rows = []
    for image, group in _by_image(pictures).items():
        inputs = [p for p in group if p.meta.get("level") in (None, "input")]
        levels = [p for p in group if p not in inputs]
        rows.append({"image": by_index.get(image), "input": inputs[0] if inputs else None,
                     "levels": _ordered(levels, "level", HIERARCHY_LEVELS)})
    return {"rows": rows}


def _inversion_layout(pictures: list[Picture], images: list[dict[str, Any]]) -> dict[str, Any]:
    """Per image: the original (its picture, else the class image's thumbnail) beside its
    rand / avg / prior inversions."""
    by_index = {image["index"]: image for image in images}
    rows = []
    for image, group in _by_image(pictures).items():
        originals = [p for p in group if p.meta.get("variant") in ("original", "input")]
        variants = [p for p in group if p not in originals]
        rows.append({"image": by_index.get(image), "original": originals[0] if originals else None,
                     "variants": _ordered(variants, "variant", INVERSION_VARIANTS)})
    return {"rows": rows}


def _section(name: str, record: dict[str, Any], images: list[dict[str, Any]], folder: Path) -> Section:
    pictures = [p for p in (_picture(raw, folder) for raw in record.get("pictures") or []) if p is not None]
    layouts = {
        "classviz": lambda: _classviz_layout(pictures),
        "location": lambda: _location_layout(pictures),
        "topics": lambda: _topics_layout(pictures, images),
        "ensemble": lambda: _ensemble_layout(pictures),
        "hierarchy": lambda: _hierarchy_layout(pictures, images),
        "inversion": lambda: _inversion_layout(pictures, images),
    }
    layout = layouts[name]() if name in layouts and pictures else {}
    numbers = record.get("numbers") or {}
    headline = {k: v for k, v in numbers.items() if isinstance(v, (int, float))}
    return Section(name=name, title=METHOD_TITLES.get(name, label(name).capitalize()),
                   summary=METHOD_SUMMARIES.get(name, ""), record=record, pictures=pictures,
                   headline=headline, layout=layout)


def _class_page(manifest: dict[str, Any], folder: Path) -> ClassPage:
    info = manifest.get("class") or {}
    slug = folder.name
    images = []
    for image in manifest.get("images") or []:
        src = _asset_path(image.get("thumb"))
        if src is not None and isinstance(image.get("index"), int):
            width, height = _image_size(folder / image["thumb"])
            images.append({"index": image["index"], "name": str(image.get("name", "")), "src": src,
                           "width": width, "height": height})
    methods = manifest.get("methods") or {}
    names = [m for m in METHOD_TITLES if m in methods] + sorted(m for m in methods if m not in METHOD_TITLES)
    sections = [_section(name, methods[name], images, folder) for name in names]
    by_name = {s.name: s for s in sections}
    card = None
    if "classviz" in by_name:
        card = next((p for p in by_name["classviz"].pictures if p.key == "prior"), None)
    if card is None:
        card = next((p for s in sections for p in s.pictures), None)
    topics = by_name.get("topics")
    heterogeneity = (by_name["location"].record.get("numbers") or {}).get("heterogeneity") if "location" in by_name else None
    index = info.get("index")
    return ClassPage(
        slug=slug, id=str(info.get("id", slug)), name=str(info.get("name", slug)),
        index=index if isinstance(index, int) else None, model=dict(manifest.get("model") or {}),
        images=images, sections=sections, card=card,
        styles=len(topics.pictures) if topics else None,
        heterogeneity=heterogeneity if isinstance(heterogeneity, (int, float)) else None,
    )


def load_classes(output: Path) -> list[ClassPage]:
    """Every class with a manifest, in fc8-index order, linked to its neighbours."""
    pages = []
    for path in sorted((output / "classes").glob("*/manifest.json")):
        try:
            manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise SiteError(f"{path}: cannot read manifest: {error}") from error
        pages.append(_class_page(manifest, path.parent))
    pages.sort(key=lambda p: (p.index is None, p.index if p.index is not None else 0, p.name))
    for before, after in zip(pages, pages[1:]):
        before.next, after.prev = after, before
    return pages


# ---------------------------------------------------------------------------------------------
# Charts for the claims page: geometry here, SVG markup in the template

def bar_chart(bars: list[tuple[str, float, float | None]], threshold: float | None = None,
              width: int = 560, bar_height: int = 22) -> dict[str, Any]:
    """Horizontal bars (label, value, error) scaled to a shared axis, plus a threshold line."""
    label_width, pad = 170, 8
    values = [v + (e or 0) for _, v, e in bars] + ([threshold] if threshold is not None else [])
    top = max([v for v in values if math.isfinite(v)] + [1e-9])
    scale = (width - label_width - 60) / top
    rows = []
    for n, (name, value, error) in enumerate(bars):
        y = pad + n * (bar_height + 6)
        length = max(0.0, value) * scale if math.isfinite(value) else 0.0
        rows.append({"label": name, "value": value, "y": y, "w": length, "text_y": y + bar_height * 0.7,
                     "err": None if error is None else (label_width + max(0.0, value - error) * scale,
                                                        label_width + (value + error) * scale)})
    height = pad * 2 + len(bars) * (bar_height + 6)
    return {"width": width, "height": height, "x0": label_width, "bar_height": bar_height, "rows": rows,
            "threshold": None if threshold is None else label_width + threshold * scale}


def _load_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SiteError(f"{path}: not valid JSON: {error}") from error


def _claims_view(claims: dict[str, Any] | None, names: dict[str, str]) -> dict[str, Any] | None:
    if claims is None:
        return None
    rows = []
    for claim in claims.get("claims") or []:
        per_class = claim.get("per_class") or {}
        numeric = [(names.get(k, k), float(v), None) for k, v in per_class.items() if isinstance(v, (int, float))]
        threshold = claim.get("threshold")
        chart = bar_chart(numeric, threshold if isinstance(threshold, (int, float)) else None) if numeric else None
        rows.append({**claim, "chart": chart, "per_class_named": [(names.get(k, k), v) for k, v in per_class.items()]})
    return {**claims, "rows": rows}


def _inversion_view(table: dict[str, Any] | None) -> dict[str, Any] | None:
    if table is None or not table.get("rows"):
        return None
    bars = [(str(r.get("variant")), float(r.get("image_error_mean", float("nan"))),
             float(r["image_error_std"]) if isinstance(r.get("image_error_std"), (int, float)) else None)
            for r in table["rows"]]
    return {"rows": table["rows"], "chart": bar_chart(bars)}


# ---------------------------------------------------------------------------------------------

def environment(templates: Path | None = None) -> Environment:
    env = Environment(loader=FileSystemLoader(str(templates or templates_dir())),
                      autoescape=select_autoescape(["html", "xml"], default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = format_number
    env.filters["label"] = label
    env.globals["METHOD_TITLES"] = METHOD_TITLES
    return env


def _measure(output: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Claims and the inversion table, measured from the manifests (and the planted truth the
    build copied into `output`, if any) and written beside them as JSON for reuse."""
    from generator.claims import claims_from_manifests, inversion_table, load_truth
    from generator.store import write_json

    claims = claims_from_manifests(output, load_truth(output / "truth.json"))
    inversion = inversion_table(output)
    write_json(claims, output / "claims.json")
    write_json(inversion, output / "inversion.json")
    measured = any(claim["value"] is not None for claim in claims["claims"])
    return (claims if measured else None), (inversion if inversion["rows"] else None)


INDEX_PAGE = 60  # cards on one page of the index (fills rows of 2 to 6 columns); the rest come from INDEX_SCRIPT
INDEX_SCRIPT = "class-index.js"
INDEX_FIELDS = ("slug", "id", "name", "index", "src", "width", "height", "alt", "styles", "heterogeneity", "het")


def index_script(classes: list[ClassPage]) -> str:
    """Every class's card as compact rows for the index's search, sort and pages.

    A script, not a JSON file: pages opened from file:// may run scripts but not fetch()."""
    rows = []
    for c in classes:
        het = c.heterogeneity if c.heterogeneity is not None and math.isfinite(c.heterogeneity) else None
        card = [c.card.src, c.card.width, c.card.height, c.card.alt] if c.card else [None] * 4
        rows.append([c.slug, c.id, c.name, c.index, *card, c.styles, het, None if het is None else format_number(het)])
    data = json.dumps({"page": INDEX_PAGE, "fields": INDEX_FIELDS, "rows": rows}, separators=(",", ":"), allow_nan=False)
    return "window.ATLAS_INDEX = " + data.replace("<", "\\u003c") + ";\n"


def render(output: Path, templates: Path | None = None) -> Path:
    """Write index.html, methods.html, claims.html, classes/<slug>/index.html and static/ into
    `output` from its manifests; returns the path of index.html."""
    output = Path(output)
    templates = templates or templates_dir()
    classes = load_classes(output)
    if not classes:
        raise SiteError(f"no classes/*/manifest.json under {output}: run `atlas build` first")
    env = environment(templates)
    store.copy_tree(templates / "static", output / "static")
    claims, inversion = _measure(output)
    model = classes[0].model
    common = {"classes": classes, "model": model, "families": FAMILY_ROLES, "family": model_family(model.get("name"))}

    def write(path: Path, template: str, root: str, **context: Any) -> None:
        html = env.get_template(template).render(root=root, **common, **context)
        store.atomic_write(path, html.encode("utf-8", "replace"))  # "replace": a non-UTF-8 file name

    script = index_script(classes)
    (output / INDEX_SCRIPT).with_suffix(".tmp").write_text(script, encoding="utf-8")
    (output / INDEX_SCRIPT).with_suffix(".tmp").replace(output / INDEX_SCRIPT)
    version = hashlib.sha256(script.encode()).hexdigest()[:12]  # a new list is never read from a stale cache
    write(output / "index.html", "index.html", "", page="index", page_size=INDEX_PAGE,
          index_script=f"{INDEX_SCRIPT}?v={version}")
    write(output / "methods.html", "methods.html", "", page="methods")
    names = {c.slug: c.name for c in classes} | {c.id: c.name for c in classes}
    write(output / "claims.html", "claims.html", "", page="claims",
          claims=_claims_view(claims, names), inversion=_inversion_view(inversion))
    for page in classes:
        write(output / "classes" / page.slug / "index.html", "class.html", "../../", page="class", cls=page)
    return output / "index.html"


class _SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files only: no folder listings, and nothing whose path has a dotfile or dot-folder
    (`.atlas-cache/`, `.atlas.lock`, the ledgers) — those are the build's, not the site's."""

    def send_head(self):  # type: ignore[no-untyped-def]
        parts = self.path.split("?", 1)[0].split("#", 1)[0].split("/")
        hidden = any(part.startswith(".") or part.startswith("%2e") or part.startswith("%2E") for part in parts)
        if hidden:
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def list_directory(self, path):  # type: ignore[no-untyped-def]
        self.send_error(404, "File not found")
        return None


def make_server(output: Path, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """An HTTP server for the `output` folder, bound to 127.0.0.1 only (port 0: any free one)."""
    if isinstance(port, bool) or not 0 <= port <= 65535:
        raise SiteError(f"port {port} is out of range (0-65535; 0 picks a free one)")
    handler = functools.partial(_SiteHandler, directory=str(output))
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SiteError(f"port {port} is in use (another `atlas serve`?): pick another with --port") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise SiteError(f"port {port} needs privileges: use a port above 1023, e.g. --port 8000") from None
        raise SiteError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}") from None


def serve(output: Path, port: int = 8000) -> None:
    """Serve `output` on http://127.0.0.1:<port>/ until interrupted (local only)."""
    if not (Path(output) / "index.html").is_file():
        raise SiteError(f"{output}/index.html not found: run `atlas render` (or `atlas build`) first")
    with make_server(output, port) as server:
        print(f"Serving {output} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
