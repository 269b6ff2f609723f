"""benchmarks/judge.py and benchmarks/transfer.py: the judge reads real photos as their class, and
the transfer benchmark reads an atlas folder (manifests, pictures, thumbnails) into its table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import judge as judge_module
from benchmarks import transfer
from generator.manifest import PictureRecord
from generator.records import Cell, Query, Step

TENCH, CHURCH, GOLF = "n01440764", "n03028079", "n03445777"


@pytest.fixture(scope="module")
def judge(shared: Path) -> judge_module.Judge:
    why = judge_module.available()
    if why:
        pytest.skip(why)
    return judge_module.Judge.load()


def val_photos(shared: Path, wnid: str, n: int) -> list[Path]:
    return sorted((shared / "data" / "imagenette" / "val" / wnid).glob("*.JPEG"))[:n]


def test_wnids_map_to_the_judges_1000_classes() -> None:
    index = judge_module.wnid_indices()
    assert len(index) == 1000 and index[TENCH] == 0 and index[CHURCH] == 497


def test_the_judge_reads_real_photos_as_their_class(shared: Path, judge: judge_module.Judge) -> None:
    from benchmarks.common import IMAGENETTE

    index = judge_module.wnid_indices()
    photos = [val_photos(shared, wnid, 1)[0] for wnid in IMAGENETTE]
    reading = judge.read([Image.open(p) for p in photos])
    truth = np.array([index[w] for w in IMAGENETTE])
    assert reading.probs.shape == (10, 1000) and reading.features.shape == (10, 768)
    assert np.allclose(reading.probs.sum(1), 1, atol=1e-3)
    assert (reading.top1_among([index[w] for w in IMAGENETTE]) == truth).sum() >= 7
    # The float scores are the model's own: the last photo's softmax is the model's uint8 output.
    output = judge.interpreter.get_output_details()[0]
    scale, zero = output["quantization"]
    own = (judge.interpreter.get_tensor(output["index"])[0, 1:].astype(np.float32) - zero) * scale
    assert np.abs(reading.probs[-1] - own).max() < 0.03 and reading.top(1)[-1, 0] == own.argmax()
    # A flat grey picture is no class: the model's uint8 softmax gives all ten 0, our scores still
    # rank them, so the answer does not depend on the candidates' order.
    grey = judge.read([Image.new("RGB", (224, 224), (128, 128, 128))])
    ten = [index[w] for w in IMAGENETTE]
    assert grey.top1_among(ten)[0] == grey.top1_among(ten[::-1])[0]
    assert not any(np.allclose(grey.features[0], f) for f in reading.features)


def save(image: Image.Image, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.convert("RGB").resize((224, 224)).save(path)
    return path.name


def write_class(root: Path, wnid: str, photos: list[Image.Image], pictures: dict[str, list[dict]],
                params: dict[str, dict] | None = None) -> None:
    """A class folder as the build writes it: manifest, image thumbnails, method pictures."""
    folder = root / "classes" / wnid
    images = []
    for i, photo in enumerate(photos):
        save(photo, folder / "images" / f"{i:03d}.jpg")
        images.append({"index": i, "name": f"{i}.JPEG", "thumb": f"images/{i:03d}.jpg"})
    methods = {}
    for method, entries in pictures.items():
        listed = []
        for entry in entries:
            name = save(entry.pop("image"), folder / method / f"{entry['key']}.png")
            listed.append({"file": f"{method}/{name}", "thumb": f"{method}/{name}", "meta": {}, **entry})
        methods[method] = {"pictures": listed, "numbers": {}, "params": (params or {}).get(method, {})}
    manifest = {"schema": 1, "class": {"id": wnid, "name": wnid, "index": 0, "slug": wnid}, "images": images, "methods": methods}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_transfer_reads_an_atlas_folder(shared: Path, judge: judge_module.Judge, tmp_path: Path) -> None:
    """Real photos stand in for pictures: 'prior' pictures are photos of their own class, 'baseline'
    pictures photos of another class, so the table must read 1.0 and 0.0."""
    wnids = [TENCH, CHURCH, GOLF]
    photos = {w: [Image.open(p).convert("RGB") for p in val_photos(shared, w, 4)] for w in wnids}
    for i, wnid in enumerate(wnids):
        other = wnids[(i + 1) % 3]
        write_class(tmp_path, wnid, photos[wnid][:2], {
            "classviz": [{"key": "prior", "image": photos[wnid][2]}, {"key": "baseline", "image": photos[other][3]}],
            "inversion": [{"key": "img0-original", "image": photos[wnid][3], "meta": {"variant": "original"}}],
        })
    rows = {r["kind"]: r for r in transfer.measure(tmp_path, judge)["recognition"]}
    assert list(rows) == ["photos (inversion originals)", "classviz baseline", "classviz prior"]
    assert rows["classviz prior"]["n"] == 3 and rows["classviz prior"]["top1_among_classes"] >= 2 / 3
    assert rows["classviz baseline"]["top1_among_classes"] <= 1 / 3


class ColourJudge:
    """A stand-in judge whose 'features' are the mean colour: the metrics' logic without litert."""

    def read(self, images: list[Image.Image]) -> judge_module.Reading:
        features = np.stack([np.asarray(im, dtype=np.float32).mean((0, 1)) for im in images])
        return judge_module.Reading(logits=np.zeros((len(images), 1000)), features=features)


