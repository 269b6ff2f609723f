"""benchmarks/lucent_anchor.py's plumbing at 2 steps on 2 classes: both Lucent variants render,
the judge reads them, and the JSON and contact sheet come out (the real numbers: the benchmark)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from benchmarks import judge as judge_module
from benchmarks import lucent_anchor


def test_the_anchor_benchmark_renders_reads_and_reports(shared: Path, tmp_path: Path) -> None:
    why = lucent_anchor.lucent_missing() or judge_module.available()
    if why or not lucent_anchor.WEIGHTS.is_file():
        pytest.skip(why or f"{lucent_anchor.WEIGHTS} not found")
    out = tmp_path / "anchor.json"
    result = lucent_anchor.main(["--steps", "2", "--classes", "2", "--size", "96", "--json", str(out),
                                 "--sheet", str(tmp_path / "sheet.png")])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [r["variant"] for r in result["rows"]] == ["lucent", "pixels"]
    for row in result["rows"]:
        assert row["n"] == 2 and [c["wnid"] for c in row["per_class"]] == ["n01440764", "n02102040"]
        assert 0 <= row["top1_among_10"] <= 1 and 0 <= row["top5_among_1000"] <= 1 and 0 < row["own_prob"] < 1
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.size == (110 + 2 * 160, 2 * 160)


def test_each_variant_is_seeded_and_differs(shared: Path) -> None:
    if lucent_anchor.lucent_missing() or not lucent_anchor.WEIGHTS.is_file():
        pytest.skip("needs Lucent and the shared mobilenet-v2")
    model = lucent_anchor.load_model()
    first = lucent_anchor.render(model, "lucent", [0], steps=2, size=64, seed=3)
    again = lucent_anchor.render(model, "lucent", [0], steps=2, size=64, seed=3)
    plain = lucent_anchor.render(model, "pixels", [0], steps=2, size=64, seed=3)
    assert first.shape == (1, 3, 64, 64) and 0 <= first.min() and first.max() <= 1
    assert (first - again).abs().max() < 1e-6 and (first - plain).abs().max() > 0.05
