"""What the templates need, computed once from a class's manifest: the class page's view models
(`ClassPage`, `Section`, `Picture`, `OwnImage`), each layout kind's arrangement of a method's
pictures (read from its picture records), the index card's numbers, the claims page's charts,
and the Jinja filters that format numbers. Classes, not dicts: the templates read their fields
thousands of times per site, and Jinja tries attributes before keys."""
from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from generator.manifest import Manifest, MethodRecord, PictureRecord, class_manifests, finite
from generator.methods import METHOD_NAMES, REGISTRY, Layout
from generator.nets.families import in_words, words_key
from generator.records import Cell, ImageRef, Meta, Query, Step, Topic, Window
from generator.site.imagesize import image_size

# ---------------------------------------------------------------------------------------------
# Formatting helpers (Jinja filters)

def format_number(value: Any) -> str:
    """Numbers as people read them: 3 significant digits, ints unchanged, flat lists joined,
    anything else as JSON."""
    kind = type(value)  # the common cases first: a class page formats ~500 numbers
    if kind is float:
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
            return f"{value:.2e}"
        return f"{value:.3g}"
    if kind is str:
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
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


def pairs(values: dict[str, Any], leave_out: tuple[str, ...] = ()) -> str:
    """`{"colour_distance": 0.41, "prob": 0.9}` -> `colour distance 0.41; prob 0.9` (one filter
    call instead of a template loop: the parameter tables of 1000 class pages)."""
    return "; ".join(f"{label(k)} {format_number(v)}" for k, v in values.items() if k not in leave_out)


@functools.lru_cache(maxsize=64)
def grid_lines(extent: int) -> str:
    """The SVG path of an extent x extent grid's inner lines (every location window's map on a
    class page draws the same one)."""
    return "".join(f"M{n} 0V{extent}M0 {n}H{extent}" for n in range(1, extent))


UNSAFE_PARTS = {"", ".", ".."}  # of a path split at "/": absolute, empty or leaving its folder
URL_PLAIN = re.compile(r"[A-Za-z0-9_.~/-]*")  # what quote() leaves as it is


def _asset_path(value: Any) -> str | None:
    """A manifest path made safe for an href/src: relative, no `..`, URL-quoted; else None."""
    if not isinstance(value, str) or "\\" in value:
        return None
    parts = value.split("/")
    if ":" in parts[0] or not UNSAFE_PARTS.isdisjoint(parts):
        return None
    return value if URL_PLAIN.fullmatch(value) else quote(value)


# ---------------------------------------------------------------------------------------------
# View models: what the templates need, computed once from a manifest

@dataclass
class OwnImage:
    """One of the class's own images (its thumbnail) where a method shows it, with what the
    method recorded beside it (None: nothing). A class, not a dict: the templates read its
    fields thousands of times per site, and Jinja tries attributes before keys."""
    index: int
    name: str
    src: str  # the thumbnail, relative to the class folder
    width: int | None
    height: int | None
    loading: Any = None  # topics: the image's loading on the topic
    distance: Any = None  # neighbours, exemplars
    score: Any = None  # exemplars
    topic: Any = None  # neighbours


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
    meta: Meta  # the record of its method's layout kind
    srcset: str | None = None  # "thumb <w>w, full <w>w": the browser fetches the PNG only where shown large
    exemplars: list[OwnImage] = field(default_factory=list)  # real class images that explain it
    exemplars_title: str = ""
    starts: list[OwnImage] = field(default_factory=list)  # the class images its start was the blurred mean of


@dataclass
class Section:
    name: str
    title: str
    summary: str
    record: MethodRecord  # the manifest's method entry (params, seed, numbers, ...)
    pictures: list[Picture]
    headline: dict[str, Any]  # the method's scalar numbers, shown above its pictures
    layout: dict[str, Any] = field(default_factory=dict)  # method-specific arrangement


@dataclass
class StatValue:
    """A method's number on a class's index card (`methods.Stat`)."""

    key: str
    text: str  # "3 styles", "het. 0.42"
    title: str
    value: float


def _stats(sections: list[Section]) -> list[StatValue]:
    found = []
    for section in sections:
        for declared in REGISTRY[section.name].stats if section.name in REGISTRY else ():
            if declared.number:
                value = finite(section.record.numbers.get(declared.number))
                if value is not None:
                    found.append(StatValue(declared.key, f"{declared.label} {format_number(value)}", declared.title, value))
            else:
                count = len(section.pictures)
                text = f"{count} {declared.label}{'' if count == 1 else 's'}"
                found.append(StatValue(declared.key, text, declared.title, count))
    return found


@dataclass
class ClassPage:
    slug: str
    id: str
    name: str
    index: int | None
    model: dict[str, Any]
    images: list[OwnImage]
    sections: list[Section]
    card: Picture | None  # the picture on the index card
    stats: list[StatValue]  # the registry's stats this class has, in registry order
    prev: "ClassPage | None" = None
    next: "ClassPage | None" = None


