"""The site renders a (fake, schema-exact) atlas into valid, self-contained, escaped HTML."""
from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from generator import site
from generator.site.imagesize import image_size


@pytest.fixture(scope="module")
def atlas(write_fake_atlas, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("atlas")
    write_fake_atlas(output, n_classes=4)
    site.render(output)
    return output


def test_render_writes_every_page(pages, atlas):
    for path in pages(atlas):
        assert path.is_file(), path
    assert len(list((atlas / "classes").glob("*/index.html"))) == 4
    assert (atlas / "static" / "atlas.css").is_file() and (atlas / "static" / "atlas.js").is_file()


def test_every_page_is_balanced_html(pages, parse, atlas):
    for path in pages(atlas):
        checker = parse(path)
        assert checker.errors == [], f"{path}: {checker.errors}"
        assert checker.stack == [], f"{path}: unclosed {checker.stack}"
        assert path.read_text().startswith("<!doctype html>")


def test_every_relative_link_and_image_resolves(pages, parse, atlas):
    for path in pages(atlas):
        checker = parse(path)
        for link in checker.links:
            parts = urlsplit(link)
            assert not parts.scheme and not parts.netloc, f"{path}: non-relative link {link!r}"
            assert not link.startswith("/"), f"{path}: absolute path {link!r}"
            if parts.path:
                target = (path.parent / unquote(parts.path)).resolve()
                assert target.exists(), f"{path}: broken link {link!r}"
                assert atlas.resolve() in target.parents or target == atlas.resolve()
            if parts.fragment and not parts.path:
                assert parts.fragment in checker.ids, f"{path}: no element with id {parts.fragment!r}"


def test_every_image_has_alt_text_and_size(pages, parse, atlas):
    for path in pages(atlas):
        for image in parse(path).images:
            assert (image.get("alt") or "").strip(), f"{path}: <img src={image.get('src')!r}> has no alt"
            assert image.get("width") and image.get("height"), f"{path}: {image.get('src')!r} has no size"
            assert image.get("loading") == "lazy"


def test_hostile_class_name_is_escaped(parse, hostile_name, atlas):
    for path in [atlas / "index.html", atlas / "classes" / "n00000000" / "index.html",
                 atlas / "classes" / "n00000001" / "index.html"]:
        raw = path.read_text()
        assert "<script>alert" not in raw, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw, path
        assert hostile_name in "".join(parse(path).text), path


def test_no_network_and_no_inline_script(pages, parse, atlas):
    for path in pages(atlas):
        raw = path.read_text()
        assert "http://" not in raw and "https://" not in raw, path
        assert str(atlas) not in raw, f"{path} leaks an absolute file path"
        assert parse(path).scripts_inline == [], path
    for asset in (atlas / "static").iterdir():
        text = asset.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, not a request
        assert "http://" not in text and "https://" not in text and "@import" not in text, asset


def test_class_page_lays_out_each_method(atlas):
    html = (atlas / "classes" / "n00000000" / "index.html").read_text()
    for section in ("classviz", "location", "topics", "ensemble", "hierarchy", "inversion"):
        assert f'id="{section}"' in html and f'href="#{section}"' in html
    # baseline before prior, side by side; the full PNG is offered where the picture shows large
    assert html.index("classviz/baseline") < html.index("classviz/prior")
    assert 'srcset="classviz/baseline.thumb.jpg 48w, classviz/baseline.png 64w"' in html
    # the location cell of window row 1, col 2 sits at grid row 2, column 3
    cell = html.index("location/window-r1-c2")
    assert "grid-row: 2; grid-column: 3" in html[html.rfind("<figure", 0, cell):cell]
    # topics show the class's own images they retrieved; the ensemble is a 2 x 2 table
    topic = html[html.index("topics/topic-0.png"):html.index("topics/topic-1.png")]
    assert topic.index("images/000.jpg") < topic.index('<span class="note">1</span>')
    assert topic.index("images/001.jpg") < topic.index('<span class="note">0.9</span>')
    start = html.index('class="grid-table"', html.index('id="ensemble"'))
    ensemble = html[start:html.index("</table>", start)]
    assert ensemble.count("<tr>") == 3 and ensemble.count("<figure") == 4
    member = ensemble[ensemble.index("ensemble/mask1-init0"):ensemble.index("ensemble/mask1-init1")]
    assert "Started from the blurred mean of" in member and "images/001.jpg" in member and "images/002.jpg" in member
    assert ensemble.count("Started from the blurred mean of") == 2  # once per member
    assert 'href="manifest.json"' in html and 'rel="next"' in html and 'rel="prev"' not in html
    # inversions: image 0 shows its own "original" picture, image 1 the class image's thumbnail
    inversion = html[html.index('id="inversion"'):]
    assert inversion.index("inversion/img0-original") < inversion.index("inversion/img0-rand")
    assert inversion.index("images/001.jpg") < inversion.index("inversion/img1-rand")
    # beside a picture, the class images that explain it, under the title its method declares
    baseline = html[html.index("classviz/baseline.png"):html.index("classviz/prior.png")]
    assert "Nearest class images (fc7)" in baseline
    assert baseline.index("images/002.jpg") < baseline.index("images/003.jpg") < baseline.index("images/004.jpg")
    cell = html[html.index("location/window-r1-c2"):html.index("location/window-r2-c0")]
    assert "Class images scoring highest through this window" in cell and "images/003.jpg" in cell
    # a diverged picture is flagged; list-valued numbers stay out of the headline, in the details
    location = html[html.index('id="location"'):html.index('id="topics"')]
    assert location.count("badge warn") == 1
    assert location.index("window-r1-c1, window-r0-c0") > location.index("<details")


def test_disabled_unknown_and_thumbless_methods(atlas):
    second = (atlas / "classes" / "n00000001" / "index.html").read_text()
    assert 'id="ensemble"' not in second  # disabled: no section, no broken pictures
    assert 'id="caricature"' in second and "caricature/fc7.thumb.jpg" in second  # unknown: generic
    assert 'id="completion"' in second
    last = (atlas / "classes" / "n00000003" / "index.html").read_text()
    assert 'src="classviz/prior.png"' in last  # no thumb: the full picture stands in
    index = (atlas / "index.html").read_text()
    assert 'src="classes/n00000000/classviz/prior.thumb.jpg"' in index


def test_claims_page_shows_claims_and_inversion(atlas):
    html = (atlas / "claims.html").read_text()
    # measured by render from the fake manifests: the prior's colour ratio 0.29 < 1, masks beat
    # inits (fc7 and pixels), hierarchy errors fall (pixels and fc7); prior prob 0.88 < 0.9 fails
    assert html.count('class="verdict yes"') == 5 and html.count('class="verdict no"') == 1
    assert "<svg" in html and "chart-threshold" in html
    assert "prior-colour" in html and "image error" in html.lower()
    claims = json.loads((atlas / "claims.json").read_text())
    assert {c["id"]: c["holds"] for c in claims["claims"]}["prior-prob"] is False


def test_site_without_claims(write_fake_atlas, tmp_path):
    write_fake_atlas(tmp_path, n_classes=1, claims=False)
    site.render(tmp_path)
    html = (tmp_path / "claims.html").read_text()
    assert "No claims have been measured" in html and "<svg" not in html


def test_unsafe_manifest_paths_are_dropped(write_fake_atlas, tmp_path):
    write_fake_atlas(tmp_path, n_classes=1, hostile=False)
    manifest_path = tmp_path / "classes" / "n00000000" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    pictures = manifest["methods"]["classviz"]["pictures"]
    pictures[0]["file"] = "/etc/passwd"
    pictures[1]["file"] = "../../../secret.png"
    pictures[1]["thumb"] = "javascript:alert(1)"
    manifest_path.write_text(json.dumps(manifest))
    site.render(tmp_path)
    html = (tmp_path / "classes" / "n00000000" / "index.html").read_text()
    assert "/etc/passwd" not in html and "secret.png" not in html and "javascript:" not in html


def test_render_without_manifests_says_so(tmp_path):
    with pytest.raises(site.SiteError, match="no classes/\\*/manifest.json"):
        site.render(tmp_path)


def test_index_transfer_under_two_megabytes(parse, write_fake_atlas, tmp_path):
    write_fake_atlas(tmp_path, n_classes=10, size=96, thumb=160, n_images=2)  # thumbs as big as the build's
    index = site.render(tmp_path)
    checker = parse(index)
    referenced = {(tmp_path / unquote(urlsplit(link).path)).resolve()
                  for link in checker.links if urlsplit(link).path and not link.endswith(".html")}
    # thumbnails only, except the one class whose build made no thumb for its card picture
    assert len([p for p in referenced if p.suffix == ".jpg"]) == 9
    assert [p.parts[-3] for p in referenced if p.suffix == ".png"] == ["n00000009"]
    total = index.stat().st_size + sum(path.stat().st_size for path in referenced)
    assert total < 2 * 1024 * 1024, total


def test_format_number():
    assert site.format_number(0.123456) == "0.123"
    assert site.format_number(12) == "12"
    assert site.format_number(1.5e-5) == "1.50e-05"
    assert site.format_number(True) == "yes"
    assert site.format_number([1, 0.5, "a"]) == "1, 0.5, a"
    assert site.format_number({"a": [1]}) == '{"a": [1]}'


def test_server_is_local_and_serves_the_site(atlas):
    server = site.make_server(atlas, port=0)
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as response:
            assert b"Intra-class atlas" in response.read()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("kind", ["png", "jpeg", "progressive", "exif", "webp"])
def test_image_sizes_come_from_the_header_as_pil_reads_them(kind, tmp_path):
    from PIL import Image

    picture = Image.new("RGB", (37, 21), (200, 40, 40))
    exif = Image.Exif()
    exif[0x010E] = "an APP1 segment before the frame header " * 20  # ImageDescription
    path = tmp_path / f"picture.{kind}"
    options = {"png": ("PNG", {}), "jpeg": ("JPEG", {}), "progressive": ("JPEG", {"progressive": True}),
               "exif": ("JPEG", {"exif": exif.tobytes()}), "webp": ("WEBP", {})}[kind]
    picture.save(path, options[0], **options[1])
    with Image.open(path) as image:
        assert image.size == (37, 21)
    assert image_size(path) == (37, 21)


def test_an_image_header_claiming_a_bomb_gives_no_size(tmp_path):
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00")
    assert image_size(tmp_path / "bomb.png") == (None, None)
    assert image_size(tmp_path / "broken.jpg") == (None, None)


def test_a_second_render_rewrites_only_the_pages_that_changed(write_fake_atlas, pages, tmp_path):
    write_fake_atlas(tmp_path, n_classes=3)
    site.render(tmp_path)
    before = {path: path.stat().st_ino for path in pages(tmp_path)}  # atomic writes replace the file
    manifest = tmp_path / "classes" / "n00000002" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"cassette player"', '"a renamed cassette player"'))
    site.render(tmp_path)
    rewritten = {path.relative_to(tmp_path).as_posix() for path in before if path.stat().st_ino != before[path]}
    # the renamed class, its neighbour's prev/next link, the index and the claims (class names)
    assert rewritten == {"classes/n00000002/index.html", "classes/n00000001/index.html", "index.html",
                         "claims.html"}


def test_a_page_that_cannot_be_written_fails_the_render(write_fake_atlas, tmp_path):
    from generator.store import StoreError

    write_fake_atlas(tmp_path, n_classes=3)
    (tmp_path / "classes" / "n00000001" / "index.html").mkdir()  # a folder where the page goes
    with pytest.raises(StoreError, match="n00000001/index.html"):
        site.render(tmp_path)


def test_a_fifo_or_a_folder_has_no_image_size(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.jpg")  # opened without O_NONBLOCK, this read would wait forever
    (tmp_path / "folder.png").mkdir()
    assert image_size(tmp_path / "fifo.jpg") == (None, None)
    assert image_size(str(tmp_path / "folder.png")) == (None, None)
    assert image_size(tmp_path / "missing.png") == (None, None)


def test_parameter_pairs_and_grid_lines():
    assert site.pairs({"colour_distance": 0.41234, "retrieved": [1], "ok": True}, ("retrieved",)) == \
        "colour distance 0.412; ok yes"
    assert site.grid_lines(3) == "M1 0V3M0 1H3M2 0V3M0 2H3"


def test_render_leaves_the_cycle_collector_as_it_found_it(write_fake_atlas, tmp_path):
    import gc

    write_fake_atlas(tmp_path, n_classes=2)
    site.render(tmp_path)
    assert gc.isenabled()
    gc.disable()
    try:
        site.render(tmp_path)
        assert not gc.isenabled()
    finally:
        gc.enable()
