"""The real thing end to end: build the demo atlas (tiny schedule), render it, check the pages.

The fake atlas in test_site.py pins the layout; this one proves the build's real manifests
render into self-contained, escaped, valid pages — including a hostile class name that came
in through the catalog.
"""
from __future__ import annotations

import dataclasses
import json
from html import escape
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from generator import site
from generator.build import build
from generator.catalog import load_catalog
from generator.methods import METHOD_NAMES, METHODS

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def demo_atlas(demo_world, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("demo-atlas")
    catalog = load_catalog(Path(demo_world.catalog_path), {"output": str(output)})
    catalog.engine["iterations"] = 4
    catalog.units = dataclasses.replace(catalog.units, iterations=2, per_class=2, top_k=3)  # the unit atlas too, cheaply
    catalog.classes = catalog.classes[:3]
    catalog.classes[0].name = HOSTILE
    for entry in catalog.classes:
        for method in ("inversion", "preimages", "caricatures"):
            entry.methods[method]["iterations"] = 4
    report = build(catalog, progress=False)
    assert report.ok, report.summary()
    site.render(output)
    return output


def test_every_method_of_every_class_is_on_its_page(demo_atlas):
    methods_page = (demo_atlas / "methods.html").read_text()
    for spec in METHODS:
        assert f'<h2 id="{spec.name}-title">{escape(spec.title.split(" (")[0])}' in methods_page
    for manifest_path in (demo_atlas / "classes").glob("*/manifest.json"):
        manifest = json.loads(manifest_path.read_text())
        html = (manifest_path.parent / "index.html").read_text()
        assert set(manifest["methods"]) == set(METHOD_NAMES)  # the paper's six and the diagnostics
        for method, record in manifest["methods"].items():
            assert f'id="{method}"' in html
            for picture in record["pictures"]:
                assert picture["file"] in html or picture.get("thumb", "") in html, picture["file"]


def test_pages_parse_links_resolve_images_have_alt(pages, parse, demo_atlas):
    for path in pages(demo_atlas):
        checker = parse(path)
        assert checker.errors == [] and checker.stack == [], (path, checker.errors, checker.stack)
        for link in checker.links:
            parts = urlsplit(link)
            assert not parts.scheme and not parts.netloc and not link.startswith("/"), (path, link)
            if parts.path:
                assert (path.parent / unquote(parts.path)).exists(), (path, link)
        for image in checker.images:
            assert (image.get("alt") or "").strip(), (path, image.get("src"))


def test_hostile_catalog_name_is_text_and_no_absolute_paths(pages, parse, demo_atlas, demo_world):
    for path in pages(demo_atlas):
        raw = path.read_text()
        assert "<script>alert" not in raw, path
        assert str(demo_atlas) not in raw and "http://" not in raw and "https://" not in raw, path
        assert str(demo_world.root) not in raw, f"{path} publishes a local path of the model"
    assert HOSTILE in "".join(parse(demo_atlas / "index.html").text)


def test_claims_page_scores_the_planted_truth(demo_atlas):
    claims = {c["id"]: c for c in json.loads((demo_atlas / "claims.json").read_text())["claims"]}
    # the build copied the demo's truth, so the style and layout claims are measured, not proxies
    assert claims["topics-styles"]["value"] is not None and claims["location-layout"]["value"] is not None
    assert "topics-styles" in (demo_atlas / "claims.html").read_text()


def spellings(path: str) -> list[str]:
    """Request paths that name `path` (a dotfile's, relative to the site) as a crafty client
    would: literal, slashes as %2f (also after a detour through ..), the dots as %2e, encoded
    twice, backslashes."""
    parts = path.split("/")
    dots = "/".join(("%2e" + p[1:] if p.startswith(".") else p) for p in parts)
    return ["/" + path, "/" + path.replace("/", "%2f"), "/" + path.replace("/", "%2F"),
            "/classes%2f..%2f" + path.replace("/", "%2f"), "/classes/x%2f..%2f..%2f" + path.replace("/", "%2f"),
            "/" + dots, "/" + dots.replace("%2e", "%2E"), "/" + dots.replace("%2e", "%252e"),
            "/" + path.replace("/", "%252f"), "/" + path.replace("/", "\\"), "/classes\\..\\" + path.replace("/", "\\"),
            "/" + path.replace(".", "%2e"), "/./" + path]


def test_serve_answers_404_for_every_dotfile_however_the_request_spells_it(demo_atlas, tmp_path):
    import http.client
    import threading

    hidden = sorted(p.relative_to(demo_atlas).as_posix() for p in demo_atlas.rglob("*")
                    if any(part.startswith(".") for part in p.relative_to(demo_atlas).parts))
    assert ".atlas-output" in hidden and ".atlas-cache/digests.json" in hidden
    assert any(path.endswith("/.atlas-files") for path in hidden)
    (tmp_path / "private.txt").write_text("not the site's")
    (demo_atlas / "elsewhere.txt").symlink_to(tmp_path / "private.txt")  # a link out of the site is not served either
    server = site.make_server(demo_atlas, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def status(path: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        finally:
            connection.close()

    try:
        assert status("/index.html") == 200 and status("/elsewhere.txt") == 404
        served = {(path, spelled): status(spelled) for path in hidden for spelled in spellings(path)}
        assert [key for key, code in served.items() if code != 404] == []
    finally:
        server.shutdown()
        server.server_close()
        (demo_atlas / "elsewhere.txt").unlink()