def _picture(raw: PictureRecord, folder: Path) -> Picture | None:
    href = _asset_path(raw.file)
    if href is None:
        return None
    caption = raw.caption or raw.key
    width = raw.width if raw.width is not None and raw.width > 0 else None
    height = raw.height if raw.height is not None and raw.height > 0 else None
    thumb = _asset_path(raw.thumb)
    srcset = None
    if thumb is not None and width is not None:
        thumb_width, _ = image_size(f"{folder}/{raw.thumb}")
        if thumb_width is not None and thumb_width < width:
            srcset = f"{thumb} {thumb_width}w, {href} {width}w"
    return Picture(key=raw.key, href=href, src=thumb or href, srcset=srcset, width=width, height=height,
                   caption=caption, alt=raw.alt or caption or "atlas picture", numbers=dict(raw.numbers),
                   meta=raw.meta)


def _pair_layout(layout: Layout, pictures: list[Picture]) -> dict[str, Any]:
    """Side by side in the declared order of their keys (classviz: baseline, then prior)."""
    rank = {key: n for n, key in enumerate(layout.order)}
    return {"ordered": sorted(pictures, key=lambda p: rank.get(p.key, len(rank))), "titles": dict(layout.titles)}


def _grid_layout(pictures: list[Picture]) -> dict[str, Any]:
    """A CSS grid of windows at their (row, col), each with a map of the pool5 window it
    opened. A picture without a usable window (a hand-edited 3e8) is left out."""
    placed = [p for p in pictures if isinstance(p.meta, Window)]
    windows = [p.meta for p in placed if isinstance(p.meta, Window)]
    if not windows:
        return {}
    return {"cells": placed, "rows": max(w.row for w in windows) + 1, "cols": max(w.col for w in windows) + 1,
            "pool5": max(max(w.top, w.left) + w.size for w in windows)}


def _own_images(found: tuple[ImageRef, ...], by_index: dict[int, OwnImage], *fields: str) -> list[OwnImage]:
    """Image references as the class's own thumbnails with those of their numbers named by
    `fields`; a reference to no known image is left out."""
    return [
        OwnImage(image.index, image.name, image.src, image.width, image.height, **{name: ref.numbers.get(name) for name in fields})
        for ref in found if (image := by_index.get(ref.image)) is not None
    ]


def _topic_rows_layout(pictures: list[Picture], images: list[OwnImage]) -> dict[str, Any]:
    """Each topic beside its retrieved images (the class's own thumbnails, with loadings);
    topics are numbered from 1 for people (meta.topic is 0-based)."""
    by_index = {image.index: image for image in images}
    placed = sorted(((p.meta, p) for p in pictures if isinstance(p.meta, Topic)), key=lambda t: (t[0].topic, t[1].key))
    return {"topics": [{"picture": picture, "number": topic.topic + 1, "units": topic.units,
                        "retrieved": _own_images(topic.retrieved, by_index, "loading")} for topic, picture in placed]}


def _table_layout(layout: Layout, pictures: list[Picture], words: bool | str) -> dict[str, Any]:
    """A rows x columns table (ensemble: masks x inits) with the seed of each row and column."""
    placed = [(p.meta, p) for p in pictures if isinstance(p.meta, Cell)]
    if not placed or len(placed) < len(pictures):
        return {}
    cells = {(cell.row, cell.column): p for cell, p in placed}
    rows = sorted({r for r, _ in cells})
    columns = sorted({c for _, c in cells})
    seeds: dict[str, dict[int, int | None]] = {"row": {}, "column": {}}
    for cell, _ in placed:
        seeds["row"][cell.row] = cell.row_seed
        seeds["column"][cell.column] = cell.column_seed
    return {"note": in_words(layout.note, words),
            "columns": [(layout.column_title.format(c + 1), seeds["column"].get(c)) for c in columns],
            "rows": [(layout.row_title.format(r + 1), seeds["row"].get(r), [cells.get((r, c)) for c in columns])
                     for r in rows]}


def _step(picture: Picture) -> str | None:
    return picture.meta.step if isinstance(picture.meta, Step) else None


def _strips_layout(layout: Layout, record: MethodRecord, pictures: list[Picture],
                   images: list[OwnImage]) -> dict[str, Any]:
    """One strip per class image (meta.image): its leading picture (the input or original, else
    the image's thumbnail), then the other steps in the order the method recorded (e.g. the
    hierarchy's levels: a model family without fc6 records fewer), else the declared order."""
    recorded = record.numbers.get(layout.steps) if layout.steps else None
    order = [str(s) for s in recorded] if isinstance(recorded, list) else list(layout.order)
    rank = {name: n for n, name in enumerate(order)}
    by_index = {image.index: image for image in images}
    groups: dict[int | None, list[Picture]] = {}
    for picture in pictures:
        groups.setdefault(picture.meta.image if isinstance(picture.meta, Step) else None, []).append(picture)
    rows = []
    for image, group in groups.items():
        leading = [p for p in group if _step(p) in (None, *layout.leading)]
        steps = sorted((p for p in group if p not in leading), key=lambda p: rank.get(_step(p) or "", len(rank)))
        titled = [(p, _step_title(layout, _step(p))) for p in steps]
        rows.append({"image": None if image is None else by_index.get(image), "lead": leading[0] if leading else None, "steps": titled,
                     "table": _step_table(layout, titled)})
    lead_title = next((layout.titles[name] for name in layout.leading if name in layout.titles), "")
    return {"rows": rows, "lead_title": lead_title, "columns": list(layout.numbers.values()),
            "step_name": layout.step or "step"}


