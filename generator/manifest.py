"""The class manifest (`classes/<slug>/manifest.json`) as typed records: what the build writes
and what site, claims, clean and the test fixtures read.

`Manifest.from_json` checks the shape and the types of everything it keeps, so a manifest of
valid JSON but the wrong shape (a list, null, a string where a mapping belongs) is one
`ManifestError` naming the file and the field, never an AttributeError deep in a reader.
Fields a reader can do without (a picture's thumb, width, numbers) are optional; a method's
`numbers` stay a free-form mapping (each method records its own), a picture's `meta` is the
typed record of its method's layout kind (`generator.records`).
Layout of the JSON: ARCHITECTURE.md "Build and site".
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from generator import safefs
from generator.errors import AtlasError
from generator.methods import Layout, layout_of
from generator.records import Meta

SCHEMA = 1
MAX_BYTES = 64 * 1024 * 1024  # a manifest larger than this is not one the build wrote


class ManifestError(AtlasError, ValueError):
    """A manifest that cannot be used: unreadable, not JSON, or JSON of the wrong shape."""


class _Reader:
    """Typed access to one JSON value; errors name the file and the field path."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, where: str, message: str) -> ManifestError:
        return ManifestError(f"{self.label}: {where or 'top level'}: {message}")

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        return value

    def items(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {_kind(value)}")
        return value

    def text(self, value: Any, where: str, default: str | None = None) -> str:
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise self.fail(where, f"expected a string, got {_kind(value)}")
        return value

    def integer(self, value: Any, where: str, default: int | None = None, optional: bool = False) -> Any:
        if value is None and (optional or default is not None):
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(where, f"expected an integer, got {_kind(value)}")
        return value

    def number(self, value: Any, where: str, default: float) -> float:
        if value is None:
            return default
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self.fail(where, f"expected a number, got {_kind(value)}")
        return float(value)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def bounded_int(value: Any, low: int = 0, high: int = 4096) -> int | None:
    """`value` when it is an int in [low, high], else None: for meta a layout loops over (a
    location window `size` of 3e8 must not make render draw 3e8 grid lines)."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return None


def finite(value: Any) -> float | None:
    """`value` as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass
class PictureRecord:
    key: str
    file: str = ""  # relative to the class folder ("": none; the site shows only pictures with a file)
    thumb: str | None = None
    width: int | None = None
    height: int | None = None
    caption: str = ""
    alt: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    meta: Meta = field(default_factory=Meta)

    @classmethod
    def parse(cls, read: _Reader, raw: Any, where: str, layout: Layout) -> PictureRecord:
        raw = read.mapping(raw, where)
        return cls(key=read.text(raw.get("key"), f"{where}.key"), file=read.text(raw.get("file"), f"{where}.file", ""),
                   thumb=None if raw.get("thumb") is None else read.text(raw["thumb"], f"{where}.thumb"),
                   width=read.integer(raw.get("width"), f"{where}.width", optional=True),
                   height=read.integer(raw.get("height"), f"{where}.height", optional=True),
                   caption=read.text(raw.get("caption"), f"{where}.caption", ""),
                   alt=read.text(raw.get("alt"), f"{where}.alt", ""),
                   numbers=dict(read.mapping(raw.get("numbers", {}), f"{where}.numbers")),
                   meta=layout.record.from_json(read.mapping(raw.get("meta", {}), f"{where}.meta"), layout))

    def to_json(self, layout: Layout) -> dict[str, Any]:
        return {"key": self.key, "file": self.file, "thumb": self.thumb, "width": self.width, "height": self.height,
                "caption": self.caption, "alt": self.alt, "numbers": self.numbers, "meta": self.meta.to_json(layout)}

    @property
    def files(self) -> list[str]:
        return [path for path in (self.file, self.thumb) if path]


@dataclass
class MethodRecord:
    key: str = ""  # the artifact key (generator.store.Inputs.key)
    version: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    numbers: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    inputs: dict[str, Any] = field(default_factory=dict)  # what the key hashed, by name
    pictures: list[PictureRecord] = field(default_factory=list)

    @classmethod
    def parse(cls, read: _Reader, raw: Any, where: str, layout: Layout) -> MethodRecord:
        raw = read.mapping(raw, where)
        pictures = read.items(raw.get("pictures", []), f"{where}.pictures")
        return cls(key=read.text(raw.get("key"), f"{where}.key", ""),
                   version=read.integer(raw.get("version"), f"{where}.version", 0),
                   params=dict(read.mapping(raw.get("params", {}), f"{where}.params")),
                   seed=read.integer(raw.get("seed"), f"{where}.seed", 0),
                   numbers=dict(read.mapping(raw.get("numbers", {}), f"{where}.numbers")),
                   seconds=read.number(raw.get("seconds"), f"{where}.seconds", 0.0),
                   inputs=dict(read.mapping(raw.get("inputs", {}), f"{where}.inputs")),
                   pictures=[PictureRecord.parse(read, p, f"{where}.pictures[{i}]", layout)
                             for i, p in enumerate(pictures)])

    def to_json(self, layout: Layout) -> dict[str, Any]:
        return {"key": self.key, "version": self.version, "params": self.params, "seed": self.seed,
                "numbers": self.numbers, "seconds": self.seconds, "inputs": self.inputs,
                "pictures": [p.to_json(layout) for p in self.pictures]}

    @property
    def files(self) -> list[str]:
        return [path for picture in self.pictures for path in picture.files]

    def picture(self, key: str) -> PictureRecord | None:
        return next((p for p in self.pictures if p.key == key), None)


@dataclass
class ClassRecord:
    id: str
    name: str
    index: int | None
    slug: str


@dataclass
class ImageRecord:
    index: int
    name: str
    thumb: str  # relative to the class folder


@dataclass
class Manifest:
    class_: ClassRecord
    schema: int = SCHEMA
    model: dict[str, Any] = field(default_factory=dict)  # {"name", "weights", "digest"}
    images: list[ImageRecord] = field(default_factory=list)
    skipped_images: list[dict[str, Any]] = field(default_factory=list)  # [{"path", "reason"}]
    methods: dict[str, MethodRecord] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Any, label: str = "manifest.json") -> Manifest:
        """A Manifest from parsed JSON; ManifestError (naming `label` and the field) when its
        shape or types are wrong."""
        read = _Reader(label)
        raw = read.mapping(raw, "")
        info = read.mapping(raw.get("class"), "class")
        class_id = read.text(info.get("id"), "class.id")
        record = ClassRecord(id=class_id, name=read.text(info.get("name"), "class.name", class_id),
                             index=read.integer(info.get("index"), "class.index", optional=True),
                             slug=read.text(info.get("slug"), "class.slug", class_id))
        images = []
        for i, image in enumerate(read.items(raw.get("images", []), "images")):
            image = read.mapping(image, f"images[{i}]")
            images.append(ImageRecord(index=read.integer(image.get("index"), f"images[{i}].index"),
                                      name=read.text(image.get("name"), f"images[{i}].name", ""),
                                      thumb=read.text(image.get("thumb"), f"images[{i}].thumb")))
        skipped = [dict(read.mapping(s, f"skipped_images[{i}]"))
                   for i, s in enumerate(read.items(raw.get("skipped_images", []), "skipped_images"))]
        methods = {read.text(name, "methods"): MethodRecord.parse(read, value, f"methods.{name}", layout_of(name))
                   for name, value in read.mapping(raw.get("methods", {}), "methods").items()}
        return cls(class_=record, schema=read.integer(raw.get("schema"), "schema", 0),
                   model=dict(read.mapping(raw.get("model", {}), "model")), images=images,
                   skipped_images=skipped, methods=methods)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """The manifest at `path`; ManifestError when it is missing, unreadable, not JSON or
        of the wrong shape (one line, naming the file)."""
        path = Path(path)
        label = f"{path.parent.name}/{path.name}"
        try:
            if not path.is_file():
                raise ManifestError(f"{label}: not a regular file")
            if path.stat().st_size > MAX_BYTES:
                raise ManifestError(f"{label}: larger than {MAX_BYTES // 2**20} MiB")
            raw = json.loads(safefs.read_regular(path, max_bytes=MAX_BYTES))  # swapped for a FIFO meanwhile: no hang
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ManifestError(f"{label}: cannot read manifest: {exc}") from None
        return cls.from_json(raw, label)

    def to_json(self) -> dict[str, Any]:
        c = self.class_
        return {"schema": self.schema, "class": {"id": c.id, "name": c.name, "index": c.index, "slug": c.slug},
                "model": self.model,
                "images": [{"index": i.index, "name": i.name, "thumb": i.thumb} for i in self.images],
                "skipped_images": self.skipped_images,
                "methods": {name: record.to_json(layout_of(name)) for name, record in self.methods.items()}}

    @property
    def files(self) -> set[str]:
        """Every file the manifest refers to, relative to the class folder."""
        return {image.thumb for image in self.images} | {p for r in self.methods.values() for p in r.files}


def warn_line(message: str) -> None:
    """The default `warn`: one line on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def class_manifests(output: Path, warn: Callable[[str], None] | None = None) -> list[tuple[Path, Manifest]]:
    """Every usable class manifest under output/classes with its class folder, by folder name;
    each unusable one is one `warn` line (default: stderr) and is left out."""
    found = []
    for path in sorted((Path(output) / "classes").glob("*/manifest.json")):
        try:
            found.append((path.parent, Manifest.read(path)))
        except ManifestError as error:
            (warn or warn_line)(f"{error} (class left out; `atlas build` rewrites it)")
    return found
