"""The unit atlas's pages, from `units/manifest.json` alone (no image is opened: the build
records every size): `units/index.html` (the layers and the conv1 filters), one index per layer
sorted by class selectivity (`units/<layer>/index.html`) and one page per unit
(`units/<layer>/<index>.html`, stable URLs with previous/next in the layer's unit order).

Pages whose HTML did not change are not rewritten, so `atlas render` of an atlas with hundreds
of unit pages costs the templating, not hundreds of fsyncs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from generator import safefs
from generator.units import FOLDER, SELECTIVITY, read_manifest

LAYER_TITLES = {"pool5": "pool5 channels", "fc6": "fc6 units", "fc7": "fc7 units"}


def _safe(value: Any) -> str | None:
    """A manifest path fit for an href under units/: relative, no `..`, URL-quoted (as site.py's)."""
    if not isinstance(value, str) or not value or "\\" in value or value.startswith("/"):
        return None
    parts = value.split("/")
    if ":" in parts[0] or any(part in ("", ".", "..") for part in parts):
        return None
    return quote(value)


@dataclass
class UnitLink:
    layer: str
    index: int
    href: str  # relative to the site root
    selectivity: float


def load(output: Path, warn: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The units manifest with its paths checked, or None when there is none or it cannot be
    used (its shape, a layer name that is not a safe file name: one `warn` line)."""
    from generator.manifest import warn_line

    manifest = read_manifest(output, warn or warn_line)
    if manifest is None:
        return None
    for layer in manifest["layers"].values():
        units = [u for u in layer.get("units", []) if isinstance(u, dict) and isinstance(u.get("index"), int)]
        for unit in units:
            for item in [*unit.get("patches", []), *unit.get("pictures", [])]:  # as seen from units/<layer>/
                src, href = _safe(item.get("thumb") or item.get("file")), _safe(item.get("file"))
                icon = _safe(item.get("icon") or item.get("thumb") or item.get("file"))
                item["src"], item["href"], item["icon_src"] = src and f"../{src}", href and f"../{href}", icon and f"../{icon}"
        layer["units"] = units
    return manifest


def class_links(manifest: dict[str, Any] | None) -> dict[str, list[UnitLink]]:
    """class slug -> the units that matter for it (its pool5 channels and fc units with pages)."""
    if not manifest:
        return {}
    pages = {(name, u["index"]): u for name, layer in manifest["layers"].items() for u in layer["units"]}
    links: dict[str, list[UnitLink]] = {}
    for entry in manifest.get("classes", []):
        found = []
        for layer, indices in (entry.get("units") or {}).items():
            for index in indices:
                unit = pages.get((layer, index))
                if unit is not None:
                    found.append(UnitLink(layer, index, f"{FOLDER}/{layer}/{index}.html", unit["selectivity"]))
        links[str(entry.get("slug"))] = found
    return links


def render_units(output: Path, env: Any, common: dict[str, Any], manifest: dict[str, Any],
                 save: Callable[[Path, bytes], None]) -> None:
    """Render the unit pages and hand each to `save` (site.PageWriter.write: on threads)."""
    base = Path(output) / FOLDER

    def write(path: Path, template: str, root: str, **context: Any) -> None:
        save(path, env.get_template(template).render(root=root, **common, **context).encode("utf-8", "replace"))

    names = {c.get("slug"): c.get("name") for c in manifest.get("classes", [])}
    layers = [(name, LAYER_TITLES.get(name, name), layer) for name, layer in manifest["layers"].items() if layer["units"]]
    conv1 = manifest.get("conv1")
    conv1 = dict(conv1, src=_safe(conv1.get("file"))) if isinstance(conv1, dict) else None
    write(base / "index.html", "units.html", "../", page="units", layers=layers, absent=manifest.get("absent", {}),
          conv1=conv1, selectivity=SELECTIVITY, manifest=manifest)
    for name, title, layer in layers:
        units = layer["units"]
        safefs.check_name(name, "units/manifest.json: layer name")  # it becomes a folder (load checked it too)
        write(base / name / "index.html", "unit_index.html", "../../", page="units", layer=name, title=title,
              units=units, total=layer.get("count"), names=names, selectivity=SELECTIVITY)
        for i, unit in enumerate(units):
            write(base / name / f"{unit['index']}.html", "unit.html", "../../", page="units", layer=name, title=title,
                  unit=unit, prev=units[i - 1] if i else None, next=units[i + 1] if i + 1 < len(units) else None,
                  rank=i + 1, count=len(units), names=names, selectivity=SELECTIVITY)

