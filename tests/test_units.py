"""The unit atlas: a page per pool5 channel and per chosen fc unit, top patches that
are the argmax receptive fields, per-filter textures from a one-channel code, layer indexes in
selectivity order, and a build step that reruns only when its inputs change.

Built on the tiny world of tests/helpers.py (a 32-px net with a 4x2x2 pool5, three classes of
three images) with the real store, loader, model and engine; each build takes a few seconds."""
from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from generator import build as build_module
from generator import site, units
from generator.build import build
from generator.catalog import CatalogError, parse_catalog
from generator.engine.solve import Problem, solve
from generator.engine.terms import ChannelMatch
from generator.images import class_images
from generator.nets.models import load_pathway
from generator.nets.pathway import Pathway
from generator.units import UnitsParams
from generator.units import run as units_run


def units_manifest(catalog) -> dict:
    return json.loads((catalog.output / "units" / "manifest.json").read_text())


def dataset(catalog):
    """The catalog's images and pool5, computed here without the unit code."""
    pathway = load_pathway(catalog.model, "cpu")
    images, owners, names = [], [], []
    for entry in catalog.classes:
        loaded = class_images(catalog.images, entry.id, catalog.images.per_class, catalog.seed, catalog.model.input_size)
        images.append(loaded.images)
        owners += [entry.slug] * len(loaded.names)
        names += list(loaded.names)
    images = torch.cat(images)
    with torch.no_grad():
        acts = pathway(images)
    return pathway, images, owners, names, acts


@pytest.fixture
def built(units_world):
    report = build(units_world, progress=False)
    assert report.ok and report.units is not None and report.units.ran, report.summary()
    site.render(units_world.output)
    return units_world


def test_every_pool5_unit_and_every_chosen_fc_unit_has_a_page(built):
    manifest = units_manifest(built)
    pages = built.output / "units"
    assert sorted(u["index"] for u in manifest["layers"]["pool5"]["units"]) == [0, 1, 2, 3]  # 4 channels
    for layer in ("pool5", "fc6", "fc7"):
        units = manifest["layers"][layer]["units"]
        assert units and (pages / layer / "index.html").is_file()
        for unit in units:
            html = (pages / layer / f"{unit['index']}.html").read_text()
            assert f"{layer} unit {unit['index']}" in html
            assert len(unit["patches"]) == 4 and all((pages / p["file"]).is_file() for p in unit["patches"])
            kinds = [p["key"] for p in unit["pictures"]]
            assert kinds[:2] == ["plain", "prior"] and all((pages / p["file"]).is_file() for p in unit["pictures"])
    for entry in manifest["classes"]:  # each class page links to its fc units, which have pages
        assert len(entry["units"]["fc7"]) == 2
        html = (built.output / "classes" / entry["slug"] / "index.html").read_text()
        for index in entry["units"]["fc7"]:
            assert f'href="../../units/fc7/{index}.html"' in html
    assert (pages / manifest["conv1"]["file"]).is_file()


def test_pages_link_prev_and_next_in_index_order(built):
    manifest = units_manifest(built)
    order = [u["index"] for u in manifest["layers"]["pool5"]["units"]]
    for i, index in enumerate(order):
        html = (built.output / "units" / "pool5" / f"{index}.html").read_text()
        prev = re.search(r'rel="prev" href="(\d+)\.html"', html)
        nxt = re.search(r'rel="next" href="(\d+)\.html"', html)
        assert (int(prev.group(1)) if prev else None) == (order[i - 1] if i else None)
        assert (int(nxt.group(1)) if nxt else None) == (order[i + 1] if i + 1 < len(order) else None)


