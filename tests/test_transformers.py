"""Vision transformers as pathways (random-init tiny torchvision ViT, Swin and MaxViT): a ViT's
pool5 is its patch tokens entering the last block, so a location window opens exactly its
tokens there and changes the class token (fc7); every method runs on it."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import helpers
from generator.catalog import ModelSpec
from generator.errors import ModelError, PathwayError
from generator.methods import ClassContext, classviz, ensemble, hierarchy, inversion, location, mean, topics
from generator.nets.families import CLASS_TOKEN, LEVEL_WORDS, POOLED_TOKEN, in_words, words_key
from generator.nets.models import load_pathway
from generator.nets.split import SplitPathway, token_fields
from generator.nets.transformers import pathway_for

SIZE = 32
FAST_ENGINE = {"iterations": 3, "lr": 0.05, "prior_weight": 1.0, "rematch_every": 2}


@pytest.fixture(scope="module")
def ctx() -> ClassContext:
    return helpers.tiny_context(n=10, size=SIZE, engine=dict(FAST_ENGINE), pathway=helpers.tiny_vit(SIZE))


def tokens_entering_last_block(pathway: SplitPathway, images: torch.Tensor, gates: dict) -> torch.Tensor:
    """The (B, 1 + N, C) tokens the last encoder block receives, class token first."""
    seen: list[torch.Tensor] = []
    block = pathway.features.model.encoder.layers[-1]
    handle = block.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            pathway(images, gates)
    finally:
        handle.remove()
    return seen[0]


def test_a_window_opens_exactly_its_patch_tokens_entering_the_last_block(ctx):
    pathway = ctx.pathway
    assert pathway.pool5_shape == (32, 4, 4) and pathway.levels == ("pool5", "fc7", "fc8") and pathway.tokens == CLASS_TOKEN
    assert location.open_value(pathway, 2) == 1.0  # attention does not average: no rescaling
    mask = location.window_mask(pathway.pool5_shape, 1, 2, 2)  # rows 1-2, cols 2-3
    tokens = tokens_entering_last_block(pathway, ctx.images[:2], {"pool5": mask})
    assert tokens.shape == (2, 1 + 16, 32)
    live = tokens[:, 1:].abs().sum(-1) > 0  # (B, 16) patch tokens in row-major order
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1:3, 2:4] = True
    assert torch.equal(live, expected.flatten().expand(2, -1))
    assert (tokens[:, 0].abs().sum(-1) > 0).all()  # the class token always enters
    with torch.no_grad():
        shut = pathway(ctx.images[:2], {"pool5": torch.zeros(pathway.pool5_shape)}).fc7
        opened = pathway(ctx.images[:2], {"pool5": mask}).fc7
    assert (opened - shut).abs().max() > 1e-3  # the window reaches the class token


def test_a_pool5_cell_is_the_patch_at_its_place_in_the_image():
    """In a one-block ViT the tokens entering the last block are the patch embeddings: changing
    the pixels of the patch in row 1, column 2 changes pool5 at (1, 2) and nowhere else."""
    torch.manual_seed(0)
    pathway = pathway_for(helpers.tiny_vit_model(4, depth=1), (0.5,) * 3, (0.5,) * 3, SIZE)
    image = torch.rand(1, 3, SIZE, SIZE)
    changed = image.clone()
    changed[..., 8:16, 16:24] = torch.rand(3, 8, 8)  # the patch at row 1, column 2 (8 px patches)
    with torch.no_grad():
        moved = (pathway.trunk(changed) - pathway.trunk(image)).abs().sum(1)[0] > 1e-6
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1, 2] = True
    assert torch.equal(moved, expected)


def test_only_the_windows_tokens_reach_the_class_token(ctx):
    """Change a token outside the window: fc7 stays; change one inside: fc7 moves. The class
    token entering the last block comes back as the stem's context."""
    pathway = ctx.pathway
    pool5, context = pathway.stem(ctx.images[:1])
    assert context.shape == (1, 1, 32)
    mask = location.window_mask(pathway.pool5_shape, 0, 0, 2)
    with torch.no_grad():
        base = pathway.head(pool5, {"pool5": mask}, context).fc7
        outside, inside = pool5.clone(), pool5.clone()
        change = torch.randn(32, generator=torch.Generator().manual_seed(0))  # not a constant: LayerNorm removes that
        outside[0, :, 3, 3] += change
        inside[0, :, 1, 1] += change
        assert torch.equal(pathway.head(outside, {"pool5": mask}, context).fc7, base)
        assert (pathway.head(inside, {"pool5": mask}, context).fc7 - base).abs().max() > 1e-3
        assert torch.allclose(pathway.head(pool5, None, context).fc8, pathway(ctx.images[:1]).fc8)
    with pytest.raises(ValueError, match="needs the class token entering its last block"):
        pathway.head(pool5)


