"""Style-based completion (Sec. 5.2): pixels outside the box never move, the class score rises
inside, bad boxes fail clearly, and a topic mask can pick the style."""
from __future__ import annotations

import pytest
import torch

from generator.engine.settings import settings_from
from generator.methods import completion, topics

FAST = settings_from(None, iterations=8, lr=0.05, l2=0.0, tv=0.0, jitter=0, prior_weight=0.01, rematch_every=4)


def scene(size: int = 48) -> torch.Tensor:
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(3))


def test_outside_pixels_stay_exactly_and_the_class_score_rises(demo_net):
    pathway = demo_net()
    image = scene()
    box = (10, 14, 20, 16)
    result = completion.complete(pathway, image, box, class_index=2, settings=FAST)
    keep = completion.keep_mask(box, 48).bool().expand(3, -1, -1)
    assert torch.equal(result.image[keep], image[keep])
    assert not torch.equal(result.image[~keep], image[~keep])
    assert result.score > result.start_score
    assert result.class_index == 2 and result.numbers["box"] == list(box)


def test_default_class_is_the_images_top1(demo_net):
    pathway = demo_net()
    image = scene()
    with torch.no_grad():
        top1 = int(pathway(image[None]).fc8.argmax())
    result = completion.complete(pathway, image, (0, 0, 12, 12), settings=settings_from(None, iterations=1))
    assert result.class_index == top1


def test_context_database_uses_only_patches_outside_the_box():
    image = scene()
    whole = completion.context_database(image, (0, 0, 1, 1), patch=7, cut_stride=2)
    cut = completion.context_database(image, (10, 10, 20, 20), patch=7, cut_stride=2)
    assert cut.size < whole.size
    # patches touching the box are excluded: 21 starts per axis, those in (4..29) hit the box
    starts = range(0, 42, 2)
    inside = sum(1 for top in starts for left in starts if top + 7 > 10 and top < 30 and left + 7 > 10 and left < 30)
    assert cut.size == 21 * 21 - inside


def test_bad_boxes_and_images_fail_clearly(demo_net):
    pathway = demo_net()
    with pytest.raises(ValueError, match="inside the 48x48"):
        completion.complete(pathway, scene(), (40, 40, 20, 20))
    with pytest.raises(ValueError, match="positive width"):
        completion.complete(pathway, scene(), (4, 4, 0, 5))
    with pytest.raises(ValueError, match=r"\(3, 48, 48\)"):
        completion.complete(pathway, scene(64), (4, 4, 5, 5))


def test_a_topic_mask_from_the_class_images_picks_the_style(tiny_context):
    ctx = tiny_context(n=10)
    model = topics.topic_masks_for(ctx.pathway, ctx.features.fc7, k=2)
    result = completion.complete(ctx.pathway, scene(), (8, 8, 24, 24), class_index=ctx.class_index,
                                 topic_mask=model.masks[0], settings=FAST)
    with torch.no_grad():
        masked = ctx.pathway(result.image[None], {"fc7": model.masks[0]}).fc8[0, ctx.class_index]
    assert float(masked) == pytest.approx(result.score, rel=1e-4, abs=1e-5)
    assert result.score > result.start_score
