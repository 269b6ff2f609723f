"""Claims from manifests: each claim's number from hand-made manifests, truth vs no truth,
the exact output schema, and the atomic claims.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from generator.methods import REGISTRY
from generator.records import Meta, Window
from generator.site import claims


def window(row: int, col: int, size: int = 2) -> dict:
    return {"key": f"window-r{row}-c{col}", "meta": {"row": row, "col": col, "top": size * row,
                                                      "left": size * col, "size": size}}


def manifest(class_id: str, *, strongest: tuple[int, int], heterogeneity: float, assignments: list[int],
             masks: float, inits: float, errors: tuple[float, float, float]) -> dict:
    levels = dict(zip(claims.LEVELS, errors))
    return {
        "schema": 1,
        "class": {"id": class_id, "name": class_id, "index": 0, "slug": class_id},
        "model": {"name": "toy", "weights": None, "digest": "x"},
        "images": [{"index": i, "name": f"{class_id}_{i}.png", "thumb": ""} for i in range(len(assignments))],
        "methods": {
            "location": {"numbers": {"heterogeneity": heterogeneity, "strongest": [f"window-r{strongest[0]}-c{strongest[1]}"]},
                         "pictures": [window(r, c) for r in range(3) for c in range(3)]},
            "topics": {"numbers": {"assignments": assignments, "distinctness": 0.5, "picture_match": 0.5 + heterogeneity},
                       "pictures": []},
            "ensemble": {"numbers": {"fc7_across_masks": masks, "fc7_across_inits": inits,
                                     "pixel_across_masks": masks, "pixel_across_inits": inits,
                                     "favourites_beat_random": 0.6 + masks, "favourites": [[0, 1], [2, 3]]}, "pictures": []},
            "hierarchy": {"numbers": {**{f"pixel_{k}": v for k, v in levels.items()},
                                      **{f"pixel_others_{k}": 1.0 for k in levels},
                                      **{f"fc7_{k}": v for k, v in levels.items()}}, "pictures": []},
        },
    }


@pytest.fixture
def atlas(tmp_path: Path) -> Path:
    rows = [
        manifest("a", strongest=(0, 0), heterogeneity=0.4, assignments=[0, 0, 1, 1], masks=0.3, inits=0.1,
                 errors=(0.9, 0.8, 0.7)),
        manifest("b", strongest=(2, 2), heterogeneity=0.1, assignments=[1, 0, 1, 0], masks=0.2, inits=0.2,
                 errors=(0.9, 0.95, 0.6)),
    ]
    for row in rows:
        folder = tmp_path / "classes" / row["class"]["slug"]
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps(row))
    return tmp_path


def truth() -> claims.Truth:
    styles = {"a_0.png": 0, "a_1.png": 0, "a_2.png": 1, "a_3.png": 1, "b_0.png": 0, "b_1.png": 0, "b_2.png": 1, "b_3.png": 1}
    return claims.Truth(styles=styles, layouts={"a": {(0, 0), (0, 1), (1, 0), (1, 1)}, "b": {(0, 0)}})


def by_id(result: dict) -> dict[str, dict]:
    return {c["id"]: c for c in result["claims"]}


def test_schema_is_exact(atlas):
    result = claims.claims_from_manifests(atlas, truth())
    assert set(result) == {"model", "images", "classes", "claims"}
    assert result["model"] == "toy" and result["classes"] == 2 and "8 images" in result["images"]
    for claim in result["claims"]:
        assert set(claim) == {"id", "section", "statement", "metric", "value", "threshold", "holds", "per_class"}
        assert claim["section"] in {"3", "4.1", "4.2", "4.3", "4.4"}


def test_claims_with_planted_truth(atlas):
    result = by_id(claims.claims_from_manifests(atlas, truth()))
    assert result["location-layout"]["per_class"] == {"a": 1.0, "b": 0.0}
    assert result["location-layout"]["value"] == 0.5 and result["location-layout"]["holds"] is False
    assert result["topics-styles"]["per_class"]["a"] == pytest.approx(1.0)
    assert result["topics-styles"]["per_class"]["b"] == pytest.approx(0.0, abs=1e-9)
    assert result["topics-styles"]["holds"] is False  # mean 0.5 < 0.7
    assert result["ensemble-fc7"]["value"] == pytest.approx(3.0 ** 0.5)  # geometric mean of 3 and 1
    assert result["ensemble-fc7"]["per_class"] == pytest.approx({"a": 3.0, "b": 1.0})
    assert result["ensemble-fc7"]["holds"] is True
    hierarchy = result["hierarchy-fc7"]
    assert hierarchy["per_class"]["a"] == pytest.approx(0.1) and hierarchy["per_class"]["b"] == pytest.approx(-0.05)
    # class averages 0.9 -> 0.875 -> 0.65: falls at every step (smallest fall 0.025)
    assert hierarchy["value"] == pytest.approx(0.025) and hierarchy["holds"] is True
    # others at 1.0: the ratio is the error itself, m7 minus m5-7 (a: 0.2, b: 0.3; averaged 0.9 - 0.65)
    specific = result["hierarchy-specific"]
    assert specific["per_class"] == pytest.approx({"a": 0.2, "b": 0.3})
    assert specific["value"] == pytest.approx(0.25) and specific["holds"] is True


def test_without_truth_the_truth_claims_are_not_measurable_but_proxies_are(atlas):
    result = by_id(claims.claims_from_manifests(atlas))
    for id in ("location-layout", "topics-styles"):
        assert result[id]["value"] is None and result[id]["holds"] is None
        assert "not measurable" in result[id]["metric"]
    assert result["location-heterogeneity"]["value"] == pytest.approx(0.3)
    assert result["topics-distinct"]["value"] == pytest.approx(0.5) and result["topics-distinct"]["holds"] is None
    # picture_match 0.9 and 0.6: mean 0.75 over the 0.5 threshold
    assert result["topics-pictures"]["per_class"] == pytest.approx({"a": 0.9, "b": 0.6})
    assert result["topics-pictures"]["value"] == pytest.approx(0.75) and result["topics-pictures"]["holds"] is True


def test_a_plain_style_mapping_is_accepted_as_truth(atlas):
    result = by_id(claims.claims_from_manifests(atlas, truth().styles))
    assert result["topics-styles"]["value"] == pytest.approx(0.5)
    assert result["location-layout"]["value"] is None


def test_window_on_layout_needs_half_the_cells():
    window = Window(top=0, left=0, size=2)
    assert claims.window_on_layout(window, {(0, 0), (1, 1)})
    assert not claims.window_on_layout(window, {(0, 0)})
    assert not claims.window_on_layout(Meta(), {(0, 0), (1, 1)})  # a picture without a usable window


def test_write_claims_writes_strict_json(atlas):
    path = claims.write_claims(atlas, truth())
    assert path == atlas / "claims.json"
    loaded = json.loads(path.read_text())
    assert loaded["classes"] == 2 and not list(atlas.glob("*.tmp"))


def test_empty_output_has_no_classes(tmp_path):
    result = claims.claims_from_manifests(tmp_path)
    assert result["classes"] == 0 and all(c["value"] is None for c in result["claims"])


def ensemble_atlas(folder: Path, distances: dict[str, tuple[float, float]]) -> Path:
    """An atlas whose classes have only ensemble numbers: class id -> (across masks, across inits)."""
    for class_id, (masks, inits) in distances.items():
        (folder / "classes" / class_id).mkdir(parents=True)
        numbers = {f"{space}_across_{what}": value for space in ("fc7", "pixel")
                   for what, value in (("masks", masks), ("inits", inits))}
        row = {"class": {"id": class_id, "name": class_id, "index": 0, "slug": class_id}, "model": {"name": "toy"},
               "images": [], "methods": {"ensemble": {"numbers": numbers, "pictures": []}}}
        (folder / "classes" / class_id / "manifest.json").write_text(json.dumps(row))
    return folder


def test_ensemble_claim_is_the_geometric_mean_of_per_class_ratios(tmp_path):
    # ratios 4 and 0.25 cancel: masks beat inits no more than inits beat masks. A pooled
    # mean / mean (0.81 / 0.24 = 3.4) would say "holds", led by the class with large distances.
    result = by_id(claims.claims_from_manifests(ensemble_atlas(tmp_path / "even", {"a": (0.8, 0.2), "b": (0.01, 0.04)})))
    assert result["ensemble-fc7"]["per_class"] == pytest.approx({"a": 4.0, "b": 0.25})
    assert result["ensemble-fc7"]["value"] == pytest.approx(1.0) and result["ensemble-fc7"]["holds"] is False
    # a class whose inits gave identical pictures has no ratio; one whose masks did counts as 0
    result = by_id(claims.claims_from_manifests(ensemble_atlas(tmp_path / "edge", {"a": (0.3, 0.0), "b": (0.0, 0.1)})))
    assert result["ensemble-pixel"]["per_class"] == {"b": 0.0}
    assert result["ensemble-pixel"]["value"] == 0.0 and result["ensemble-pixel"]["holds"] is False


def test_ensemble_favourites_claims(atlas):
    """Favourites against random sets: mean over classes, against chance plus two standard errors of
    the members (0.79 for 4); styles only with planted truth. Each member favours one style ([0, 1]
    and [2, 3] of styles 0, 0, 1, 1: majority share 1, against 0.67 for random pairs)."""
    result = by_id(claims.claims_from_manifests(atlas, truth()))
    favourites = result["ensemble-favourites"]
    assert favourites["value"] == pytest.approx(0.85) and favourites["per_class"] == pytest.approx({"a": 0.9, "b": 0.8})
    assert favourites["threshold"] == pytest.approx(0.5 + 2 / (12 * 4) ** 0.5) and favourites["holds"] is True  # 4 members
    styles = result["ensemble-favourite-styles"]
    assert styles["per_class"]["a"] == pytest.approx(styles["per_class"]["b"]) and styles["per_class"]["a"] > 0.1
    assert styles["holds"] is True
    no_truth = by_id(claims.claims_from_manifests(atlas))["ensemble-favourite-styles"]
    assert no_truth["value"] is None and "needs planted styles" in no_truth["metric"]


def test_prior_colour_claim_reads_classviz_numbers(tmp_path):
    folder = tmp_path / "classes" / "a"
    folder.mkdir(parents=True)
    numbers = {"baseline_colour_distance": 0.4, "prior_colour_distance": 0.1, "prior_prob": 0.95}
    manifest = {"class": {"id": "a", "name": "a", "index": 0, "slug": "a"}, "model": {"name": "toy"},
                "images": [], "methods": {"classviz": {"numbers": numbers, "pictures": []}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    result = by_id(claims.claims_from_manifests(tmp_path))
    assert result["prior-colour"]["value"] == pytest.approx(0.25) and result["prior-colour"]["holds"] is True
    assert result["prior-prob"]["holds"] is True


def test_inversion_table_per_variant(tmp_path):
    folder = tmp_path / "classes" / "a"
    folder.mkdir(parents=True)
    pictures = [{"key": f"img0-{v}", "meta": {"image": 0, "variant": v}, "numbers": {"image_error": e, "feature_error": 0.1}}
                for v, e in (("rand", 0.6), ("avg", 0.5), ("prior", 0.4))]
    manifest = {"class": {"id": "a", "name": "a", "index": 0, "slug": "a"}, "model": {"name": "toy"},
                "images": [], "methods": {"inversion": {"numbers": {}, "pictures": pictures}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rows = {r["variant"]: r for r in claims.inversion_table(tmp_path)["rows"]}
    titles = REGISTRY["inversion"].layout.titles
    assert rows[titles["rand"]]["image_error_mean"] == pytest.approx(0.6)
    assert rows[titles["prior"]]["n"] == 1 and titles["retrieved"] not in rows