def test_the_split_reproduces_the_vit_and_refuses_what_it_cannot_cut():
    torch.manual_seed(0)
    net = helpers.tiny_vit_model(4)
    pathway = pathway_for(net, (0.5,) * 3, (0.5,) * 3, SIZE)
    images = torch.rand(3, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(pathway(images).fc8, net((images - 0.5) / 0.5), atol=1e-5)
    assert (pathway(images).fc7 < 0).any()  # after a LayerNorm: signed
    assert "entering the last encoder block" in pathway.roles["pool5"] and "class token" in pathway.roles["fc7"]
    with pytest.raises(PathwayError, match="fails on a 48px input"):  # a ViT is built for one image size
        pathway_for(net, (0.5,) * 3, (0.5,) * 3, 48)


def test_a_vit_with_a_hidden_head_layer_has_fc6():
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    net = VisionTransformer(image_size=SIZE, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                            num_classes=3, representation_size=16)
    nn.init.normal_(net.heads.head.weight)
    pathway = pathway_for(net, (0.5,) * 3, (0.5,) * 3, SIZE)
    assert pathway.levels == ("pool5", "fc6", "fc7", "fc8") and pathway.fc6_dim == 32 and pathway.fc7_dim == 16
    with torch.no_grad():
        acts = pathway(torch.rand(2, 3, SIZE, SIZE))
    assert acts.fc7.abs().max() <= 1.0  # the hidden layer's tanh


def test_swin_and_maxvit_gate_their_last_token_grid():
    from torchvision.models import MaxVit, SwinTransformer

    torch.manual_seed(0)
    swin = SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=[2, 2],
                           num_classes=3)
    pathway = pathway_for(swin, (0.5,) * 3, (0.5,) * 3, SIZE)
    assert pathway.family == "pooled" and pathway.tokens == POOLED_TOKEN and pathway.pool5_shape == (32, 4, 4)
    value = location.open_value(pathway, 1)
    with torch.no_grad():  # a one-cell window: the pooled token is that cell's token
        acts = pathway(torch.rand(2, 3, SIZE, SIZE), {"pool5": location.window_mask(pathway.pool5_shape, 2, 1, 1, value)})
    assert torch.allclose(acts.fc7, acts.pool5[:, :, 2, 1], atol=1e-5)
    maxvit = MaxVit(input_size=(64, 64), stem_channels=8, partition_size=2, block_channels=[16, 32], block_layers=[1, 1],
                    head_dim=8, stochastic_depth_prob=0.0, num_classes=3)
    pathway = pathway_for(maxvit, (0.5,) * 3, (0.5,) * 3, 64)
    assert pathway.levels == ("pool5", "fc6", "fc7", "fc8") and pathway.pool5_shape == (32, 8, 8)
    assert pathway.masks == ("m5", "m6", "m7")


