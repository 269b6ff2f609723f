"""Picture records: the typed `meta` of a picture, one record per layout kind.

A method emits its pictures' records; the manifest stores them as JSON and parses them back;
the site, the claims, the benchmarks and the tests read their fields. This module is the only
place that knows the JSON keys. A layout may name its own keys (the ensemble's table rows are
"mask", the hierarchy's strip steps "level"), so records convert with the method's `Layout`.

Parsing never fails: a record whose layout fields are missing or out of bounds (a hand-edited
manifest) comes back as a plain `Meta`, and the layouts leave such a picture out of their
arrangement. Torch-free (the site reads records without a model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Mapping, Protocol


class Layout(Protocol):
    """What a record needs of its method's layout (generator.methods.Layout): the JSON keys it names."""

    @property
    def rows(self) -> str: ...  # table: the rows' key

    @property
    def columns(self) -> str: ...  # table: the columns' key

    @property
    def step(self) -> str: ...  # strips: the step's key

PLACE_LIMIT = 256  # pool5 positions: a window at 3e8 is not drawn
INDEX_LIMIT = 10**6  # image, topic and table indices


def _int(value: Any, high: int = INDEX_LIMIT) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high:
        return value
    return None


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class ImageRef:
    """One of the class's own images shown beside a picture (`image` indexes the class's images),
    with the numbers that say why it is there (distance, loading, score, topic)."""

    image: int
    numbers: Mapping[str, float | int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image, **self.numbers}

    @classmethod
    def parse(cls, raw: Any) -> ImageRef | None:
        if not isinstance(raw, Mapping) or (image := _int(raw.get("image"))) is None:
            return None
        numbers = {str(k): n for k, v in raw.items() if k != "image" and (n := _number(v)) is not None}
        return cls(image, numbers)


def image_refs(raw: Any) -> tuple[ImageRef, ...]:
    """A JSON list of image references; entries that are not one are left out."""
    found = (ImageRef.parse(item) for item in (raw if isinstance(raw, list) else []))
    return tuple(ref for ref in found if ref is not None)


def refs(images: Any, **numbers: Any) -> tuple[ImageRef, ...]:
    """References to `images` (indices), each with the same-position entry of every number list."""
    return tuple(ImageRef(int(i), {k: v[n] for k, v in numbers.items()}) for n, i in enumerate(images))