def test_top_patches_are_the_argmax_receptive_fields(built):
    """Top images by the channel's maximum over positions, the crop the receptive field of the
    argmax position: in this net a pool5 cell (i, j) averages 4x4 cells of a 4x4 max-pool over a
    3x3 conv (padding 1), so it sees pixels [16 i - 1, 16 i + 17) clipped to the 32-px image."""
    _, images, owners, names, acts = dataset(built)
    values, where = acts.pool5.flatten(2).max(2)
    for unit in units_manifest(built)["layers"]["pool5"]["units"]:
        c = unit["index"]
        expected = values[:, c].topk(4).indices.tolist()
        got = [(p["class"], p["name"]) for p in unit["patches"]]
        assert got == [(owners[i], names[i]) for i in expected]
        for patch, i in zip(unit["patches"], expected):
            row, col = divmod(int(where[i, c]), acts.pool5.shape[3])
            box = [max(0, 16 * row - 1), max(0, 16 * col - 1), min(32, 16 * row + 17), min(32, 16 * col + 17)]
            assert patch["position"] == [row, col] and patch["box"] == box
            assert patch["activation"] == pytest.approx(float(values[i, c]), rel=1e-5)
            with Image.open(built.output / "units" / patch["file"]) as crop:
                assert crop.size == (box[3] - box[1], box[2] - box[0])


def test_receptive_fields_match_the_pixels_a_position_depends_on(tiny_alexnet):
    """The analytic boxes equal the pixels whose gradient reaches each position, measured on a
    linear copy of the net (max-pools as average pools, no ReLU: every pixel of the field counts)."""
    pathway = tiny_alexnet(size=96)
    linear = copy.deepcopy(pathway)
    for i, layer in enumerate(linear.features):
        if isinstance(layer, nn.MaxPool2d):
            linear.features[i] = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, nn.ReLU):
            linear.features[i] = nn.Identity()
    boxes = units_run.receptive_fields(pathway)
    assert boxes.shape == (6, 6, 4)
    image = torch.rand(1, 3, 96, 96, requires_grad=True)
    pool5 = linear.trunk(image)
    for i, j in [(0, 0), (2, 3), (5, 5)]:
        (grad,) = torch.autograd.grad(pool5[0, :, i, j].sum(), image, retain_graph=True)
        reached = grad[0].abs().sum(0) > 0
        rows, cols = reached.any(1).nonzero().flatten(), reached.any(0).nonzero().flatten()
        assert boxes[i, j].tolist() == [int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1]


