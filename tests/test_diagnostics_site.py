"""The class page's diagnostics sections: the pre-images' per-layer error table is a real HTML
table, the neighbours show the class's own thumbnails each way, the map and the saliency
overlays are figures with alt text."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from generator import site
from generator.manifest import Manifest
from generator.methods import METHODS


@pytest.fixture(scope="module")
def atlas(write_fake_atlas, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("diagnostics-atlas")
    write_fake_atlas(output, n_classes=2)
    site.render(output)
    return output


class Tables(HTMLParser):
    """Every <table>'s caption, header cells and body rows (as text)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.cell: list[str] | None = None
        self.where = ""

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"class": dict(attrs).get("class", ""), "caption": "", "head": [], "rows": []})
        elif tag in ("thead", "tbody", "caption"):
            self.where = tag
        elif tag == "tr" and self.tables and self.where == "tbody":
            self.tables[-1]["rows"].append([])
        elif tag in ("th", "td") and self.tables:
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self.cell is not None and self.tables:
            text = "".join(self.cell).strip()
            (self.tables[-1]["head"] if self.where == "thead" else self.tables[-1]["rows"][-1]).append(text)
            self.cell = None
        elif tag == "caption":
            self.where = ""

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)
        elif self.where == "caption" and self.tables:
            self.tables[-1]["caption"] += data


def section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}"')
    return html[start:html.index("</section>", start)]


def test_the_preimage_errors_are_a_table_with_a_row_per_layer(atlas):
    html = (atlas / "classes" / "n00000001" / "index.html").read_text()
    parser = Tables()
    parser.feed(section(html, "preimages"))
    (table,) = [t for t in parser.tables if "step-numbers" in t["class"]]
    assert "Pre-images at every layer" in table["caption"]
    assert table["head"][0] == "layer" and "feature error" in table["head"][1] and "pixel error" in table["head"][2]
    assert [row[0] for row in table["rows"]] == ["conv1", "conv2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8"]
    assert table["rows"][0][1:] == ["0.01", "0.2"] and table["rows"][-1][1:] == ["0.17", "0.6"]


def test_neighbours_show_the_class_images_each_way(atlas):
    html = section((atlas / "classes" / "n00000001" / "index.html").read_text(), "neighbours")
    first = html[:html.index("neighbours/query-1")]
    fc7 = first[first.index("Nearest in fc7"):first.index("Nearest in pixels")]
    pixel = first[first.index("Nearest in pixels"):]
    assert [f"images/00{i}.jpg" in fc7 for i in (1, 2, 3)] == [True] * 3
    assert [f"images/00{i}.jpg" in pixel for i in (2, 4)] == [True] * 2 and "images/001.jpg" not in pixel
    assert "0.1 · topic 1" in fc7 and "21 · topic 2" in pixel


def test_map_caricatures_and_saliency_are_figures_in_their_sections(atlas):
    html = (atlas / "classes" / "n00000000" / "index.html").read_text()
    assert section(html, "fc7map").count("<figure") == 1
    strips = section(html, "saliency")
    assert strips.count('class="strip"') == 2
    assert strips.index("saliency/img0-original") < strips.index("saliency/img0-occlusion") < strips.index(
        "saliency/img0-gradcam")
    assert "Grad-CAM (pool5)" in strips
    assert "Caricature at conv3" in section(html, "caricatures")
    built = Manifest.read(atlas / "classes" / "n00000000" / "manifest.json").methods
    for name in (spec.name for spec in METHODS if spec.diagnostic and spec.name in built):
        assert f'href="#{name}"' in html  # in the table of contents