def flat(rgb: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (64, 64), rgb)


def test_topic_metric_finds_pictures_near_their_own_topic(tmp_path: Path) -> None:
    # Three topics, each two photos of one hue; the class mean is grey-ish.
    hues = [(220, 40, 40), (40, 220, 40), (40, 40, 220)]
    photos = [flat(h) for h in hues for _ in range(2)]
    retrieved = [[{"image": 2 * k}, {"image": 2 * k + 1}] for k in range(3)]

    def topics(order: list[int]) -> list[dict]:
        return [{"key": f"topic-{k}", "image": flat(hues[order[k]]), "meta": {"topic": k, "retrieved": retrieved[k]}}
                for k in range(3)]

    write_class(tmp_path / "right", TENCH, photos, {"topics": topics([0, 1, 2])})
    write_class(tmp_path / "wrong", TENCH, photos, {"topics": topics([1, 2, 0])})
    right = transfer.measure(tmp_path / "right", ColourJudge())["topics"]  # type: ignore[arg-type]
    wrong = transfer.measure(tmp_path / "wrong", ColourJudge())["topics"]  # type: ignore[arg-type]
    assert right["pictures_nearest_own_topic"] == 1.0 and wrong["pictures_nearest_own_topic"] == 0.0
    assert right["real_photos_reference"] == 1.0 and right["chance"] == pytest.approx(1 / 3)
    # the three pictures are three hues: as far apart as the topics' top photos; one hue thrice: 0
    assert right["pictures_spread"] == pytest.approx(right["top_photos_spread"], rel=1e-4) and right["pictures_spread"] > 0.5
    # a blur keeps a flat photo's colour: the blurred top photos spread as the photos do
    assert right["blurred_top_photos_spread"] == pytest.approx({"2": right["top_photos_spread"],
                                                                 "4": right["top_photos_spread"]}, rel=1e-3)
    write_class(tmp_path / "alike", TENCH, photos, {"topics": topics([0, 0, 0])})
    assert transfer.measure(tmp_path / "alike", ColourJudge())["topics"]["pictures_spread"] == pytest.approx(0.0, abs=1e-6)


def test_the_facet_starts_spread_reads_each_topics_own_start(tmp_path: Path) -> None:
    # topic k's retrieved photos: hue k, then the first hue; its picture is hue k
    hues = [(220, 40, 40), (40, 220, 40), (40, 40, 220)]
    photos = [flat(hues[k if j == 0 else 0]) for k in range(3) for j in range(2)]
    topics = [{"key": f"topic-{k}", "image": flat(hues[k]), "meta": {"topic": k, "retrieved": [{"image": 2 * k}, {"image": 2 * k + 1}]}}
              for k in range(3)]
    found = {}
    for name, params in (("mean", {}), ("top", {"facet_images": 1, "facet_side": 4}), ("noise", {"init": "noise"})):
        write_class(tmp_path / name, TENCH, photos, {"topics": [dict(t) for t in topics]}, {"topics": params})
        found[name] = transfer.measure(tmp_path / name, ColourJudge())["topics"]  # type: ignore[arg-type]
    top = found["top"]
    assert top["facet_starts_spread"] == pytest.approx(top["top_photos_spread"], rel=1e-3)  # a flat photo coarsened is itself
    colours = np.array([np.asarray(p, dtype=np.float32).mean((0, 1)) for p in photos])
    blends = np.stack([(colours[2 * k] + colours[2 * k + 1]) / 2 for k in range(3)]) - colours.mean(0)
    assert found["mean"]["facet_starts_spread"] == pytest.approx(transfer.spread(blends), abs=0.01)  # each start a blend
    assert abs(transfer.spread(blends) - top["top_photos_spread"]) > 0.03
    assert found["noise"]["facet_starts_spread"] is None


def test_ensemble_metric_says_whether_masks_or_inits_make_the_variety(tmp_path: Path) -> None:
    def ensemble(by_mask: bool) -> list[dict]:
        colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
        return [{"key": f"mask{m}-init{i}", "meta": {"mask": m, "init": i},
                 "image": flat(tuple(c + (i if by_mask else 0) for c in colours[m if by_mask else i]))}  # type: ignore[arg-type]
                for m in range(3) for i in range(3)]

    write_class(tmp_path / "masks", TENCH, [flat((90, 90, 90))], {"ensemble": ensemble(True)})
    write_class(tmp_path / "inits", TENCH, [flat((90, 90, 90))], {"ensemble": ensemble(False)})
    masks = transfer.measure(tmp_path / "masks", ColourJudge())["ensemble"]  # type: ignore[arg-type]
    inits = transfer.measure(tmp_path / "inits", ColourJudge())["ensemble"]  # type: ignore[arg-type]
    assert masks["lowpass_pixels_ratio_mean"] > 10 and masks["judge_ratio_mean"] > 1
    assert inits["lowpass_pixels_ratio_mean"] < 0.1 and inits["judge_ratio_mean"] < 1


