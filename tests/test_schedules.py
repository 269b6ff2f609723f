"""benchmarks/schedules.py without ../shared: a variant's overrides, its catalog's paths made absolute,
and the build's speed line read back."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmarks.schedules import SPEED, parse_variant, variant_catalog


def test_a_variant_is_a_name_and_dotted_overrides_read_as_yaml():
    assert parse_variant("today") == ("today", {})
    name, overrides = parse_variant("coarse:engine.coarse_size=112,engine.coarse_until=0.6,methods.topics.prior=false")
    assert name == "coarse"
    assert overrides == {"engine.coarse_size": 112, "engine.coarse_until": 0.6, "methods.topics.prior": False}
    with pytest.raises(SystemExit):
        parse_variant("bad/name")
    with pytest.raises(SystemExit):
        parse_variant("x:engine.lr")
    _, listed = parse_variant("b:methods.topics.distribution_layers=pool5,bands,engine.lr=0.02")  # a comma list value
    assert listed == {"methods.topics.distribution_layers": "pool5,bands", "engine.lr": 0.02}


def test_the_variant_catalog_keeps_its_files_and_sets_the_overrides(tmp_path: Path):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "net.py").write_text("def build(): ...\n")
    (tmp_path / "weights.pt").write_bytes(b"")
    (tmp_path / "photos").mkdir()
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({
        "model": {"name": "nets/net.py:build", "weights": "weights.pt"},
        "images": {"source": "folder", "root": "photos"},
        "classes": ["n01440764"], "methods": {"ensemble": {"enabled": False}}, "engine": {"lr": 0.01}}))
    raw = variant_catalog(catalog, {"engine.coarse_size": 112, "methods.ensemble.coarse": True}, tmp_path / "out")
    assert raw["model"] == {"name": f"{tmp_path / 'nets' / 'net.py'}:build", "weights": str(tmp_path / "weights.pt")}
    assert raw["images"]["root"] == str(tmp_path / "photos")
    assert raw["engine"] == {"lr": 0.01, "coarse_size": 112}
    assert raw["methods"]["ensemble"] == {"enabled": False, "coarse": True}
    assert raw["output"] == str(tmp_path / "out")


def test_the_speed_line_is_read_with_and_without_coarse_steps():
    assert SPEED.findall("speed: 21.9 image-iterations per second, 64.0 s per class (6 classes)") == [("21.9", "", "64.0")]
    line = "speed: 21.0 image-iterations per second (11.6 in full-size images), 40.0 s per class (6 classes)"
    assert SPEED.findall(line) == [("21.0", "11.6", "40.0")]
