"""The pages name the levels the atlas's net has: a globally pooled net (resnet18, mobilenet_v2 ...)
has no fc6 and no m6, so its class pages, claims and methods page say "the pooled vector (fc7)"
and {m7}, {m5-7}, while an AlexNet-layout atlas keeps the paper's fc6 / m6-7 wording."""
from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from generator.build import build
from generator.catalog import load_catalog
from generator.methods import METHOD_NAMES
from generator.nets.families import has_fc6
from generator.site import render

# only the methods whose texts name levels differently with and without fc6
METHODS = "".join(f"  {m}: {{enabled: false}}\n" for m in METHOD_NAMES if m not in ("topics", "ensemble", "hierarchy"))
# a net without fc6 may still say so ("no fc6", the hierarchy's "{m6-7} is left out")
SAYS_ABSENT = re.compile(r"no fc6|\{m6-7\} is left out")
NAMES_FC6 = re.compile(r"\bfc6\b|\bm6\b|m6-7")


def _atlas(root: Path, make_world, model: str) -> Path:
    catalog = make_world(root, images_per_class=4)
    (root / "catalog.yaml").write_text(
        f"model: {{{model}, num_classes: 3, labels: [{', '.join(c.id for c in catalog.classes)}]}}\n"
        f"images: {{source: folder, root: images, per_class: 4}}\n"
        f"classes: [{catalog.classes[0].id}]\nunits: {{enabled: false}}\nengine: {{iterations: 2}}\n"
        "methods:\n" + METHODS +
        "  topics: {k: 2, images: 4, retrieved: 2, prior: false}\n"
        "  ensemble: {masks: 2, inits: 1, prior: false}\n"
        "  hierarchy: {images: 1, prior: false}\n"
        "output: site\n")
    report = build(load_catalog(root / "catalog.yaml"), progress=False)
    assert report.ok, report.summary()
    render(root / "site")
    return root / "site"


def _text(page: Path) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.read_text())).split())


@pytest.fixture(scope="module")
def atlases(tmp_path_factory, make_world) -> dict[str, Path]:
    return {"resnet18": _atlas(tmp_path_factory.mktemp("pooled"), make_world, "name: resnet18, input_size: 64"),
            "alexnet": _atlas(tmp_path_factory.mktemp("fc"), make_world, "name: tiny_net.py:build, "
                              "weights: tiny.pt, input_size: 32")}


def test_a_pooled_nets_pages_never_name_an_fc6_it_lacks(atlases):
    site = atlases["resnet18"]
    page = _text(next(site.glob("classes/*/index.html")))
    assert "Random dropout masks on the pooled vector (fc7)" in page
    assert "NMF of the class's pooled vectors (fc7)" in page and "m7 on the pooled vector" in page
    assert "the pooled vector (fc7), then also the last feature map (pool5)" in page
    claims = _text(site / "claims.html")
    assert "Different dropout masks (m7) change" in claims and "(m7, m5-7) comes closer" in claims
    assert "along m7 -> m5-7" in claims
    for text in (page, claims):
        assert not NAMES_FC6.search(SAYS_ABSENT.sub("", text)), NAMES_FC6.search(SAYS_ABSENT.sub("", text))
    methods = _text(site / "methods.html")
    assert "Dropout ensemble (m7)" in methods and "This atlas's network has no fc6" in methods


def test_an_alexnet_atlas_keeps_the_papers_fc6_wording(atlases):
    site = atlases["alexnet"]
    page = _text(next(site.glob("classes/*/index.html")))
    assert "Random dropout masks on fc6 and fc7" in page and "random masks m6, m7" in page
    assert "(fc7, then fc6, then pool5)" in page and "NMF of the class's fc7 codes" in page
    claims = _text(site / "claims.html")
    assert "Different dropout masks (m6-7) change" in claims and "(m7, m6-7, m5-7) comes closer" in claims
    methods = _text(site / "methods.html")
    assert "Dropout ensemble (m6-7)" in methods and "This atlas's network has no fc6" not in methods


def test_the_levels_come_from_the_build_else_the_torchvision_name():
    assert has_fc6({"name": "x.py:build", "levels": ["pool5", "fc7", "fc8"]}) is False
    assert has_fc6({"name": "x.py:build", "levels": ["pool5", "fc6", "fc7", "fc8"]}) is True
    assert has_fc6({"name": "mobilenet_v2"}) is False and has_fc6({"name": "convnext_tiny"}) is False
    assert has_fc6({"name": "mobilenet_v3_small"}) is True and has_fc6({"name": "vgg16"}) is True
    assert has_fc6({"name": "x.py:build"}) is True  # unrecorded and unknown: the paper's layout
