"""NMF on a signed pooled vector: ConvNeXt's comes after a LayerNorm, so it has negative values;
the topics and the diagnostics that colour images by topic (neighbours, fc7map) factorize its
split [relu(x), relu(-x)] and still give m7 masks over the real vector (random-init convnext_tiny
at 64 px: a 768x2x2 last map)."""
from __future__ import annotations

import pytest
import torch

import helpers
from generator.catalog import ModelSpec
from generator.methods import ClassContext, fc7map, neighbours, topics
from generator.methods.common import fit_nmf, nmf_input
from generator.nets.models import load_pathway

SIZE = 64


@pytest.fixture(scope="module")
def ctx() -> ClassContext:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        pathway = load_pathway(ModelSpec("convnext_tiny", num_classes=4, input_size=SIZE))
    return helpers.tiny_context(n=8, size=SIZE, engine={"iterations": 2, "lr": 0.05}, pathway=pathway)


def test_convnexts_pooled_vector_is_signed_and_nmf_gets_its_valid_split(ctx):
    fc7 = ctx.features.fc7
    assert (fc7 < 0).any() and fc7.shape == (8, 768)
    data = nmf_input(fc7)
    assert data.shape == (8, 1536) and (data >= 0).all()
    assert torch.equal(data[:, :768] - data[:, 768:], fc7)  # the split loses nothing
    basis, loadings = fit_nmf(fc7, 3)
    assert basis.shape == (3, 1536) and (basis >= 0).all() and (loadings >= 0).all()
    fit = (loadings.T @ basis - data).norm() / data.norm()
    assert fit < 0.9  # a factorization of the data, not of zeros


def test_topics_run_on_a_signed_pooled_vector_and_say_so(ctx):
    result = topics.run(ctx, {"k": 2, "images": 8, "retrieved": 2, "prior": False, "init": "noise"})
    assert result.numbers["nmf_input"].startswith("[relu(fc7), relu(-fc7)]")
    pictures = [p for p in result.pictures if p.key.startswith("topic")]
    assert len(pictures) == 2 and all("fc7 is signed" in p.caption for p in pictures)
    model = topics.topic_masks_for(ctx.pathway, ctx.features.fc7, k=2)
    assert model.signed and model.masks.shape == (2, 768) and all(0 < m.sum() < 768 for m in model.masks)
    with torch.no_grad():  # an m7 mask gates the real (signed) pooled vector
        kept = ctx.pathway(ctx.images[:1], {"fc7": model.masks[0]}).fc7
    assert torch.equal(kept == 0, (model.masks[0] == 0).expand_as(kept) | (ctx.features.fc7[:1] == 0))


def test_the_topic_diagnostics_run_on_a_signed_pooled_vector(ctx):
    near = neighbours.run(ctx, {"queries": 1, "k": 2, "topics": 2})
    assert 0 <= near.numbers["fc7_same_topic"] <= 1
    laid = fc7map.run(ctx, {"topics": 2, "perplexity": 2.0})
    assert len(laid.pictures) == 1 and "topic" in laid.pictures[0].caption
