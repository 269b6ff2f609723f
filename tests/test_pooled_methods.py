"""Every method on a globally pooled net (random-init resnet18 at 96 px: a 512x3x3 last map,
no fc6): the methods read which levels the net has instead of assuming AlexNet's."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import helpers
from generator.catalog import ModelSpec
from generator.engine import recipes
from generator.engine.settings import Settings, settings_from
from generator.engine.transforms import Jitter, RandomScale
from generator.methods import ClassContext, PriorParams, classviz, completion, ensemble, hierarchy, inversion, location, topics
from generator.nets.models import load_pathway
from generator.nets.pathway import as_gates

SIZE = 96
FAST_ENGINE = {"iterations": 4, "lr": 0.05, "prior_weight": 1.0, "rematch_every": 2}


@pytest.fixture(scope="module")
def ctx() -> ClassContext:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        pathway = load_pathway(ModelSpec("resnet18", num_classes=4, input_size=SIZE))
    return helpers.tiny_context(n=10, size=SIZE, engine=dict(FAST_ENGINE), pathway=pathway)


def test_the_window_grid_keeps_the_papers_3x3_layout_on_6x6_and_7x7_maps():
    assert location.auto_window(6) == (2, 2)  # the paper's 2x2 windows at stride 2 on AlexNet's pool5
    assert location.auto_window(7) == (3, 2)  # a ResNet / MobileNet last map: 3x3 windows at stride 2
    assert location.window_positions(7, 3, 2) == [0, 2, 4]  # rows 0-2, 2-4, 4-6: every cell covered
    assert location.auto_window(3) == (1, 1) and location.auto_window(14) == (5, 5)
    assert location.window_positions(14, 5, 5) == [0, 5, 9]


def test_a_pooled_window_mask_shows_the_net_the_windows_own_mean(ctx):
    pathway = ctx.pathway
    value = location.open_value(pathway, 1)
    assert value == 9.0  # 3x3 map, 1x1 window
    with torch.no_grad():
        acts = pathway(ctx.images[:2], {"pool5": location.window_mask(pathway.pool5_shape, 1, 2, 1, value)})
    assert torch.allclose(acts.fc7, acts.pool5[:, :, 1, 2], atol=1e-5)


@pytest.mark.slow
def test_every_method_runs_on_a_pooled_net(ctx):
    small_prior = dataclasses.replace(ctx, prior=PriorParams(images=4, patch=5, stride=4, max_patches=1000))
    viz = classviz.run(small_prior, {})  # the patch database's size is the class's (catalog `prior:`)
    assert [p.key for p in viz.pictures] == ["baseline", "prior"]

    grid = location.run(ctx, {})
    assert grid.numbers["grid"] == [3, 3] and grid.numbers["open_value"] == 9.0
    assert "3x3 pool5 grid" in grid.pictures[0].alt

    styles = topics.run(ctx, {"k": 2, "images": 10, "retrieved": 2})
    assert len([p for p in styles.pictures if p.key.startswith("topic")]) >= 2

    members = ensemble.run(ctx, {"masks": 2, "inits": 2})
    assert members.numbers["masked"] == ["m7"] and members.numbers["dropout_in_training"] == []
    assert "the pooled vector (fc7)" in members.pictures[0].caption

    codes = hierarchy.run(ctx, {"images": 1})
    assert codes.numbers["levels"] == ["m7", "m5-7"] and "no fc6" in codes.numbers["levels_note"]
    assert [p.key for p in codes.pictures] == ["image0-input", "image0-m7", "image0-m5-7"]
    assert codes.pictures[2].meta.notes["masks"] == ["m5", "m7"]
    assert "pixel_m6-7" not in codes.numbers and math.isfinite(codes.numbers["pixel_m5-7"])
    assert set(codes.pictures[1].numbers) >= {"iou_m5", "iou_m7"} and "iou_m6" not in codes.pictures[1].numbers

    params = {**inversion.DEFAULTS, "images": 1, "iterations": 3, "rematch_every": 2, "k": 2, "patch": 5}
    inverted = inversion.run(ctx, params)
    assert [p.key for p in inverted.pictures] == ["img0-original", "img0-retrieved", "img0-rand", "img0-avg",
                                                  "img0-prior"]
    assert inverted.numbers["database_pairs"] == 9 * 9  # 9 database images x the 3x3 last map
    assert math.isfinite(inverted.pictures[-1].numbers["feature_error"])


def test_the_diagnostics_run_on_a_pooled_net(ctx):
    """Pre-images and caricatures at the levels a pooled net has; Grad-CAM at its last map."""
    from generator.methods import caricatures, fc7map, neighbours, preimages, saliency

    inverted = preimages.run(ctx, {"iterations": 2})
    assert inverted.numbers["layers"] == ["pool5", "fc7", "fc8"]
    assert all(math.isfinite(v) for v in inverted.numbers["feature_error"].values())
    amplified = caricatures.run(ctx, {"iterations": 2, "layers": "conv3,pool5,fc7"})
    assert amplified.numbers["layers"] == ["pool5", "fc7"]
    maps = saliency.run(ctx, {"images": 1})
    assert maps.pictures[2].image.shape == (3, SIZE, SIZE) and maps.pictures[2].meta.step == "gradcam"
    assert len(neighbours.run(ctx, {"queries": 1}).pictures) == 1 and len(fc7map.run(ctx, {}).pictures) == 1


def test_completion_with_a_topic_style_on_a_pooled_net(ctx):
    style = topics.topic_masks_for(ctx.pathway, ctx.features.fc7, k=2)
    image, box = ctx.images[0], (20, 24, 40, 32)
    settings = settings_from(None, iterations=4, lr=0.05, l2=0.0, tv=0.0, jitter=0, prior_weight=0.01, rematch_every=2)
    result = completion.complete(ctx.pathway, image, box, class_index=1, topic_mask=style.masks[0], settings=settings)
    keep = completion.keep_mask(box, SIZE).bool().expand(3, -1, -1)
    assert torch.equal(result.image[keep], image[keep]) and result.score > result.start_score


def test_hierarchy_codes_and_levels_follow_the_net(ctx):
    assert hierarchy.levels_of(ctx.pathway) == (("m7", ("m7",)), ("m5-7", ("m5", "m7")))
    own = hierarchy.codes(ctx.pathway, ctx.images[:2])
    assert set(own) == {"m5", "m7"} and own["m7"].shape == (2, 512)
    with torch.no_grad():  # an image under its own code scores as without it (closed units were 0)
        assert torch.allclose(ctx.pathway(ctx.images[:2], as_gates(own)).fc8, ctx.pathway(ctx.images[:2]).fc8, atol=1e-5)


def test_hierarchy_claim_compares_the_levels_a_net_has():
    from generator.manifest import Manifest
    from generator.site.claims import hierarchy_claims

    def manifest(cls: str, m7: float, m57: float) -> dict:
        numbers = {f"{kind}_{lv}": v for kind in ("pixel", "fc7", "pixel_others") for lv, v in (("m7", m7), ("m5-7", m57))}
        return {"class": {"id": cls}, "methods": {"hierarchy": {"numbers": numbers}}}

    manifests = [Manifest.from_json(manifest("a", 0.6, 0.5)), Manifest.from_json(manifest("b", 0.7, 0.65))]
    claims = {c["id"]: c for c in hierarchy_claims(manifests)}
    assert claims["hierarchy-pixel"]["value"] == pytest.approx(0.075)


def test_coarse_and_mid_steps_reach_the_methods_and_the_ensemble_takes_them_only_when_asked(ctx):
    sides: list[int] = []
    handle = ctx.pathway.register_forward_pre_hook(
        lambda module, inputs: sides.append(inputs[0].shape[-1]) if torch.is_grad_enabled() else None)
    coarse_ctx = dataclasses.replace(ctx, engine={**ctx.engine, "coarse_size": 64, "coarse_until": 0.5})
    try:
        seen = {}
        for name, run in (("topics", lambda: topics.run(coarse_ctx, {"k": 2})),
                          ("ensemble", lambda: ensemble.run(coarse_ctx, {"masks": 1, "inits": 1})),
                          ("ensemble coarse", lambda: ensemble.run(coarse_ctx, {"masks": 1, "inits": 1, "coarse": True})),
                          # a method's own mid steps follow the engine's coarse ones; the ensemble takes its own
                          ("location mid", lambda: location.run(coarse_ctx, {"mid_size": 80, "mid_until": 0.75})),
                          ("ensemble mid", lambda: ensemble.run(coarse_ctx, {"masks": 1, "inits": 1, "mid_size": 80,
                                                                              "mid_until": 0.75}))):
            sides.clear()
            run()
            seen[name] = sorted(set(sides))
    finally:
        handle.remove()
    assert seen == {"topics": [64, SIZE], "ensemble": [SIZE], "ensemble coarse": [64, SIZE],
                    "location mid": [64, 80, SIZE], "ensemble mid": [80, SIZE]}


@pytest.mark.parametrize("module", [classviz, location, topics, ensemble])
def test_a_methods_detail_steps_reach_its_solves(ctx, module, monkeypatch):
    """The methods with a reference set take `detail_steps` (raw-pixel steps after the engine's):
    set, every solve runs that many more; unset, the engine's (0)."""
    real = module.solve
    seen: list[tuple[int, int]] = []

    def recording(pathway, problems, settings=None, **kwargs):
        solutions = real(pathway, problems, settings, **kwargs)
        seen.append((settings.detail_steps, len(solutions[0].energy)))
        return solutions

    monkeypatch.setattr(module, "solve", recording)
    small = {"classviz": {}, "location": {}, "topics": {"k": 2, "images": 8, "retrieved": 2},
             "ensemble": {"masks": 1, "inits": 1}}[module.__name__.rsplit(".", 1)[1]]
    result = module.run(ctx, {**small, "detail_steps": 3})
    assert seen and all(steps == 3 and energies == FAST_ENGINE["iterations"] + 3 for steps, energies in seen)
    if module in (classviz, topics):  # the captions say how the picture was made
        assert all("3 steps in raw pixels" in p.caption or "3 in raw pixels" in p.caption for p in result.pictures)
    seen.clear()
    module.run(ctx, small)
    assert seen and all(steps == 0 and energies == FAST_ENGINE["iterations"] for steps, energies in seen)


@pytest.mark.parametrize("module", [classviz, location, topics, ensemble, hierarchy], ids=lambda m: m.__name__.split(".")[-1])
def test_a_fourier_methods_own_schedule_and_transforms_reach_its_solve(ctx, module, monkeypatch):
    """Each method's `iterations` / `lr` / `scale` / `jitter` override the engine's for its own solves
    only, and its solve runs the transforms they make."""
    seen = []
    real = module.solve

    def recording(pathway, problems, settings, **kwargs):
        seen.append((settings.iterations, settings.lr, settings.scale, settings.jitter,
                     tuple(recipes.transforms(settings))))
        return real(pathway, problems, settings, **kwargs)

    monkeypatch.setattr(module, "solve", recording)
    result = module.run(ctx, {"iterations": 2, "lr": 0.123, "scale": 0.4, "jitter": 16})
    assert seen and {s[:4] for s in seen} == {(2, 0.123, 0.4, 16)}
    assert all(RandomScale(0.6, 1.4) in s[4] and Jitter(16) in s[4] for s in seen)
    made = [p for p in result.pictures if "code of" in p.caption or module is not hierarchy]  # not the hierarchy's inputs
    assert made and all("seen under a 0.6-1.4x zoom and shifts of up to 16 px" in p.caption for p in made)
    seen.clear()
    plain = module.run(ctx, {})
    assert not any("seen under" in p.caption for p in plain.pictures)
    engine = Settings()
    assert {s[:4] for s in seen} == {(FAST_ENGINE["iterations"], FAST_ENGINE["lr"], engine.scale, engine.jitter)}
