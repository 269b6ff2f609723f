"""The typed manifest: the build's records round-trip, a manifest of the wrong shape is one clear
error, and render survives hostile manifests and thumbnails (FIFO, decompression bomb, a
window size of 3e8) with a warning line or a clean SiteError, never a traceback."""
from __future__ import annotations

import copy
import json
import os
import struct
import threading
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator import site
from generator.manifest import Manifest, ManifestError


@pytest.fixture
def atlas(tmp_path: Path, write_fake_atlas) -> Path:
    write_fake_atlas(tmp_path, n_classes=2, hostile=False, n_images=3)
    return tmp_path


def manifest_path(atlas: Path, index: int = 0) -> Path:
    return atlas / "classes" / f"n{index:08d}" / "manifest.json"


def test_the_fixture_manifests_round_trip(atlas):
    raw = json.loads(manifest_path(atlas).read_text())
    manifest = Manifest.read(manifest_path(atlas))
    assert manifest.to_json() == raw
    assert manifest.methods["location"].picture("window-r1-c1").meta.row == 1
    assert "images/000.jpg" in manifest.files and "classviz/prior.png" in manifest.files


@pytest.mark.parametrize("mutate, where", [
    (lambda m: [], "top level: expected a mapping, got a list"),
    (lambda m: None, "top level: expected a mapping, got null"),
    (lambda m: {**m, "class": "tench"}, "class: expected a mapping, got a string"),
    (lambda m: {**m, "methods": []}, "methods: expected a mapping, got a list"),
    (lambda m: {**m, "images": [{"index": "0", "thumb": "x.jpg"}]}, "images[0].index: expected an integer"),
    (lambda m: {**m, "methods": {**m["methods"], "topics": {**m["methods"]["topics"], "pictures": {}}}},
     "methods.topics.pictures: expected a list"),
    (lambda m: {**m, "methods": {**m["methods"], "location": {**m["methods"]["location"], "pictures": [
        {**m["methods"]["location"]["pictures"][0], "meta": [1, 2]}]}}},
     "methods.location.pictures[0].meta: expected a mapping, got a list"),
    (lambda m: {**m, "methods": {"classviz": {"pictures": [{"key": "prior", "file": 7}]}}},
     "methods.classviz.pictures[0].file: expected a string, got an integer"),
])
def test_a_manifest_of_the_wrong_shape_is_one_error_naming_the_field(atlas, mutate, where):
    raw = json.loads(manifest_path(atlas).read_text())
    with pytest.raises(ManifestError) as info:
        Manifest.from_json(mutate(copy.deepcopy(raw)), "n00000000/manifest.json")
    assert str(info.value) == f"n00000000/manifest.json: {where}" or str(info.value).startswith(
        f"n00000000/manifest.json: {where}"), str(info.value)


@pytest.mark.parametrize("content", ["[]", "null", '"text"', '{"class": 3}', "{not json", ""])
def test_render_warns_once_about_a_bad_manifest_and_renders_the_rest(atlas, content):
    manifest_path(atlas, 1).write_text(content)
    warnings: list[str] = []
    site.render(atlas, warn=warnings.append)
    assert len(warnings) == 1 and "n00000001/manifest.json" in warnings[0] and "\n" not in warnings[0]
    assert (atlas / "classes" / "n00000000" / "index.html").is_file()
    assert "n00000001" not in (atlas / "index.html").read_text()


def test_render_with_only_bad_manifests_is_a_site_error(atlas):
    for index in (0, 1):
        manifest_path(atlas, index).write_text("[]")
    with pytest.raises(site.SiteError, match="that can be read"):
        site.render(atlas, warn=lambda _: None)


def test_cli_render_says_one_warning_line_for_a_bad_manifest(atlas):
    from typer.testing import CliRunner

    from generator.cli import app

    manifest_path(atlas, 1).write_text("null")
    result = CliRunner().invoke(app, ["render", "--output", str(atlas)])
    assert result.exit_code == 0, result.output
    assert result.output.count("warning:") == 1 and "Traceback" not in result.output


