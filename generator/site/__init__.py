"""The atlas website: a Jinja2 render of the build's manifests into static HTML.

`render` writes the pages; `views` turns manifests into what the templates read,
`imagesize` reads thumbnail sizes, `writer` puts pages on disk, `server` is `atlas serve`,
`claims` measures the paper's claims.

The site is made from `classes/*/manifest.json` (+ the optional `claims.json` and
`inversion.json`) alone, so `atlas render` takes seconds and never touches a model or an image
(thumbnails are made by the build). Every link is relative, so the folder works from file:// and
on any static host, and nothing is fetched from the network. Manifest strings go through Jinja2's
autoescape; manifest paths go through `_asset_path`, which refuses absolute paths and `..`.

What it knows about a method (title, summary, how its pictures are arranged) it reads from the
method registry (`generator.methods.REGISTRY`); what a run produced (which levels, which
variants) it reads from the manifest (`generator.manifest`). A manifest of the wrong shape is
one warning line and its class is left out; the rest of the site is rendered.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

from jinja2 import Environment, FileSystemLoader, select_autoescape

from generator import store
from generator.errors import SiteError
from generator.manifest import Manifest, class_manifests
from generator.methods import METHODS, REGISTRY
from generator.nets.families import FAMILY_ROLES, LEVEL_WORDS, has_fc6, in_words, model_family, words_key
from generator.site.server import make_server, serve
from generator.site.views import ClassPage, _claims_view, _inversion_view, _pages, format_number, grid_lines, label, load_classes, pairs
from generator.site.writer import PageWriter

__all__ = ["ClassPage", "PageWriter", "load_classes", "make_server", "render", "serve", "templates_dir"]


def templates_dir() -> Path:
    """The templates folder: `generator/templates` when installed as package data, else the
    repository's `templates/` next to `generator/` (editable install or a clean clone)."""
    package = Path(__file__).resolve().parents[1]  # generator/
    for candidate in (package / "templates", package.parent / "templates"):
        if (candidate / "base.html").is_file():
            return candidate
    raise SiteError(f"templates not found next to {package} (looked for templates/base.html)")


def environment(templates: Path | None = None) -> Environment:
    env = Environment(loader=FileSystemLoader(str(templates or templates_dir())),
                      autoescape=select_autoescape(["html", "xml"], default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = format_number
    env.filters["label"] = label
    env.filters["pairs"] = pairs
    env.globals["REGISTRY"] = REGISTRY
    env.globals["grid_lines"] = grid_lines
    return env


def _measure(output: Path, manifests: list[Manifest], warn: Callable[[str], None] | None = None
             ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Claims and the inversion table, measured from the manifests (and the planted truth the
    build copied into `output`, if any: one that cannot be used is a `warn` line, and the
    claims fall back to their proxies) and written beside them as JSON for reuse."""
    from generator.manifest import warn_line
    from generator.site.claims import TruthError, claims_of, inversion_table_of, load_truth
    from generator.store import write_json

    try:
        truth = load_truth(output / "truth.json")
    except TruthError as error:
        (warn or warn_line)(f"{error} (the claims page uses its proxies instead)")
        truth = None
    claims = claims_of(manifests, truth)
    inversion = inversion_table_of(manifests)
    write_json(claims, output / "claims.json", root=output)
    write_json(inversion, output / "inversion.json", root=output)
    measured = any(claim["value"] is not None for claim in claims["claims"])
    return (claims if measured else None), (inversion if inversion["rows"] else None)


INDEX_PAGE = 60  # cards on one page of the index (fills rows of 2 to 6 columns); the rest come from INDEX_SCRIPT
INDEX_SCRIPT = "class-index.js"
INDEX_FIELDS = ("slug", "id", "name", "index", "src", "width", "height", "alt", "stats")


def index_script(classes: list[ClassPage]) -> str:
    """Every class's card as compact rows for the index's search, sort and pages.

    A script, not a JSON file: pages opened from file:// may run scripts but not fetch()."""
    rows = []
    for c in classes:
        card = [c.card.src, c.card.width, c.card.height, c.card.alt] if c.card else [None] * 4
        rows.append([c.slug, c.id, c.name, c.index, *card, {s.key: [s.text, s.title, s.value] for s in c.stats}])
    data = json.dumps({"page": INDEX_PAGE, "fields": INDEX_FIELDS, "rows": rows}, separators=(",", ":"), allow_nan=False)
    return "window.ATLAS_INDEX = " + data.replace("<", "\\u003c") + ";\n"


@contextlib.contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Every manifest and page model of a render lives until it ends, so the cyclic collector's
    full passes over them find nothing: at 1000 classes they were 2.6 s of 12 s CPU. Peak
    memory is the same either way (208 MB)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_without_cycle_collection()
def render(output: Path, templates: Path | None = None, warn: Callable[[str], None] | None = None) -> Path:
    """Write index.html, methods.html, claims.html, classes/<slug>/index.html and static/ into
    `output` from its manifests; returns the path of index.html. A manifest that cannot be
    used is one `warn` line (default: stderr) and its class is left out."""
    output = Path(output)
    templates = templates or templates_dir()
    manifests = class_manifests(output, warn)
    if not manifests:
        raise SiteError(f"no classes/*/manifest.json that can be read under {output}: run `atlas build` first")
    classes = _pages(manifests)
    env = environment(templates)
    store.copy_tree(templates / "static", output / "static", root=output)
    claims, inversion = _measure(output, [manifest for _, manifest in manifests], warn)
    model = classes[0].model
    common = {"classes": classes, "stats": [declared for spec in METHODS for declared in spec.stats],
              "model": model, "families": FAMILY_ROLES, "family": model_family(model.get("name")),
              "fc6": has_fc6(model), "words_key": words_key(model), "words": LEVEL_WORDS[words_key(model)]}
    units_manifest, unit_links = _units(output, warn)
    common["has_units"] = units_manifest is not None

    script = index_script(classes)
    store.write_if_changed(output / INDEX_SCRIPT, script.encode("utf-8"), root=output)
    version = hashlib.sha256(script.encode()).hexdigest()[:12]  # a new list is never read from a stale cache
    names = {c.slug: c.name for c in classes} | {c.id: c.name for c in classes}
    with PageWriter(root=output) as pages:

        def write(path: Path, template: str, root: str, **context: Any) -> None:
            html = env.get_template(template).render(root=root, **common, **context)
            pages.write(path, html.encode("utf-8", "replace"))  # "replace": a non-UTF-8 file name

        write(output / "index.html", "index.html", "", page="index", page_size=INDEX_PAGE,
              index_script=f"{INDEX_SCRIPT}?v={version}")
        write(output / "methods.html", "methods.html", "", page="methods",
              methods=[replace(spec, title=in_words(spec.title, common["words_key"]), summary=in_words(spec.summary, common["words_key"]))
                       for spec in METHODS])
        write(output / "claims.html", "claims.html", "", page="claims",
              claims=_claims_view(claims, names), inversion=_inversion_view(inversion))
        for page in classes:
            write(output / "classes" / page.slug / "index.html", "class.html", "../../", page="class", cls=page,
                  unit_links=unit_links.get(page.slug, []))
        if units_manifest is not None:
            from generator.units import pages as units_site

            units_site.render_units(output, env, common, units_manifest, pages.write)
    return output / "index.html"


def _units(output: Path, warn: Callable[[str], None] | None = None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The unit atlas's manifest (None without one, or one that cannot be used: a `warn` line)
    and, per class slug, the units that matter for it."""
    from generator.units import pages as units_site

    manifest = units_site.load(output, warn)
    return manifest, units_site.class_links(manifest)