def test_transfer_without_the_judge_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins

    real_import = builtins.__import__

    def no_litert(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith("ai_edge_litert"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_litert)
    monkeypatch.setattr("sys.argv", ["transfer", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        transfer.main()
    assert "ai-edge-litert" in str(exit_.value)


def test_compare_puts_atlases_side_by_side() -> None:
    alexnet = {"atlas": "/x/alexnet", "recognition": [
        {"kind": "classviz prior", "n": 10, "top1_among_classes": 0.9, "top5_among_1000": 0.4},
        {"kind": "topics", "n": 50, "top1_among_classes": 0.88, "top5_among_1000": 0.1}]}
    mobilenet = {"atlas": "/y/mobilenet", "recognition": [
        {"kind": "classviz prior", "n": 10, "top1_among_classes": 1.0, "top5_among_1000": 0.7}]}
    header, *rows = transfer.compare([alexnet, mobilenet])
    assert "alexnet" in header and header.index("alexnet") < header.index("mobilenet")
    prior = next(r for r in rows if r.startswith("classviz prior"))
    assert prior.index("0.90 / 0.40 (10)") < prior.index("1.00 / 0.70 (10)")
    topics = next(r for r in rows if r.startswith("topics"))
    assert "0.88 / 0.10 (50)" in topics and topics.rstrip().endswith("-")


def test_only_synthetic_pictures_are_judged() -> None:
    assert transfer.kind_of("preimages", PictureRecord("img0-conv3", meta=Step(0, "conv3"))) == "preimages conv3"
    assert transfer.kind_of("caricatures", PictureRecord("img0-original", meta=Step(0, "original"))) is None
    assert transfer.kind_of("saliency", PictureRecord("img3-gradcam", meta=Step(3, "gradcam"))) is None
    assert transfer.kind_of("neighbours", PictureRecord("query-0", meta=Query(0))) is None
    assert transfer.kind_of("fc7map", PictureRecord("map")) is None
    assert transfer.kind_of("ensemble", PictureRecord("mask0-init1", meta=Cell(row=0, column=1))) == "ensemble samples"


def test_photo_colour_puts_the_pictures_beside_a_real_photos_own_distance(tmp_path: Path) -> None:
    red, blue = (200, 40, 40), (40, 40, 200)

    def classviz(baseline: tuple[int, int, int], prior: tuple[int, int, int]) -> dict[str, list[dict]]:
        return {"classviz": [{"key": "baseline", "image": flat(baseline)}, {"key": "prior", "image": flat(prior)}]}

    write_class(tmp_path / "alike", TENCH, [flat(red)] * 4, classviz((40, 200, 40), red))
    alike = transfer.photo_colour(transfer.load_atlas(tmp_path / "alike"))
    assert alike is not None and alike["photo_pooled"] == pytest.approx(0, abs=1e-3)  # photos all one colour
    assert alike["prior_pooled"] == pytest.approx(0, abs=1e-3) and alike["baseline_pooled"] > 0.3
    # two palettes: a photo is far from the others pooled, and a one-palette picture is as far
    write_class(tmp_path / "mixed", TENCH, [flat(red), flat(blue)] * 2, classviz((40, 200, 40), red))
    mixed = transfer.photo_colour(transfer.load_atlas(tmp_path / "mixed"))
    assert mixed is not None and mixed["photo_pooled"] > 0.1
    assert mixed["prior_per_photo"] < mixed["baseline_per_photo"]
    assert mixed["prior_pooled"] == pytest.approx(mixed["photo_pooled"], rel=0.2)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    generator = np.random.default_rng(0)
    a, b = generator.normal(size=(200, 16)), generator.normal(size=(200, 16))
    same = transfer.kid(a, b)
    assert abs(same) < 0.05
    assert transfer.kid(a, a[:100]) == pytest.approx(transfer.kid(a[:100], a), abs=1e-12)  # symmetric
    shifted = [transfer.kid(a, b + shift) for shift in (0.5, 1.0, 2.0)]
    assert shifted[0] > 5 * abs(same) and shifted[0] < shifted[1] < shifted[2]
    assert transfer.kid(a[:1], b) is None  # the unbiased estimate needs two rows a side


def test_kid_is_unbiased_at_small_sizes():
    generator = np.random.default_rng(1)
    values = [transfer.kid(generator.normal(size=(5, 8)), generator.normal(size=(5, 8))) for _ in range(400)]
    biased = [float(((x @ x.T / 8 + 1) ** 3).mean() + ((y @ y.T / 8 + 1) ** 3).mean() - 2 * ((x @ y.T / 8 + 1) ** 3).mean())
              for x, y in ((generator.normal(size=(5, 8)), generator.normal(size=(5, 8))) for _ in range(400))]
    assert abs(np.mean(values)) < 0.1 * np.mean(biased)  # the diagonal left out: no small-sample offset
