"""The website at ImageNet scale: the index carries one page of cards and a compact class list
(not a card per class), a class page links only its neighbours, and every page has a meta
description and links the favicon (no favicon request to 404 on a static host).

The 1000-class index in a real browser is in test_browser.py; the numbers are
`python -m benchmarks.site_scale`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from generator import site

N_CLASSES = 70  # more than one page of the index


@pytest.fixture(scope="module")
def large(write_large_atlas, tmp_path_factory) -> tuple[Path, list[str]]:
    output = tmp_path_factory.mktemp("large-atlas")
    slugs = write_large_atlas(output, N_CLASSES)
    site.render(output)
    return output, slugs


def index_data(output: Path) -> dict:
    script = (output / site.INDEX_SCRIPT).read_text()
    prefix = "window.ATLAS_INDEX = "
    assert script.startswith(prefix) and script.endswith(";\n")
    return json.loads(script[len(prefix):-2])


def test_the_index_has_one_page_of_cards_and_every_class_in_its_list(large, parse):
    output, slugs = large
    links = parse(output / "index.html").links
    cards = [link for link in links if re.fullmatch(r"classes/[^/]+/index\.html", link)]
    assert cards == [f"classes/{slug}/index.html" for slug in slugs[:site.INDEX_PAGE]]
    script = re.search(r'<ul id="class-list" [^>]*data-index="([^"]+)"', (output / "index.html").read_text()).group(1)
    assert script.startswith(site.INDEX_SCRIPT + "?v=") and (output / script.split("?")[0]).is_file()
    assert not any(link.startswith(site.INDEX_SCRIPT) for link in links)  # loaded by atlas.js on the first search, sort or page turn
    data = index_data(output)
    rows = [dict(zip(data["fields"], row)) for row in data["rows"]]
    assert data["page"] == site.INDEX_PAGE and [row["slug"] for row in rows] == slugs
    assert rows[1]["name"] == "goldfish" and rows[1]["index"] == 1
    assert all((output / "classes" / row["slug"] / row["src"]).is_file() for row in rows)
    # what grows with the class count is one short row per class, not a card's markup
    assert len((output / site.INDEX_SCRIPT).read_bytes()) / N_CLASSES < 300


def test_the_class_list_escapes_markup(write_fake_atlas, hostile_name, tmp_path):
    write_fake_atlas(tmp_path, n_classes=3)
    site.render(tmp_path)
    assert "<" not in (tmp_path / site.INDEX_SCRIPT).read_text()
    assert index_data(tmp_path)["rows"][0][2] == hostile_name


def test_a_class_page_links_only_its_neighbours(large, parse):
    output, slugs = large
    for position in (0, 30, N_CLASSES - 1):
        links = parse(output / "classes" / slugs[position] / "index.html").links
        others = {link.split("/")[1] for link in links if link.startswith("../") and not link.startswith("../../")}
        assert others == set(slugs[max(0, position - 1):position + 2]) - {slugs[position]}, (position, others)


def test_every_page_has_a_description_and_a_favicon(large, pages):
    output, _ = large
    descriptions = []
    for path in pages(output):
        raw = path.read_text()
        description = re.search(r'<meta name="description" content="([^"]{40,})">', raw)
        icon = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', raw)
        assert description and icon, path
        assert (path.parent / icon.group(1)).read_text().startswith("<svg"), path
        descriptions.append(description.group(1))
    assert len(set(descriptions)) == len(descriptions)  # each page says what it is
    assert "tench (n01440764)" in descriptions[3]


def test_unit_pages_have_a_description_of_their_own_and_the_favicon(write_fake_atlas, write_fake_units, pages,
                                                                  tmp_path):
    write_fake_atlas(tmp_path, n_classes=3)
    write_fake_units(tmp_path, pool5=4, fc=16, per_class=2, top_k=2)
    site.render(tmp_path)
    found = {}
    for path in pages(tmp_path):
        raw = path.read_text()
        description = re.search(r'<meta name="description" content="([^"]{40,})">', raw)
        icon = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', raw)
        assert description and icon and (path.parent / icon.group(1)).is_file(), path
        found[path.relative_to(tmp_path).as_posix()] = description.group(1)
    assert len(set(found.values())) == len(found) > 10  # every page, units too, says what it is
    assert found["units/index.html"].startswith("The unit atlas of fake-alexnet")
    assert found["units/pool5/index.html"].startswith("The 4 pool5 channels of fake-alexnet")
    unit = next(path for path in found if path.startswith("units/pool5/") and not path.endswith("index.html"))
    assert found[unit].startswith(f"pool5 unit {Path(unit).stem} of fake-alexnet") and "texture" in found[unit]
    assert "Pre-images at every layer" in found["classes/n00000001/index.html"]  # the class's own sections
