"""The unit atlas's declared part: its catalog section, its artifact key and its manifest.

The unit atlas gives single units a page each: every pool5 channel and the fc6/fc7
units that matter most for each catalog class, with their top dataset patches, their
visualization through the engine and, for pool5, Xia et al.'s per-filter texture. Unlike the
methods it looks across all classes at once, so it is one build step of its own, keyed like a
method (`UnitsInputs`) and recorded in `units/manifest.json`. This module is torch-free (the
catalog validates `units:` with it); the work is in `units_run.py`, the pages in `units_site.py`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from generator import safefs, store
from generator.manifest import MAX_BYTES, ManifestError, _Reader, bounded_int
from generator.methods import param

VERSION = 2  # bump when the unit step's output changes
FOLDER = "units"  # <output>/units/: manifest.json, <layer>/<index>.html, <layer>/img/
MANIFEST = "manifest.json"
LAYERS = ("pool5", "fc6", "fc7")
SELECTIVITY = ("class selectivity = (a_top - a_rest) / (|a_top| + |a_rest|), where a_top is the unit's mean "
               "activation over the images of the class it responds to most and a_rest its mean over the other "
               "classes' means (pool5: each image's maximum over positions); 0: responds alike to every class, "
               "1: to one class only")


@dataclass(frozen=True)
class UnitsParams:
    """The catalog's `units:` section."""

    enabled: bool = param(True, help="build the unit atlas")
    pool5: bool = param(True, help="a page for every pool5 channel")
    per_class: int = param(8, at_least=0, at_most=1000, help="fc6/fc7 units per class (by the class's mean "
                                                               "activation above the other classes'); 0: none")
    top_k: int = param(9, at_least=1, at_most=64, help="dataset patches per unit")
    # The visualizations go through the engine's decorrelated Fourier parameterization and Lucid's
    # transforms (pad, scale and rotation from `engine:`) from a smooth random start: on alexnet-slim
    # (16 pool5 + 4 fc7 units) raw pixels made static (share of power above 0.25 cycles/px 0.61-0.74,
    # photos 0.03); these settings make pictures a person can read (0.01-0.03) that still drive most
    # units past their best photo, in 12 steps, which cost about what 16 raw-pixel steps did (each
    # Fourier step with transforms costs ~1.3x). docs/tuning.md#unit-visualizations has the A/B.
    iterations: int = param(12, at_least=1, at_most=100_000, help="optimizer steps of each unit visualization")
    lr: float = param(0.1, above=0, help="learning rate of the unit visualizations")
    parameterization: Literal["fourier", "colour", "pixels"] = param(
        "fourier", help="parameterization of the unit visualizations (pixels: raw pixels, no pad, scale or rotation)")
    jitter: int = param(4, at_least=0, at_most=64, help="random shift per step (pixels) of the unit visualizations")
    start_std: float = param(0.13, at_least=0, at_most=1, help="std of the visualizations' smooth random start: "
                             "Gaussian coefficients in the Fourier parameterization (about its pixels' std); 0: grey")
    init_std: float = param(0.05, at_least=0, help="std of the white noise added to the visualizations' start (it wakes "
                            "units that are exactly 0 on a smooth image)")
    # Textures (Xia et al.) match the kept channel's map of the top image: in the one-channel code the
    # zeroed channels dominate (on alexnet-slim the top image itself is 11.6x its norm away from it), so
    # only the kept channel is matched (before its ReLU where the map is active, so a silent channel
    # still gets a gradient), with M&V's pre-image regularizers in the Fourier parameterization from the
    # visualizations' smooth start: error 0.21 against grey's 1.0 (the old raw pixels from noise: 0.98,
    # static). docs/units.md has the A/B.
    texture_iterations: int = param(32, at_least=1, at_most=100_000, help="optimizer steps of each per-filter texture")
    texture_lr: float = param(0.05, above=0, help="learning rate of the per-filter textures")
    texture_start_std: float = param(0.13, at_least=0, at_most=1, help="std of the textures' smooth random start "
                                     "(as start_std); 0: grey")
    texture_init_std: float = param(0.05, at_least=0, help="std of the white noise added to the textures' start")
    prior: bool = param(True, help="also visualize each unit with a patch prior from its top images")
    textures: bool = param(True, help="Xia et al.'s per-filter texture for each pool5 channel")
    batch: int = param(64, at_least=1, at_most=4096, help="problems per solve call (memory: ~6 MB each at 224 px)")