def _step_table(layout: Layout, titled: list[tuple[Picture, str | None]]) -> list[tuple[str, list[Any]]]:
    """A strip's numbers as table rows (step title, [value per declared number]); none unless
    the layout declares `numbers` (the pre-images' per-layer errors)."""
    if not layout.numbers:
        return []
    return [(title or p.key, [p.numbers.get(name) for name in layout.numbers]) for p, title in titled]


def _neighbours_layout(pictures: list[Picture], images: list[OwnImage]) -> dict[str, Any]:
    """Each query beside its nearest class images in fc7 and in pixels (the class's own
    thumbnails, with their distances and topics)."""
    by_index = {image.index: image for image in images}
    return {"queries": [{"picture": p, "fc7": _own_images(p.meta.fc7, by_index, "distance", "topic"),
                         "pixel": _own_images(p.meta.pixel, by_index, "distance", "topic")}
                        for p in pictures if isinstance(p.meta, Query)]}


def _step_title(layout: Layout, step: str | None) -> str | None:
    if step is None:
        return None
    return layout.titles.get(step, layout.step_title.format(step))


def _attach_exemplars(pictures: list[Picture], images: list[OwnImage], title: str) -> None:
    """Each picture's record's exemplars and starts as the class's own thumbnails."""
    by_index = {image.index: image for image in images}
    for picture in pictures:
        picture.exemplars = _own_images(picture.meta.exemplars, by_index, "distance", "score")
        picture.exemplars_title = title
        picture.starts = _own_images(picture.meta.starts, by_index)


def _section(name: str, record: MethodRecord, images: list[OwnImage], folder: Path, words: bool | str) -> Section:
    """One method's section; `words`: the net's families.words_key (texts name the levels it has)."""
    pictures = [p for p in (_picture(raw, folder) for raw in record.pictures) if p is not None]
    spec = REGISTRY.get(name)
    if spec is not None and spec.layout.exemplars:
        _attach_exemplars(pictures, images, spec.layout.exemplars)
    layout: dict[str, Any] = {}
    if spec is not None and pictures:
        kind = spec.layout.kind
        if kind == "pair":
            layout = _pair_layout(spec.layout, pictures)
        elif kind == "grid":
            layout = _grid_layout(pictures)
        elif kind == "topic-rows":
            layout = _topic_rows_layout(pictures, images)
        elif kind == "table":
            layout = _table_layout(spec.layout, pictures, words)
        elif kind == "strips":
            layout = _strips_layout(spec.layout, record, pictures, images)
        elif kind == "neighbours":
            layout = _neighbours_layout(pictures, images)
        if layout:
            layout["kind"] = kind
    headline = {k: v for k, v in record.numbers.items() if isinstance(v, (int, float))}
    return Section(name=name, title=in_words(spec.title, words) if spec else label(name).capitalize(),
                   summary=in_words(spec.summary, words) if spec else "", record=record, pictures=pictures,
                   headline=headline, layout=layout)


def _class_page(manifest: Manifest, folder: Path) -> ClassPage:
    info = manifest.class_
    images = []
    for image in manifest.images:
        src = _asset_path(image.thumb)
        if src is not None:
            width, height = image_size(f"{folder}/{image.thumb}")
            images.append(OwnImage(image.index, image.name, src, width, height))
    methods = manifest.methods
    names = [m for m in METHOD_NAMES if m in methods] + sorted(m for m in methods if m not in REGISTRY)
    sections = [_section(name, methods[name], images, folder, words_key(manifest.model)) for name in names]
    cards = [p for s in sections if s.name in REGISTRY for p in s.pictures if p.key == REGISTRY[s.name].card]
    card = next(iter(cards), None) or next((p for s in sections for p in s.pictures), None)
    return ClassPage(slug=folder.name, id=info.id, name=info.name, index=info.index, model=dict(manifest.model),
                     images=images, sections=sections, card=card, stats=_stats(sections))


def load_classes(output: Path, warn: Callable[[str], None] | None = None) -> list[ClassPage]:
    """Every class with a usable manifest, in fc8-index order, linked to its neighbours."""
    return _pages(class_manifests(output, warn))


def _pages(found: list[tuple[Path, Manifest]]) -> list[ClassPage]:
    pages = [_class_page(manifest, folder) for folder, manifest in found]
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


def _claims_view(claims: dict[str, Any] | None, names: dict[str, str]) -> dict[str, Any] | None:
    if claims is None:
        return None
    rows = []
    for claim in claims.get("claims") or []:
        per_class = claim.get("per_class") or {}
        numeric: list[tuple[str, float, float | None]] = [
            (str(names.get(k, k)), float(v), None) for k, v in per_class.items() if isinstance(v, (int, float))]
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