def _render_within(atlas: Path, seconds: float = 120) -> None:
    """Render in a thread so that a hang (a FIFO read) fails the test instead of the session."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            site.render(atlas, warn=lambda _: None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "render blocked"
    assert not errors, errors


def test_a_thumbnail_that_is_a_fifo_does_not_block_render(atlas):
    thumb = atlas / "classes" / "n00000000" / "images" / "000.jpg"
    thumb.unlink()
    os.mkfifo(thumb)
    try:
        _render_within(atlas)
    finally:
        thumb.unlink()  # nothing must be left that blocks a later reader
    assert (atlas / "classes" / "n00000000" / "index.html").is_file()


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming width x height pixels: what Image.open reads first."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def test_a_decompression_bomb_thumbnail_does_not_raise(atlas):
    folder = atlas / "classes" / "n00000000"
    (folder / "images" / "001.jpg").write_bytes(_png_header(100_000, 100_000))
    (folder / "classviz" / "prior.thumb.jpg").write_bytes(_png_header(20_000, 20_000))
    _render_within(atlas)
    html = (folder / "index.html").read_text()
    assert "classviz/prior.thumb.jpg" in html  # still shown, without trusting its size


def test_a_huge_location_window_is_left_out_quickly(atlas):
    path = manifest_path(atlas)
    raw = json.loads(path.read_text())
    first, second = raw["methods"]["location"]["pictures"][:2]  # as a hand-edited manifest
    first["meta"].update(size=300_000_000)
    second["meta"].update(top=3e8)
    path.write_text(json.dumps(raw))
    _render_within(atlas, seconds=60)
    html = (path.parent / "index.html").read_text()
    assert html.count('class="pic cell"') == 7
    assert len(html) < 2_000_000


# ---------------------------------------------------------------------------------------------
# Random mutations of a valid manifest: render succeeds (maybe with a warning) or says SiteError


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**20, max_value=10**20) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _paths(value, prefix=()):
    """Every path to a value inside a JSON tree."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, prefix + (index,))


@pytest.fixture(scope="module")
def valid_atlas(tmp_path_factory, write_fake_atlas) -> tuple[Path, dict]:
    """A one-class fake atlas and its manifest as JSON (each example restores it)."""
    root = tmp_path_factory.mktemp("mutations")
    write_fake_atlas(root, n_classes=1, hostile=False, n_images=3)
    return root, json.loads(manifest_path(root).read_text())


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_mutations_of_a_manifest_render_or_fail_cleanly(valid_atlas, data):
    root, original = valid_atlas
    raw = copy.deepcopy(original)
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(list(_paths(raw))))
        value = data.draw(JSON_VALUES)
        if not where:
            raw = value
            continue
        node = raw
        for key in where[:-1]:
            node = node[key]
        if data.draw(st.booleans()) and isinstance(node, dict):
            node.pop(where[-1], None)
        else:
            node[where[-1]] = value
    path = manifest_path(root)
    path.write_text(json.dumps(raw))
    try:
        site.render(root, warn=lambda _: None)  # success, or the one clean error below
    except site.SiteError:
        pass
    finally:
        path.write_text(json.dumps(original))


def test_the_hierarchy_strip_follows_the_levels_the_run_recorded(atlas):
    """A model family without fc6 records fewer levels; the site shows what was recorded, in
    that order, after the input."""
    path = manifest_path(atlas)
    raw = json.loads(path.read_text())
    record = raw["methods"]["hierarchy"]
    record["pictures"] = [p for p in record["pictures"] if p["key"] != "image0-m6-7"]
    record["numbers"]["levels"] = ["m5-7", "m7"]  # recorded order wins over the registry's default
    path.write_text(json.dumps(raw))
    page = next(p for p in site.load_classes(atlas) if p.slug == "n00000000")
    strip = next(s for s in page.sections if s.name == "hierarchy").layout["rows"][0]
    assert strip["lead"].meta.step == "input"
    assert [(p.meta.step, title) for p, title in strip["steps"]] == [("m5-7", "Code m5-7"), ("m7", "Code m7")]