def test_torchvision_transformers_load_by_name_with_a_random_head():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        pathway = load_pathway(ModelSpec("vit_b_32", num_classes=3, input_size=64))  # built for 64 px: a 2x2 grid
    assert isinstance(pathway, SplitPathway) and pathway.pool5_shape == (768, 2, 2)
    with torch.no_grad():
        scores = pathway(torch.rand(2, 3, 64, 64)).fc8
    assert scores.abs().max() > 0  # torchvision zero-inits the head; a random-init atlas needs scores
    with pytest.raises(ModelError, match=r"vit_h_14 weights DEFAULT are for 518px images, not 224px: set model.input_size: 518"):
        load_pathway(ModelSpec("vit_h_14", weights="DEFAULT"))


def test_a_tokens_unit_patch_is_its_cell_and_its_neighbours(ctx):
    boxes = token_fields(ctx.pathway)
    assert boxes.shape == (4, 4, 4)
    assert boxes[0, 0].tolist() == [0, 0, 16, 16] and boxes[1, 2].tolist() == [0, 8, 24, 32]
    assert token_fields(helpers.tiny_alexnet()) is None  # CNNs keep their measured fields


def test_the_pages_words_follow_what_fc7_is():
    assert words_key({"name": "vit_b_16"}) == CLASS_TOKEN and words_key({"name": "swin_t"}) == POOLED_TOKEN
    assert words_key({"name": "maxvit_t"}) is True  # a hidden head layer: the paper's fc6 / fc7 words
    assert words_key({"name": "x.py:build", "levels": ["pool5", "fc7", "fc8"], "tokens": CLASS_TOKEN}) == CLASS_TOKEN
    assert words_key({"name": "timm:resnet18", "levels": ["pool5", "fc7", "fc8"]}) is False
    assert in_words("masks on {dropped}", CLASS_TOKEN) == "masks on the class token (fc7)"
    assert set(LEVEL_WORDS[CLASS_TOKEN]) == set(LEVEL_WORDS[True]) == set(LEVEL_WORDS[POOLED_TOKEN])


def test_every_method_runs_on_a_vit(ctx):
    viz = classviz.run(ctx, {})
    assert [p.key for p in viz.pictures] == ["baseline", "prior"]
    grid = location.run(ctx, {})
    assert grid.numbers["grid"] == [3, 3] and grid.numbers["open_value"] == 1.0
    styles = topics.run(ctx, {"k": 2, "images": 10, "retrieved": 2})
    assert styles.numbers["nmf_input"].startswith("[relu(fc7), relu(-fc7)]")  # the class token is signed
    members = ensemble.run(ctx, {"masks": 2, "inits": 2})
    assert members.numbers["masked"] == ["m7"]
    codes = hierarchy.run(ctx, {"images": 1})
    assert codes.numbers["levels"] == ["m7", "m5-7"]
    inverted = inversion.run(ctx, {"images": 1, "iterations": 2})
    assert math.isfinite(inverted.pictures[-1].numbers["feature_error"])
    assert len(mean.run(ctx, {}).pictures) >= 1


def test_the_diagnostics_run_on_a_vit(ctx):
    """Pre-images and caricatures at the levels a ViT has (no conv1 ... conv5: its trunk is a
    stack of attention blocks, layers.feature_layers names pool5, fc7, fc8 only); Grad-CAM on the
    tokens entering the last block."""
    from generator.methods import caricatures, fc7map, neighbours, preimages, saliency

    inverted = preimages.run(ctx, {"iterations": 2})
    assert inverted.numbers["layers"] == ["pool5", "fc7", "fc8"]
    amplified = caricatures.run(ctx, {"iterations": 2, "layers": "conv3,pool5,fc7"})
    assert amplified.numbers["layers"] == ["pool5", "fc7"]
    maps = saliency.run(ctx, {"images": 1})
    assert maps.pictures[2].image.shape == (3, SIZE, SIZE) and maps.pictures[2].meta.step == "gradcam"
    assert len(neighbours.run(ctx, {"queries": 1}).pictures) == 1 and len(fc7map.run(ctx, {}).pictures) == 1
