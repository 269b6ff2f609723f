"""Atlases of transformers built end to end: every method and the unit atlas write valid
manifests, and the pages speak of the net's own levels (its class token, its tokens).

Fast: a random 2-block ViT factory (32 px, 4x4 tokens) and timm's vit_tiny_patch16_224 at 32 px.
Slow: the demo world's images (96 px) through a random-init torchvision vit_b_16 and timm's
resnet18, every method at demo-like sizes with few iterations."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

import helpers
from generator.build import build
from generator.catalog import load_catalog
from generator.manifest import Manifest
from generator.methods import METHOD_NAMES
from generator.nets.families import CLASS_TOKEN
from generator.site import render

# every method, sized to take seconds
METHODS = """methods:
  topics: {k: 2, images: 6, retrieved: 2}
  ensemble: {masks: 2, inits: 1, member_images: 2}
  hierarchy: {images: 1}
  inversion: {images: 1, database_images: 3, iterations: 2, k: 2}
  preimages: {iterations: 2}
  caricatures: {iterations: 2}
  neighbours: {queries: 1, k: 2, topics: 2}
  fc7map: {topics: 2, perplexity: 1.0}
  saliency: {images: 1}
  mean: {top: 3}
"""
UNITS = "units: {enabled: true, iterations: 2, texture_iterations: 2, top_k: 3, per_class: 2}\n"
FC7_UNITS = "units: {enabled: true, pool5: false, iterations: 2, texture_iterations: 2, top_k: 3, per_class: 2}\n"  # wide nets


def _text(page: Path) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.read_text())).split())


def build_atlas(root: Path, model: str, classes: list[str], images: str, per_class: int, units: str = UNITS) -> Path:
    (root / "catalog.yaml").write_text(
        f"model: {{{model}}}\nimages: {{source: folder, root: {images}, per_class: {per_class}}}\n"
        f"classes: [{', '.join(classes)}]\nprior: {{images: {per_class}, max_patches: 500}}\n"
        f"engine: {{iterations: 2}}\n{units}{METHODS}output: site\n")
    report = build(load_catalog(root / "catalog.yaml"), progress=False)
    assert report.ok, report.summary()
    render(root / "site")
    return root / "site"


def check_atlas(site: Path, parse, pages, unit_layers: tuple[str, ...] = ("pool5", "fc7")) -> list[Manifest]:
    """Every class has every method in a valid manifest, the unit atlas has units at `unit_layers`,
    and every page is balanced HTML."""
    manifests = [Manifest.read(path) for path in sorted(site.glob("classes/*/manifest.json"))]
    assert manifests
    for manifest in manifests:
        assert set(manifest.methods) == set(METHOD_NAMES), set(METHOD_NAMES) - set(manifest.methods)
        assert all(p.file and (site / "classes" / manifest.class_.slug / p.file).is_file()
                   for record in manifest.methods.values() for p in record.pictures)
    units = json.loads((site / "units" / "manifest.json").read_text())
    assert all(units["layers"][layer]["units"] for layer in unit_layers)
    for path in pages(site):
        assert parse(path).errors == [], path
    return manifests


def test_a_vit_atlas_builds_every_method_and_speaks_of_its_class_token(tmp_path, make_world, parse, pages):
    catalog = make_world(tmp_path, images_per_class=6)
    (tmp_path / "tiny_vit.py").write_text(helpers.TINY_VIT)
    labels = ", ".join(c.id for c in catalog.classes)
    site = build_atlas(tmp_path, f"name: tiny_vit.py:build, num_classes: 3, labels: [{labels}], input_size: 32",
                       [c.id for c in catalog.classes[:2]], "images", 6)
    manifests = check_atlas(site, parse, pages)
    assert manifests[0].model["tokens"] == CLASS_TOKEN and manifests[0].model["levels"] == ["pool5", "fc7", "fc8"]
    page = _text(next(site.glob("classes/*/index.html")))
    assert "Random dropout masks on the class token (fc7)" in page
    assert "NMF of the class's class tokens (fc7)" in page
    assert "the class token (fc7), then also the patch tokens entering the last block (pool5)" in page
    assert "pooled vector" not in page and not re.search(r"\bfc6\b", page.replace("no fc6", ""))
    methods = _text(site / "methods.html")
    assert "a member is one mask m 7 on the class token (fc7)" in methods
    assert "{m7} on the class token (fc7), then {m5, m7} with the patch tokens entering the last block (pool5)" in methods
    claims = _text(site / "claims.html")
    assert "pooled vector" not in claims


def test_a_timm_vit_atlas_builds_and_marks_its_family(tmp_path, make_world, parse, pages):
    pytest.importorskip("timm")
    catalog = make_world(tmp_path, images_per_class=6)
    labels = ", ".join(c.id for c in catalog.classes)
    site = build_atlas(tmp_path, f"name: 'timm:vit_tiny_patch16_224', num_classes: 3, labels: [{labels}], input_size: 32",
                       [catalog.classes[0].id], "images", 6, FC7_UNITS)
    manifest = check_atlas(site, parse, pages, ("fc7",))[0]
    assert manifest.model["name"] == "timm:vit_tiny_patch16_224" and manifest.model["tokens"] == CLASS_TOKEN
    methods = (site / "methods.html").read_text()
    assert '<tr class="current"><th scope="row">timm</th>' in methods
    assert "Random dropout masks on the class token (fc7)" in _text(next(site.glob("classes/*/index.html")))


@pytest.fixture(scope="module")
def demo_images(tmp_path_factory) -> tuple[Path, list[str]]:
    """The demo world's drawn images (96 px, six classes) without training its net."""
    from generator.demo.world import CLASSES, write_split

    root = tmp_path_factory.mktemp("demo-images")
    write_split(root / "images", "world", 8, seed=0)
    return root / "images", [c.id for c in CLASSES]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["vit_b_16", "timm:resnet18"])
def test_a_demo_sized_atlas_of_a_random_init_net(tmp_path, demo_images, model, parse, pages):
    if model.startswith("timm:"):
        pytest.importorskip("timm")
    images, wnids = demo_images
    labels = ", ".join(wnids)
    site = build_atlas(tmp_path, f"name: '{model}', num_classes: {len(wnids)}, labels: [{labels}], input_size: 96",
                       wnids[:2], str(images), 8, FC7_UNITS)  # a page per pool5 channel: 768 of them for vit_b_16
    manifests = check_atlas(site, parse, pages, ("fc7",))
    assert len(manifests) == 2
    tokens = manifests[0].model.get("tokens")
    assert tokens == (CLASS_TOKEN if model == "vit_b_16" else None)