@dataclass(frozen=True)
class UnitsInputs:
    """What the unit step's output depends on, one digest per input (so --dry-run names it)."""

    params: str
    version: int
    model: str
    classes: str  # every class entry and its image listing, in catalog order
    seed: int
    engine: str
    prior: str  # the catalog's `prior:` (the prior variant's databases use its patch size etc.)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        return store.digest(self.as_dict())

    def changed(self, recorded: dict[str, Any] | None) -> list[str]:
        now = self.as_dict()
        return [name for name, value in now.items() if not recorded or recorded.get(name) != value]


@dataclass
class UnitsPlan:
    inputs: UnitsInputs
    reasons: list[str]  # empty: fresh
    manifest: dict[str, Any] | None  # the one on disk

    @property
    def key(self) -> str:
        return self.inputs.key()


def folder(output: Path) -> Path:
    return Path(output) / FOLDER


def read_manifest(output: Path, warn: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """`units/manifest.json`, or None when it is missing or cannot be used (not a regular file,
    not JSON, of another shape, a layer name that is not a safe file name): then `warn` hears why."""
    try:
        raw = json.loads(safefs.read_regular(folder(output) / MANIFEST, max_bytes=MAX_BYTES))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:  # a FIFO, a folder, not JSON, not UTF-8
        problem = f"{FOLDER}/{MANIFEST}: cannot read: {exc}"
    else:
        try:
            return check_manifest(raw, _Reader(f"{FOLDER}/{MANIFEST}"))
        except ManifestError as exc:
            problem = str(exc)
    if warn is not None:
        warn(f"{problem} (unit pages left out; `atlas build` rewrites it)")
    return None


def check_manifest(raw: Any, read: _Reader) -> dict[str, Any]:
    """`raw` when it has the shape the unit pages and `atlas clean` read (every layer name a
    safe file name: it becomes a folder); else ManifestError naming the field."""
    raw = read.mapping(raw, "")
    read.text(raw.get("key"), "key")
    read.mapping(raw.get("inputs", {}), "inputs")
    read.mapping(raw.get("absent", {}), "absent")
    for name, why in raw.get("absent", {}).items():
        read.text(why, f"absent.{name}")
    if raw.get("conv1") is not None:
        _check_file(read, read.mapping(raw["conv1"], "conv1"), "conv1")
    for n, entry in enumerate(read.items(raw.get("classes", []), "classes")):
        where = f"classes[{n}]"
        entry = read.mapping(entry, where)
        for key in ("slug", "name", "id"):
            read.text(entry.get(key), f"{where}.{key}", "")
        for level, indices in read.mapping(entry.get("units", {}), f"{where}.units").items():
            for m, index in enumerate(read.items(indices, f"{where}.units.{level}")):
                read.integer(index, f"{where}.units.{level}[{m}]")
    for name, layer in read.mapping(raw.get("layers"), "layers").items():
        if not safefs.is_safe_name(name) or "." in name:  # it becomes units/<name>/: no "..", "/", "index.html"
            raise read.fail("layers", f"layer name {name[:60]!r} is not a safe folder name (letters, digits, _ - only)")
        layer = read.mapping(layer, f"layers.{name}")
        read.integer(layer.get("count"), f"layers.{name}.count")
        for n, unit in enumerate(read.items(layer.get("units", []), f"layers.{name}.units")):
            _check_unit(read, read.mapping(unit, f"layers.{name}.units[{n}]"), f"layers.{name}.units[{n}]")
    return raw


def _check_unit(read: _Reader, unit: dict[str, Any], where: str) -> None:
    if bounded_int(unit.get("index"), 0, 10**7) is None:
        raise read.fail(f"{where}.index", "expected an integer from 0 to 10^7")
    selectivity = unit.get("selectivity")
    if not isinstance(selectivity, (int, float)) or isinstance(selectivity, bool):
        raise read.fail(f"{where}.selectivity", "expected a number")
    read.text(unit.get("top_class"), f"{where}.top_class", "")
    for n, value in enumerate(read.items(unit.get("class_means", []), f"{where}.class_means")):
        read.number(value, f"{where}.class_means[{n}]", 0.0)
    for n, slug in enumerate(read.items(unit.get("for_classes", []), f"{where}.for_classes")):
        read.text(slug, f"{where}.for_classes[{n}]")
    for n, patch in enumerate(read.items(unit.get("patches", []), f"{where}.patches")):
        at = f"{where}.patches[{n}]"
        patch = read.mapping(patch, at)
        if bounded_int(patch.get("rank"), 0, 10**6) is None:
            raise read.fail(f"{at}.rank", "expected a small integer")
        for key in ("class", "name"):
            read.text(patch.get(key), f"{at}.{key}", "")
        read.number(patch.get("activation"), f"{at}.activation", 0.0)
        for key, length in (("box", 4), ("position", 2)):
            if patch.get(key) is not None and not (isinstance(patch[key], list) and len(patch[key]) == length and all(
                    bounded_int(v, 0, 10**6) is not None for v in patch[key])):
                raise read.fail(f"{at}.{key}", f"expected {length} small integers")
        _check_file(read, patch, at)
    for n, picture in enumerate(read.items(unit.get("pictures", []), f"{where}.pictures")):
        at = f"{where}.pictures[{n}]"
        picture = read.mapping(picture, at)
        for key in ("key", "title", "caption", "alt"):
            read.text(picture.get(key), f"{at}.{key}", "")
        for key in ("thumb_width", "thumb_height"):
            read.integer(picture.get(key), f"{at}.{key}", optional=True)
        read.mapping(picture.get("numbers", {}), f"{at}.numbers")
        _check_file(read, picture, at)


def _check_file(read: _Reader, item: dict[str, Any], where: str) -> None:
    """The file names (relative to units/) and pixel sizes of a patch, picture or conv1 grid."""
    for key in ("file", "thumb", "icon"):
        if item.get(key) is not None:
            read.text(item[key], f"{where}.{key}")
    for key in ("width", "height"):
        read.integer(item.get(key), f"{where}.{key}", optional=True)


def manifest_files(manifest: dict[str, Any] | None) -> list[str]:
    """Every file (relative to units/) a units manifest points at."""
    if not manifest:
        return []
    files = []
    for layer in manifest.get("layers", {}).values():
        for unit in layer.get("units", []) if isinstance(layer, dict) else []:
            for item in [*unit.get("patches", []), *unit.get("pictures", [])]:
                files += [item[name] for name in ("file", "thumb", "icon") if isinstance(item.get(name), str)]
    conv1 = manifest.get("conv1")
    if isinstance(conv1, dict) and isinstance(conv1.get("file"), str):
        files.append(conv1["file"])
    return files


def plan(params: UnitsParams, *, model: str, classes: list[dict[str, Any]], seed: int, engine: str,
         prior: str, output: Path, force: bool) -> UnitsPlan:
    """Fresh when the recorded key matches and every file it names is there (stats only)."""
    options = {k: v for k, v in dataclasses.asdict(params).items() if k != "enabled"}
    inputs = UnitsInputs(params=store.digest(options), version=VERSION, model=model,
                         classes=store.digest(classes), seed=seed, engine=engine, prior=prior)
    manifest = read_manifest(output)
    if force:
        reasons = ["forced (--force)"]
    elif manifest is None:
        reasons = ["not built yet"]
    elif manifest["key"] != inputs.key():
        reasons = [f"{name} changed" for name in inputs.changed(manifest.get("inputs"))] or ["key changed"]
    else:
        base = folder(output)
        missing = [f for f in manifest_files(manifest) if not (base / f).is_file()]
        reasons = [f"missing files ({missing[0]}{', ...' if len(missing) > 1 else ''})"] if missing else []
    return UnitsPlan(inputs=inputs, reasons=reasons, manifest=manifest)