class Pooled(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(6, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def test_a_pooled_trunk_falls_back_to_measured_fields():
    pathway = Pathway(Pooled(), input_size=16)
    assert units_run._analytic_fields(pathway) is not None  # a plain stack: still analytic
    boxes = units_run._gradient_fields(pathway)
    assert boxes.shape == (8, 8, 4) and boxes[0, 0].tolist()[:2] == [0, 0] and boxes[7, 7].tolist()[2:] == [16, 16]
    assert torch.equal(units_run._analytic_fields(pathway)[3, 4], boxes[3, 4])


def test_texture_inverts_a_code_with_every_other_channel_zeroed(built):
    pathway, images, owners, names, acts = dataset(built)
    kept = units_run.texture_target(acts.pool5[0], 2)
    assert torch.equal(kept[2], acts.pool5[0, 2]) and kept[[0, 1, 3]].abs().sum() == 0
    manifest = units_manifest(built)
    unit = next(u for u in manifest["layers"]["pool5"]["units"] if u["index"] == 2)
    data = units_run.load_dataset(built, pathway, progress=False)
    job = units_run._Job(unit, "texture", "key")
    settings = units_run.texture_settings(built.engine, built.units)
    problem = units_run._problem(job, built, pathway, data, settings, seed=0)
    match = next(t for t in problem.terms if isinstance(t, ChannelMatch))
    top = unit["patches"][0]
    source = next(i for i in range(len(names)) if (owners[i], names[i]) == (top["class"], top["name"]))
    assert match.channel == 2 and torch.allclose(match.target, acts.pool5[source, 2])
    if unit["patches"][0]["activation"] > 0:
        assert [p["key"] for p in unit["pictures"]] == ["plain", "prior", "texture"]
        texture = next(p for p in unit["pictures"] if p["key"] == "texture")
        assert 0 <= texture["numbers"]["feature_error"] < 10


def test_textures_carry_their_channel_on_the_trained_demo_net(demo_world):
    """On the demo world's trained CNN, the textures of three pool5 channels (the strongest of each
    of three classes; same seed, defaults) reproduce their channels' maps far better than a grey
    image does (grey: silent, error 1), and better than the other channels' textures do: the
    texture depends on the channel. Mean error over the three, own against grey and against the
    others' textures: 0.47 and 0.54x on the net trained with SSE4.1 kernels, 0.33 and 0.30x
    (AVX2), 0.39 and 0.48x (AVX-512); with the match reading channel 0 whatever its channel,
    0.75-0.87 and 0.82-0.90x. Raw-pixel textures scored about grey's 1 here."""
    from generator.catalog import ImageSpec

    pathway = demo_world.pathway()
    images = torch.cat([class_images(ImageSpec("folder", demo_world.image_root), c, 8, 0, demo_world.input_size).images
                        for c in demo_world.class_ids[:3]])
    with torch.no_grad():
        strength = pathway.trunk(images).flatten(2).max(2).values  # (N, C)
    channels: list[int] = []
    for rows in strength.split(8):  # one class's images: its strongest channel not chosen yet
        best = rows.max(0).values
        best[channels] = -1
        channels.append(int(best.argmax()))
    tops = images[strength[:, channels].argmax(0)]
    params = UnitsParams()
    settings = units_run.texture_settings(None, params)
    problems = [units_run.texture_problem(pathway, tops[i], c, settings, params.texture_start_std, seed=0)
                for i, c in enumerate(channels)]
    textures = torch.stack([s.image for s in units_run.solve(pathway, problems, settings, progress=False)])
    maps = torch.stack([p.terms[0].target for p in problems])
    own = units_run.texture_errors(pathway, textures, maps, channels)
    grey = units_run.texture_errors(pathway, torch.full_like(textures, 0.5), maps, channels)
    others = [e for k in (1, 2) for e in units_run.texture_errors(pathway, textures.roll(k, 0), maps, channels)]
    assert sum(own) < 0.6 * sum(grey), (channels, own, grey)
    assert sum(own) / len(own) < 0.7 * sum(others) / len(others), (channels, own, others)


def test_texture_match_reaches_a_channel_that_is_silent_at_the_start(tiny_alexnet, smooth_images):
    """Matched before its ReLU (`pre_activation`), a channel that is exactly 0 on the start still
    moves to its map; matched after the ReLU it gets no gradient and stays as silent as grey."""
    pathway = tiny_alexnet(size=96, dropout=False)
    images = smooth_images(8, 96)
    with torch.no_grad():
        on_grey = pathway.trunk(torch.full((1, 3, 96, 96), 0.5))[0].flatten(1).max(1).values
        strength = pathway.trunk(images).flatten(2).max(2).values
    channel = next(c for c in range(16) if on_grey[c] == 0 and strength[:, c].max() > 0)
    settings = units_run.texture_settings(None, UnitsParams(texture_iterations=16, texture_init_std=0.0))
    before = units_run.texture_problem(pathway, images[strength[:, channel].argmax()], channel, settings, 0.0, seed=0)
    match = before.terms[0]
    assert isinstance(match, ChannelMatch) and match.before == "features.6"  # conv3, then ReLU, max pool
    after = Problem([ChannelMatch(match.target, channel), *before.terms[1:]], seed=0)
    textures = torch.stack([s.image for s in solve(pathway, [before, after], settings, progress=False)])
    errors = units_run.texture_errors(pathway, textures, match.target.expand(2, -1, -1), [channel, channel])
    assert errors[0] < 0.5 and errors[1] == pytest.approx(1.0), errors


def test_layer_index_is_sorted_by_class_selectivity(built):
    _, _, owners, _, acts = dataset(built)
    values = acts.pool5.flatten(2).max(2).values
    slugs = [e.slug for e in built.classes]
    means = torch.stack([values[[o == s for o in owners]].mean(0) for s in slugs])
    top = means.max(0).values
    rest = (means.sum(0) - top) / (len(slugs) - 1)
    expected = ((top - rest) / (top.abs() + rest.abs()).clamp_min(1e-8)).tolist()
    html = (built.output / "units" / "pool5" / "index.html").read_text()
    order = [int(n) for n in re.findall(r'data-unit="(\d+)"', html)]
    assert sorted(order) == [0, 1, 2, 3]
    shown = [expected[i] for i in order]
    assert shown == sorted(shown, reverse=True)
    for unit in units_manifest(built)["layers"]["pool5"]["units"]:
        assert unit["selectivity"] == pytest.approx(expected[unit["index"]], abs=1e-6)
    assert 'loading="lazy"' in html


def _forbid(*_args, **_kwargs):
    raise AssertionError("a fresh unit atlas must not load the model or decode images")


def test_incremental_rebuild_reruns_only_what_changed(built, monkeypatch):
    before = units_manifest(built)
    monkeypatch.setattr(build_module, "_PATHWAYS", {})
    monkeypatch.setattr(build_module, "_load_pathway", _forbid)
    monkeypatch.setattr(build_module, "_class_images", _forbid)
    again = build(built, progress=False)
    assert again.ok and again.ran == [] and again.units is None and again.units_planned is None, again.summary()
    assert build(built, dry_run=True, progress=False).units_planned is None
    assert units_manifest(built) == before


def test_changing_the_units_section_reruns_units_only(built):
    first = units_manifest(built)
    fewer = dataclasses.replace(built, units=dataclasses.replace(built.units, textures=False))
    assert build(fewer, dry_run=True, progress=False).units_planned == "params changed"
    report = build(fewer, progress=False)
    # the class methods are fresh; the unit step reuses every visualization and drops the textures
    assert report.ok and report.ran == [] and report.units.ran, report.summary()
    assert report.units.solved == 0 and report.units.reused == sum(2 * len(layer["units"]) for layer in first["layers"].values())
    assert all("texture" not in [p["key"] for p in u["pictures"]] for u in units_manifest(fewer)["layers"]["pool5"]["units"])
    longer = dataclasses.replace(fewer, units=dataclasses.replace(fewer.units, iterations=4))
    report = build(longer, progress=False)
    assert report.ran == [] and report.units.reused == 0 and report.units.solved == report.units.reused + \
        sum(2 * len(layer["units"]) for layer in first["layers"].values())


def test_clean_drops_the_pictures_the_unit_manifest_no_longer_names(built):
    from generator.build import clean

    textures = [built.output / "units" / p["file"] for u in units_manifest(built)["layers"]["pool5"]["units"]
                for p in u["pictures"] if p["key"] == "texture"]
    assert textures and all(path.is_file() for path in textures)
    fewer = dataclasses.replace(built, units=dataclasses.replace(built.units, textures=False))
    assert build(fewer, progress=False).units.ran
    removed = clean(fewer)
    assert set(textures) <= set(removed) and not any(path.exists() for path in textures)
    kept = units.manifest_files(units_manifest(fewer))
    assert kept and all((built.output / "units" / name).is_file() for name in kept)


def test_units_section_is_validated_and_can_switch_the_atlas_off(tmp_path, units_world):
    raw = {"model": {"name": units_world.model.name, "weights": units_world.model.weights, "num_classes": 3,
                     "labels": list(units_world.model.labels), "input_size": 32},
           "images": {"source": "folder", "root": str(units_world.images.root), "per_class": 3},
           "classes": [e.id for e in units_world.classes], "output": str(tmp_path / "site")}
    assert parse_catalog(raw, tmp_path).units == UnitsParams()
    assert parse_catalog({**raw, "units": {"top_k": 3, "enabled": False}}, tmp_path).units.top_k == 3
    with pytest.raises(CatalogError, match=r"units\.top_k: must be at least 1"):
        parse_catalog({**raw, "units": {"top_k": 0}}, tmp_path)
    with pytest.raises(CatalogError, match=r"units\.layer"):
        parse_catalog({**raw, "units": {"layer": "fc6"}}, tmp_path)
    off = dataclasses.replace(units_world, units=UnitsParams(enabled=False))
    report = build(off, progress=False)
    assert report.ok and report.units is None and not (off.output / "units").exists()


def test_only_units_builds_no_class(units_world):
    report = build(units_world, only=["units"], progress=False)
    assert report.ok and report.ran == [] and report.units.ran
    assert not (units_world.output / "classes").exists()


def test_the_unit_step_gets_the_threads_the_class_workers_had(units_world, monkeypatch):
    import generator.build as build_module
    import generator.units.run as units_run

    seen: list[int] = []
    real = units_run.run_units
    monkeypatch.setattr(units_run, "run_units", lambda *args: seen.append(torch.get_num_threads()) or real(*args))
    monkeypatch.setattr(build_module, "_run_all", lambda *args: iter(()))  # no class workers: only the unit step
    monkeypatch.setattr(build_module.os, "cpu_count", lambda: 4)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert build(units_world, workers=2, progress=False).units.ran
        assert torch.get_num_threads() == 1  # given back after the step
    finally:
        torch.set_num_threads(before)
    assert seen == [4]  # two workers of two threads each were done: four threads for the units


def test_the_unit_step_reads_its_ledger_once_per_batch_not_once_per_file(units_world, monkeypatch):
    from generator import store

    reads: list[int] = []
    real = store.ledger
    monkeypatch.setattr(store, "ledger", lambda folder: reads.append(1) or real(folder))
    report = build(units_world, only=["units"], progress=False)
    pictures = [p for layer in json.loads((units_world.output / "units" / "manifest.json").read_text())["layers"].values()
                for unit in layer["units"] for p in unit["pictures"] + unit["patches"]]
    # several files per picture and patch, written in a handful of batches: a read per file would be hundreds
    assert report.units.ran and len(pictures) > 50 and len(reads) <= 10
    assert set(store.ledger(units_world.output / "units")) >= {p["file"] for p in pictures}


POOLED_NET = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(5, 6, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(6, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def build(num_classes=3):
    return Net(num_classes)
'''


def test_a_pooled_net_has_pool5_and_fc7_pages_and_says_fc6_is_absent(units_world):
    import importlib.util

    root = Path(units_world.model.weights).parent
    (root / "pooled_net.py").write_text(POOLED_NET)
    spec = importlib.util.spec_from_file_location("pooled_net", root / "pooled_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save(module.build().state_dict(), root / "pooled.pt")
    pooled = dataclasses.replace(units_world, model=dataclasses.replace(
        units_world.model, name=f"{root / 'pooled_net.py'}:build", weights=str(root / "pooled.pt")))
    report = build(pooled, only=["units"], progress=False)
    assert report.ok, report.summary()
    manifest = units_manifest(pooled)
    assert set(manifest["layers"]) == {"pool5", "fc7"} and "no fc6" in manifest["absent"]["fc6"]
    assert len(manifest["layers"]["pool5"]["units"]) == 6


def test_conv1_grid_shows_each_filter_with_zero_at_mid_grey(tiny_alexnet):
    pathway = tiny_alexnet(size=96)
    conv = pathway.features[0]
    with torch.no_grad():
        conv.weight[1] = 0.0  # a filter of zeros is flat mid-grey
    grid = units_run.conv1_grid(pathway, scale=2, gap=1)
    cell = 5 * 2 + 1  # 8 filters of 5x5 -> 3 columns, 3 rows
    assert grid.shape == (3, 3 * cell + 1, 3 * cell + 1)
    second = grid[:, 1: 1 + 10, 1 + cell: 1 + cell + 10]
    assert torch.allclose(second, torch.full_like(second, 0.5))
    first = grid[:, 1: 1 + 10, 1: 1 + 10]
    assert first.min() >= 0 and first.max() <= 1 and (first - 0.5).abs().max() == pytest.approx(0.5)


def test_unit_pictures_go_through_the_fourier_parameterization_from_a_smooth_start(units_world, monkeypatch):
    """The visualizations are solved in the engine's decorrelated Fourier coordinates through its
    transforms, from a smooth start; the textures (a spatial target) in Fourier coordinates too, jittered only.
    Raw-pixel unit pictures from noise fail here."""
    from generator.methods.metrics import high_frequency_share

    calls, solve = [], units_run.solve

    def recording_solve(pathway, problems, settings, **kwargs):
        calls.append((settings, [p.label.split("/")[-1] for p in problems], problems))
        return solve(pathway, problems, settings, **kwargs)

    monkeypatch.setattr(units_run, "solve", recording_solve)
    assert build(units_world, only=["units"], progress=False).units.ran
    shown = [(s, problems) for s, variants, problems in calls if set(variants) <= {"plain", "prior"}]
    inverted = [(s, problems) for s, variants, problems in calls if set(variants) == {"texture"}]
    assert shown and inverted and len(shown) + len(inverted) == len(calls)  # never mixed in one solve
    for settings, problems in shown:
        assert settings.param == "fourier" and settings.jitter > 0 and settings.pad > 0
        assert settings.scale > 0 and settings.rotate > 0  # the engine's defaults: catalog engine {}
        starts = torch.stack([p.init for p in problems])
        assert (high_frequency_share(starts) < 0.5).all()  # white noise: ~0.8
    for settings, problems in inverted:  # a spatial target: a small jitter, nothing that moves the picture further
        assert settings.param == "fourier" and (settings.jitter, settings.pad, settings.scale, settings.rotate) == (2, 0, 0, 0)
        assert (settings.init_std, settings.iterations) == (units_world.units.texture_init_std, units_world.units.texture_iterations)
        assert (high_frequency_share(torch.stack([p.init for p in problems])) < 0.5).all()
    for unit in units_manifest(units_world)["layers"]["pool5"]["units"]:
        plain = next(p for p in unit["pictures"] if p["key"] == "plain")
        assert "decorrelated Fourier coordinates" in plain["caption"] and "start_activation" in plain["numbers"]


def _plain_pictures(pathway, params, units):
    """The unit step's plain pictures of `units` under `params`, and their starts."""
    from types import SimpleNamespace

    catalog = SimpleNamespace(units=params, engine={})
    settings = units_run.visualization_settings(catalog.engine, params)
    jobs = [units_run._Job({"layer": layer, "index": index, "patches": []}, "plain", "") for layer, index in units]
    problems = [units_run._problem(job, catalog, pathway, None, settings, seed=i) for i, job in enumerate(jobs)]
    images = torch.stack([s.image for s in units_run.solve(pathway, problems, settings, progress=False)])
    starts = torch.stack([units_run.initial_image(p, pathway.input_size, settings.init_std) for p in problems])
    return images, starts


RAW_PIXELS = UnitsParams(iterations=16, parameterization="pixels", jitter=0, init_std=0.5, start_std=0.0)  # raw pixels from noise


def test_unit_pictures_are_not_static(tiny_alexnet):
    """The unit step's pictures keep little power at high spatial frequencies; raw pixels from
    noise make static (white noise: ~0.8 of the power above 0.25 cycles/px)."""
    from generator.methods.metrics import high_frequency_share

    pathway = tiny_alexnet(size=96, dropout=False)
    units = [("pool5", i) for i in range(0, 16, 2)] + [("fc7", i) for i in range(0, 32, 8)]
    shares = {name: float(high_frequency_share(_plain_pictures(pathway, params, units)[0]).mean())
              for name, params in {"fourier": UnitsParams(), "pixels": RAW_PIXELS}.items()}
    assert shares["fourier"] < 0.1 < 0.4 < shares["pixels"], shares


def test_unit_pictures_raise_their_units_activation_on_the_trained_net(shared_pathway):
    """On the shared alexnet-slim, each unit's picture drives it far above its start (pool5: the
    channel's maximum over positions), and photo-like in its spectrum (photos: ~0.03)."""
    from generator.methods.metrics import high_frequency_share

    units = [("pool5", 24), ("pool5", 56), ("pool5", 112), ("fc7", 86)]
    images, starts = _plain_pictures(shared_pathway, UnitsParams(), units)
    reached = units_run.unit_activations(shared_pathway, images, units)
    before = units_run.unit_activations(shared_pathway, starts, units)
    assert all(r > 2 * b + 0.5 for r, b in zip(reached, before)), list(zip(units, before, reached))
    assert float(high_frequency_share(images).max()) < 0.05
