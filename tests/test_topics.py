"""fc7 topics (Sec. 4.2): NMF, the m7 masks and their fallback, retrieval, and the planted styles."""
from __future__ import annotations

import types

import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from generator.engine.terms import Direction
from generator.methods import topics
from generator.methods.common import coarse_mean, engine_settings, fc7_of


def two_style_fc7(n_per_style: int = 10, dim: int = 32, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """fc7-like data from two non-negative directions on disjoint units, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.zeros(dim), torch.zeros(dim)
    a[: dim // 2] = 2.0
    b[dim // 2 :] = 2.0
    weights = 0.5 + torch.rand(2 * n_per_style, 1, generator=g)
    rows = torch.cat([a.expand(n_per_style, dim), b.expand(n_per_style, dim)]) * weights
    noise = 0.05 * torch.rand(2 * n_per_style, dim, generator=g)
    return rows + noise, [0] * n_per_style + [1] * n_per_style


def test_nmf_separates_two_planted_directions_deterministically():
    fc7, styles = two_style_fc7()
    basis, loadings = topics.fit_nmf(fc7, 2, seed=0)
    assert basis.shape == (2, 32) and loadings.shape == (2, 20)
    assert (basis >= 0).all() and (loadings >= 0).all()
    assert normalized_mutual_info_score(styles, loadings.argmax(0).tolist()) == pytest.approx(1.0)
    again, _ = topics.fit_nmf(fc7, 2, seed=0)
    assert torch.equal(basis, again)


def test_nmf_rejects_too_few_images_and_non_finite_features():
    with pytest.raises(ValueError, match="at least 5 images"):
        topics.fit_nmf(torch.rand(3, 8), 5)
    with pytest.raises(ValueError, match="finite"):
        topics.fit_nmf(torch.full((6, 8), float("nan")), 2)


def test_a_signed_fc7_is_factorized_as_its_sign_split():
    """Two styles on the same units with opposite signs (a LayerNorm'd pooled vector can do that):
    clipping at 0 would lose the second style; the split [relu(x), relu(-x)] separates them, and
    both topics' m7 keep those units of the real vector."""
    fc7, styles = two_style_fc7(dim=32)
    signed = torch.cat([fc7[:10, :16], -fc7[10:, 16:]])  # style 0: units 0-15 up; style 1: units 0-15 down
    signed = torch.cat([signed, 0.05 * torch.rand(20, 16, generator=torch.Generator().manual_seed(1))], 1)
    basis, loadings = topics.fit_nmf(signed, 2, seed=0)
    assert basis.shape == (2, 64) and (basis >= 0).all() and (loadings >= 0).all()
    assert normalized_mutual_info_score(styles, loadings.argmax(0).tolist()) == pytest.approx(1.0)
    model = topics.topic_masks_for(types.SimpleNamespace(fc7_dim=32), signed, k=2, threshold=1.0)
    assert model.signed and model.masks.shape == (2, 32)
    assert all(m[:16].all() and not m[16:].any() for m in model.masks)
    loadings = topics.style_loadings(model.basis, signed)
    assert loadings.shape == (20, 2) and loadings[:10].argmax(1).unique().numel() == 1
    assert not topics.topic_masks_for(types.SimpleNamespace(fc7_dim=32), fc7, k=2).signed  # post-ReLU: as is


def test_mask_uses_threshold_or_records_the_quantile_fallback():
    row = torch.linspace(0, 2, 101)
    mask, rule, cutoff = topics.topic_mask(row, threshold=1.0, min_units=10, keep_fraction=0.25)
    assert rule == "threshold" and cutoff == 1.0 and int(mask.sum()) == 50
    small = row / 100  # fc7 on another scale: nothing passes tau = 1
    mask, rule, cutoff = topics.topic_mask(small, threshold=1.0, min_units=10, keep_fraction=0.25)
    assert rule == "quantile" and int(mask.sum()) == 26 and cutoff == pytest.approx(0.015)


def test_topic_masks_for_checks_dimensions_and_keeps_a_mask_per_topic(demo_net):
    pathway = demo_net()
    fc7, _ = two_style_fc7()
    model = topics.topic_masks_for(pathway, fc7, k=2, threshold=1.0)
    assert model.masks.shape == (2, 32) and len(model.rule) == 2
    assert all(int(m.sum()) >= 1 for m in model.masks)
    # the two topics open the two planted halves of the units
    assert topics.mask_distinctness(model.masks) > 0.9
    with pytest.raises(ValueError, match=r"\(N, 32\)"):
        topics.topic_masks_for(pathway, torch.rand(10, 7), k=2)


def test_style_loadings_project_onto_the_basis():
    fc7, styles = two_style_fc7()
    basis, _ = topics.fit_nmf(fc7, 2)
    loadings = topics.style_loadings(basis, fc7)
    assert loadings.shape == (20, 2) and (loadings >= 0).all()
    topic_of_first_style = int(loadings[0].argmax())
    ranked = topics.style_retrieval(basis, fc7, topic_of_first_style, top=5)
    assert len(ranked) == 5 and all(styles[i] == 0 for i, _ in ranked)
    assert [x for _, x in ranked] == sorted((x for _, x in ranked), reverse=True)


def test_run_reports_topics_retrieved_images_and_assignments(tiny_context):
    ctx = tiny_context(n=10)
    result = topics.run(ctx, {"k": 3, "images": 10, "retrieved": 4})
    assert [p.key for p in result.pictures] == ["topic-0", "topic-1", "topic-2"]
    meta = result.pictures[1].meta
    assert meta.topic == 1 and meta.units == int(result.numbers["units"][1]) and meta.notes["rule"] in ("threshold", "quantile")
    assert len(meta.retrieved) == 4 and all(0 <= r.image < 10 for r in meta.retrieved)
    loadings = [r.numbers["loading"] for r in meta.retrieved]
    assert loadings == sorted(loadings, reverse=True)
    assert len(result.numbers["assignments"]) == 10 and set(result.numbers["assignments"]) <= {0, 1, 2}
    nearest = [p.numbers["nearest_topic"] for p in result.pictures]
    assert set(nearest) <= {1, 2, 3}  # numbered from 1, like the captions
    assert result.numbers["picture_match"] == sum(n == k + 1 for k, n in enumerate(nearest)) / 3


def test_nearest_topics_by_fc7_cosine():
    topic_fc7 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    pictures = torch.tensor([[5.0, 1.0, 0.0], [0.0, 0.2, 3.0], [0.0, 4.0, 0.1]])  # scale does not matter
    assert topics.nearest_topics(pictures, topic_fc7) == [0, 2, 1]


@pytest.mark.slow
def test_topics_recover_the_planted_styles(demo_context, demo_world):
    """NMI between each image's strongest topic and its planted style, K = number of styles."""
    scores = []
    for class_id in demo_world.class_ids:
        ctx = demo_context(demo_world, class_id, n=50, engine={"iterations": 1})
        result = topics.run(ctx, {"k": demo_world.n_styles(class_id), "prior": False})
        truth = [demo_world.style_of(name) for name in ctx.image_names]
        scores.append(normalized_mutual_info_score(truth, result.numbers["assignments"]))
    assert sum(scores) / len(scores) >= 0.7, scores


def test_the_direction_weight_adds_each_topics_own_centred_fc7_direction(tiny_context, monkeypatch):
    """`direction` > 0: each topic's problem also pushes fc7 along its retrieved images' mean minus
    the class's mean (the style that sets the topic apart); 0 leaves the objective as it was."""
    ctx = tiny_context(n=10)
    seen: list[list] = []
    real_solve = topics.solve
    monkeypatch.setattr(topics, "solve", lambda pathway, problems, *a, **k: seen.append(problems) or real_solve(pathway, problems, *a, **k))
    plain = topics.run(ctx, {"k": 2, "images": 10, "retrieved": 3})
    pushed = topics.run(ctx, {"k": 2, "images": 10, "retrieved": 3, "direction": 2.0})
    assert not any(isinstance(t, Direction) for p in seen[0] for t in p.terms)
    fc7 = ctx.features.fc7[:10]
    for problem, picture in zip(seen[1], pushed.pictures):
        (term,) = [t for t in problem.terms if isinstance(t, Direction)]
        shown = [r.image for r in picture.meta.retrieved]
        assert term.layer == "fc7" and term.weight == 2.0
        assert torch.allclose(term.vector, fc7[shown].mean(0) - fc7.mean(0))
    assert [p.meta.retrieved for p in plain.pictures] == [p.meta.retrieved for p in pushed.pictures]


def test_a_facet_start_is_the_coarse_mean_of_the_top_facet_images(tiny_context, monkeypatch):
    """`facet_images`: the start is the coarse mean of that many of the topic's top retrieved
    images (None: all `retrieved`), and the caption says which."""
    ctx = tiny_context(n=10)
    seen: list[list] = []
    real_solve = topics.solve
    monkeypatch.setattr(topics, "solve", lambda pathway, problems, *a, **k: seen.append(problems) or real_solve(pathway, problems, *a, **k))
    params = {"k": 2, "images": 10, "retrieved": 3, "facet_side": 4}
    for run, count in ((topics.run(ctx, params), 3), (topics.run(ctx, {**params, "facet_images": 1}), 1)):
        for k, (problem, picture) in enumerate(zip(seen.pop(0), run.pictures)):
            shown = [r.image for r in picture.meta.retrieved][:count]
            expected = coarse_mean(ctx.images[shown], 4, engine_settings(ctx, {}).init_std, seed=ctx.seed + k)
            assert torch.equal(problem.init, expected)
            assert ("its top retrieved image blurred to 4 px" in picture.caption) == (count == 1)


def test_the_distribution_holds_a_topic_picture_to_its_top_distribution_images(tiny_context, monkeypatch):
    """`distribution_images`: the feature-distribution term's reference is that many of the topic's
    top retrieved images (None: all `retrieved`)."""
    ctx = tiny_context(n=10)
    held: list = []
    real_term = topics.distribution_term
    monkeypatch.setattr(topics, "distribution_term", lambda pathway, images, *a: held.append(images) or real_term(pathway, images, *a))
    params = {"k": 2, "images": 10, "retrieved": 3, "distribution": 5.0, "distribution_layers": "pool5"}
    for count, extra in ((3, {}), (1, {"distribution_images": 1})):
        run = topics.run(ctx, {**params, **extra})
        for images, picture in zip(held, run.pictures):
            assert torch.equal(images, ctx.images[[r.image for r in picture.meta.retrieved][:count]])
            held_to = "its top retrieved image'" if count == 1 else "its retrieved images'"
            assert f"feature distribution held to {held_to} (weight 5)" in picture.caption
        held.clear()


def test_forbid_quiets_the_units_each_topic_closes(demo_context, demo_world):
    """`forbid` > 0 makes a topic's m7 a code, as the hierarchy's: its picture pays for fc7 activity
    on the units the topic leaves closed, so each picture keeps to its own units (with only the gate,
    every topic's picture may drive the class's common units too).

    Asserted on the total over the class's topics against the gate-only pictures of the same net:
    a topic whose closed units are near 0 either way goes up or down with the CPU kernel (one rose
    from 0.024 to 0.027 with AVX-512 kernels). The total fell to 0.05x of the gate-only total on
    the net trained with SSE4.1 kernels, 0.24-0.26x (AVX2), 0.03x (AVX-512)."""
    ctx = demo_context(demo_world, demo_world.class_ids[0], n=20, engine={"iterations": 20})
    params = {"k": 3, "images": 20, "retrieved": 4, "prior": False}
    model = topics.topic_masks_for(ctx.pathway, ctx.features.fc7[:20], k=3, seed=ctx.seed)
    closed = {}
    for forbid in (0.0, 2.5):
        result = topics.run(ctx, {**params, "forbid": forbid})
        fc7 = fc7_of(ctx.pathway, torch.stack([p.image for p in result.pictures]))
        closed[forbid] = (fc7 * (1 - model.masks)).mean(1)  # per topic picture
        assert ("forbidden" in result.pictures[0].caption) == (forbid > 0)
    assert float(closed[2.5].sum()) < 0.5 * float(closed[0.0].sum()), closed


def test_forbid_defaults_by_layout():
    """None: the hierarchy's 2.5 on an fc-head net, 0 (gate only) on a globally pooled one."""
    assert topics.topic_forbid(types.SimpleNamespace(has_fc6=True), None) == topics.FORBID_FC_HEAD == 2.5
    assert topics.topic_forbid(types.SimpleNamespace(has_fc6=False), None) == 0.0
    assert topics.topic_forbid(types.SimpleNamespace(has_fc6=False), 1.5) == 1.5