@dataclass(frozen=True, kw_only=True)
class Meta:
    """What any picture may carry; the record of the "pair" layout (pictures side by side).
    Its fields are keyword-only, so a layout's own fields come first: `Step(0, "conv3")`."""

    diverged: bool = False  # the optimization blew up; the site marks the picture
    exemplars: tuple[ImageRef, ...] = ()  # class images that explain what the picture draws
    starts: tuple[ImageRef, ...] = ()  # class images whose blurred mean the picture started from
    notes: Mapping[str, Any] = field(default_factory=dict)  # the method's own values (JSON); no layout reads them

    BASE: ClassVar[tuple[str, ...]] = ("diverged", "exemplars", "starts", "notes")

    def _layout_json(self, layout: Layout) -> dict[str, Any]:
        """The layout's own fields as JSON (subclasses)."""
        return {}

    def to_json(self, layout: Layout) -> dict[str, Any]:
        raw: dict[str, Any] = {**self.notes, **self._layout_json(layout)}
        if self.diverged:
            raw["diverged"] = True
        if self.exemplars:
            raw["exemplars"] = [ref.to_json() for ref in self.exemplars]
        if self.starts:
            raw["start_images"] = [ref.to_json() for ref in self.starts]
        return raw

    @classmethod
    def _parse_layout(cls, raw: Mapping[str, Any], layout: Layout) -> dict[str, Any] | None:
        """The layout's own fields from JSON, or None when they are missing or out of bounds."""
        return {}

    @classmethod
    def _layout_keys(cls, layout: Layout) -> tuple[str, ...]:
        return ()

    @classmethod
    def from_json(cls, raw: Any, layout: Layout) -> Meta:
        """The record of `layout`'s kind, or a plain Meta when its layout fields are unusable."""
        raw = raw if isinstance(raw, Mapping) else {}
        own = cls._parse_layout(raw, layout)
        known = {"diverged", "exemplars", "start_images", *cls._layout_keys(layout)}
        base: dict[str, Any] = {"diverged": raw.get("diverged") is True, "exemplars": image_refs(raw.get("exemplars")),
                                "starts": image_refs(raw.get("start_images")),
                                "notes": {str(k): v for k, v in raw.items() if k not in known}}
        if own is None:
            return Meta(**base)
        return cls(**base, **own)

    def values(self) -> dict[str, Any]:
        """The record's fields without the references (for a debug table of a picture's meta)."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.BASE}
        return {**self.notes, **{k: v for k, v in own.items() if not isinstance(v, tuple)},
                **({"diverged": True} if self.diverged else {})}


@dataclass(frozen=True)
class Window(Meta):
    """A location-grid picture: its place in the grid and the pool5 window (top, left, size) it opened."""

    row: int = 0
    col: int = 0
    top: int = 0
    left: int = 0
    size: int = 1

    PLACE: ClassVar[tuple[str, ...]] = ("row", "col", "top", "left", "size")

    def _layout_json(self, layout: Layout) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.PLACE}

    @classmethod
    def _layout_keys(cls, layout: Layout) -> tuple[str, ...]:
        return cls.PLACE

    @classmethod
    def _parse_layout(cls, raw: Mapping[str, Any], layout: Layout) -> dict[str, Any] | None:
        place = {name: _int(raw.get(name), PLACE_LIMIT) for name in cls.PLACE}
        return None if any(v is None for v in place.values()) or place["size"] == 0 else place

    def cells(self) -> set[tuple[int, int]]:
        """The pool5 positions (row, col) the window opens."""
        return {(r, c) for r in range(self.top, self.top + self.size) for c in range(self.left, self.left + self.size)}


@dataclass(frozen=True)
class Topic(Meta):
    """A topic picture: its topic (0-based; people count from 1), the fc7 units its mask keeps,
    and the class images that load most on the topic."""

    topic: int = 0
    units: int | None = None
    retrieved: tuple[ImageRef, ...] = ()

    def _layout_json(self, layout: Layout) -> dict[str, Any]:
        return {"topic": self.topic, "units": self.units, "retrieved": [ref.to_json() for ref in self.retrieved]}

    @classmethod
    def _layout_keys(cls, layout: Layout) -> tuple[str, ...]:
        return ("topic", "units", "retrieved")

    @classmethod
    def _parse_layout(cls, raw: Mapping[str, Any], layout: Layout) -> dict[str, Any] | None:
        topic = _int(raw.get("topic"))
        if topic is None:
            return None
        return {"topic": topic, "units": _int(raw.get("units")), "retrieved": image_refs(raw.get("retrieved"))}


@dataclass(frozen=True)
class Cell(Meta):
    """A table picture (the ensemble: a dropout member's row, an init's column) with the seeds
    that reproduce its row and column. The layout names the JSON keys (`rows`, `columns`)."""

    row: int = 0
    column: int = 0
    row_seed: int | None = None
    column_seed: int | None = None

    def _layout_json(self, layout: Layout) -> dict[str, Any]:
        return {layout.rows: self.row, layout.columns: self.column, f"{layout.rows}_seed": self.row_seed,
                f"{layout.columns}_seed": self.column_seed}

    @classmethod
    def _layout_keys(cls, layout: Layout) -> tuple[str, ...]:
        return (layout.rows, layout.columns, f"{layout.rows}_seed", f"{layout.columns}_seed")

    @classmethod
    def _parse_layout(cls, raw: Mapping[str, Any], layout: Layout) -> dict[str, Any] | None:
        row, column = _int(raw.get(layout.rows)), _int(raw.get(layout.columns))
        if row is None or column is None:
            return None
        seeds = [raw.get(f"{name}_seed") for name in (layout.rows, layout.columns)]
        row_seed, column_seed = (s if isinstance(s, int) and not isinstance(s, bool) else None for s in seeds)
        return {"row": row, "column": column, "row_seed": row_seed, "column_seed": column_seed}


@dataclass(frozen=True)
class Step(Meta):
    """A picture in a class image's strip: the image (None: not of one image) and its step there
    (a level, a layer, a variant); the layout names the step's JSON key (`step`)."""

    image: int | None = None
    step: str | None = None

    def _layout_json(self, layout: Layout) -> dict[str, Any]:
        return {"image": self.image, layout.step or "step": self.step}

    @classmethod
    def _layout_keys(cls, layout: Layout) -> tuple[str, ...]:
        return ("image", layout.step or "step")

    @classmethod
    def _parse_layout(cls, raw: Mapping[str, Any], layout: Layout) -> dict[str, Any] | None:
        step = raw.get(layout.step or "step")
        return {"image": _int(raw.get("image")), "step": step if isinstance(step, str) else None}


@dataclass(frozen=True)
class Query(Meta):
    """A query image (and its topic, 0-based) beside its nearest class images in fc7 and in pixels."""

    image: int = 0
    topic: int | None = None
    fc7: tuple[ImageRef, ...] = ()
    pixel: tuple[ImageRef, ...] = ()

    def _layout_json(self, layout: Layout) -> dict[str, Any]:
        return {"image": self.image, "topic": self.topic, "fc7": [r.to_json() for r in self.fc7],
                "pixel": [r.to_json() for r in self.pixel]}

    @classmethod
    def _layout_keys(cls, layout: Layout) -> tuple[str, ...]:
        return ("image", "topic", "fc7", "pixel")

    @classmethod
    def _parse_layout(cls, raw: Mapping[str, Any], layout: Layout) -> dict[str, Any] | None:
        image = _int(raw.get("image"))
        if image is None:
            return None
        return {"image": image, "topic": _int(raw.get("topic")), "fc7": image_refs(raw.get("fc7")),
                "pixel": image_refs(raw.get("pixel"))}


RECORDS: dict[str, type[Meta]] = {"pair": Meta, "grid": Window, "topic-rows": Topic, "table": Cell,
                                  "strips": Step, "neighbours": Query}
