"""The masked pathway: each mask gates exactly what Sec. 4 says it gates."""
from __future__ import annotations

import pytest
import torch
import torchvision

from generator.pathway import Pathway, PathwayError


@pytest.fixture(scope="module")
def alexnet() -> Pathway:
    torch.manual_seed(0)
    return Pathway(torchvision.models.alexnet(weights=None))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def test_shapes(alexnet, images):
    acts = alexnet(images)
    assert acts.pool5.shape == (2, 256, 6, 6) and acts.fc6.shape == (2, 4096)
    assert acts.fc7.shape == (2, 4096) and acts.fc8.shape == (2, 1000)
    assert alexnet.pool5_shape == (256, 6, 6) and alexnet.num_classes == 1000


def test_all_zero_m7_leaves_only_the_fc8_bias(alexnet, images):
    acts = alexnet(images, m7=torch.zeros(4096))
    assert torch.equal(acts.fc7, torch.zeros(2, 4096))
    assert torch.allclose(acts.fc8, alexnet.fc8.bias.expand(2, -1), atol=1e-7)


def test_all_zero_m6_makes_fc8_independent_of_the_image(alexnet, images):
    acts = alexnet(images, m6=torch.zeros(4096))
    assert torch.allclose(acts.fc7, torch.relu(alexnet.fc7.bias).expand(2, -1))
    assert torch.allclose(acts.fc8[0], acts.fc8[1])


def test_window_m5_ignores_pool5_outside_the_window(alexnet, images):
    pool5 = alexnet.trunk(images)
    m5 = alexnet.window_mask(top=1, left=2, size=2)
    assert m5.sum().item() == 256 * 4
    outside = m5 == 0
    changed_outside = torch.where(outside, torch.rand_like(pool5) * 10, pool5)
    changed_inside = torch.where(outside, pool5, torch.rand_like(pool5) * 10)
    reference = alexnet.head(pool5, m5=m5).fc8
    assert torch.equal(alexnet.head(changed_outside, m5=m5).fc8, reference)
    assert not torch.allclose(alexnet.head(changed_inside, m5=m5).fc8, reference)


def test_closed_activity_is_the_mean_activity_a_mask_shuts_off(alexnet, images):
    pool5 = alexnet.trunk(images)
    open_ = alexnet.head(pool5)
    m5 = alexnet.window_mask(top=0, left=0, size=3)
    m7 = torch.zeros(4096)
    m7[:100] = 1.0
    acts = alexnet.head(pool5, m5=m5, m7=m7, closed_activity=True)
    assert acts.closed.shape == (2, 3)
    assert torch.allclose(acts.closed[:, 0], (pool5 * (1 - m5)).flatten(1).mean(1))
    assert torch.equal(acts.closed[:, 1], torch.zeros(2))  # no m6: nothing closed
    # fc7 before its mask (fc6 unmasked here, but fed by the m5-gated pool5)
    fc7_before = torch.relu(alexnet.fc7(acts.fc6))
    assert torch.allclose(acts.closed[:, 2], fc7_before[:, 100:].sum(1) / 4096)
    assert torch.equal(acts.fc8, alexnet.head(pool5, m5=m5, m7=m7).fc8)  # reporting changes nothing
    assert open_.closed is None and alexnet.head(pool5, closed_activity=True).closed.abs().sum() == 0


def test_window_m5_gradient_reaches_only_the_window(alexnet, images):
    pool5 = alexnet.trunk(images[:1]).requires_grad_(True)
    m5 = alexnet.window_mask(top=0, left=0, size=3)
    alexnet.head(pool5, m5=m5).fc8[0, 7].backward()
    grad = pool5.grad[0]
    assert grad[:, 3:, :].abs().sum() == 0 and grad[:, :, 3:].abs().sum() == 0
    assert grad[:, :3, :3].abs().sum() > 0


def test_masks_are_per_sample(alexnet, images):
    m7 = torch.stack([torch.ones(4096), torch.zeros(4096)])
    masked = alexnet(images, m7=m7)
    plain = alexnet(images)
    assert torch.allclose(masked.fc8[0], plain.fc8[0])
    assert torch.allclose(masked.fc8[1], alexnet.fc8.bias)


def test_codes_are_the_relu_patterns(alexnet, images):
    codes = alexnet.codes(images)
    acts = alexnet(images)
    assert torch.equal(codes["m6"], (acts.fc6 > 0).float())
    # Constraining an image by its own codes changes nothing: the closed units were zero anyway.
    recoded = alexnet(images, m5=codes["m5"], m6=codes["m6"], m7=codes["m7"])
    assert torch.allclose(recoded.fc8, acts.fc8, atol=1e-6)


def test_resnet_cannot_be_split():
    with pytest.raises(PathwayError, match="ResNet has no features or classifier"):
        Pathway(torchvision.models.resnet18(weights=None))
