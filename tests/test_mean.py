"""The mean-image diagnostic. Like every method it needs only its registry entry, its module and
this test: tests/test_site_demo.py checks that every registered method is in the built manifest,
on the class page and on the methods page."""
from __future__ import annotations

import torch

from generator.methods import mean
from generator.records import Meta


def test_the_means_are_the_class_images_averaged(tiny_context):
    ctx = tiny_context(n=8)
    result = mean.run(ctx, {"top": 3})
    pictures = {p.key: p for p in result.pictures}
    assert list(pictures) == ["all", "top"]
    assert torch.allclose(pictures["all"].image, ctx.images.mean(0))
    top = [ref.image for ref in pictures["top"].meta.exemplars]
    scores = ctx.features.fc8[:, ctx.class_index]
    assert len(top) == 3 and set(top) == set(torch.topk(scores, 3).indices.tolist())
    assert torch.allclose(pictures["top"].image, ctx.images[top].mean(0))
    assert pictures["all"].meta == Meta()
    for picture in pictures.values():
        assert 0.0 <= picture.numbers["prob"] <= 1.0
    assert result.numbers["all_prob"] == pictures["all"].numbers["prob"]

