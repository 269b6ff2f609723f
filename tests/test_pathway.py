"""The gated pathway: each mask, passed as a gate named by its level, gates exactly what Sec. 4 says it gates."""
from __future__ import annotations

import pytest
import torch
import torchvision

from generator.engine.terms import closed_activity
from generator.methods.hierarchy import codes
from generator.methods.location import window_mask
from generator.nets.pathway import MASKS, Pathway, PathwayError, as_gates


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
    acts = alexnet(images, {"fc7": torch.zeros(4096)})
    assert torch.equal(acts.fc7, torch.zeros(2, 4096))
    assert torch.allclose(acts.fc8, alexnet.fc8.bias.expand(2, -1), atol=1e-7)


def test_all_zero_m6_makes_fc8_independent_of_the_image(alexnet, images):
    acts = alexnet(images, {"fc6": torch.zeros(4096)})
    assert torch.allclose(acts.fc7, torch.relu(alexnet.fc7.bias).expand(2, -1))
    assert torch.allclose(acts.fc8[0], acts.fc8[1])


def test_window_m5_ignores_pool5_outside_the_window(alexnet, images):
    pool5 = alexnet.trunk(images)
    m5 = window_mask(alexnet.pool5_shape, top=1, left=2, size=2)
    assert m5.sum().item() == 256 * 4
    outside = m5 == 0
    changed_outside = torch.where(outside, torch.rand_like(pool5) * 10, pool5)
    changed_inside = torch.where(outside, pool5, torch.rand_like(pool5) * 10)
    reference = alexnet.head(pool5, {"pool5": m5}).fc8
    assert torch.equal(alexnet.head(changed_outside, {"pool5": m5}).fc8, reference)
    assert not torch.allclose(alexnet.head(changed_inside, {"pool5": m5}).fc8, reference)


def test_the_values_before_each_gate_are_kept_for_the_closed_activity(alexnet, images):
    pool5 = alexnet.trunk(images)
    m5 = window_mask(alexnet.pool5_shape, top=0, left=0, size=3)
    m7 = torch.zeros(4096)
    m7[:100] = 1.0
    acts = alexnet.head(pool5, {"pool5": m5, "fc7": m7})
    assert set(acts.ungated) == {"pool5", "fc7"}  # no fc6 gate: nothing kept there
    assert torch.equal(acts.ungated["pool5"], pool5)
    # fc7 before its gate (fc6 ungated here, but fed by the m5-gated pool5)
    fc7_before = torch.relu(alexnet.fc7(acts.fc6))
    assert torch.allclose(acts.ungated["fc7"], fc7_before) and torch.equal(acts.fc7, fc7_before * m7)
    assert torch.allclose(closed_activity(acts.ungated["pool5"], m5), (pool5 * (1 - m5)).flatten(1).mean(1))
    assert torch.allclose(closed_activity(acts.ungated["fc7"], m7), fc7_before[:, 100:].sum(1) / 4096)
    assert alexnet.head(pool5).ungated == {}


def test_a_gate_at_a_level_the_net_lacks_is_refused(alexnet, images):
    assert alexnet.gate_shapes == {"pool5": (256, 6, 6), "fc6": (4096,), "fc7": (4096,)}
    assert alexnet.masks == ("m5", "m6", "m7") and set(MASKS.values()) == set(alexnet.gate_shapes)
    with pytest.raises(ValueError, match="no gate at fc8; it gates pool5, fc6, fc7"):
        alexnet(images, {"fc8": torch.ones(1000)})


def test_window_m5_gradient_reaches_only_the_window(alexnet, images):
    pool5 = alexnet.trunk(images[:1]).requires_grad_(True)
    m5 = window_mask(alexnet.pool5_shape, top=0, left=0, size=3)
    alexnet.head(pool5, {"pool5": m5}).fc8[0, 7].backward()
    grad = pool5.grad[0]
    assert grad[:, 3:, :].abs().sum() == 0 and grad[:, :, 3:].abs().sum() == 0
    assert grad[:, :3, :3].abs().sum() > 0


def test_masks_are_per_sample(alexnet, images):
    m7 = torch.stack([torch.ones(4096), torch.zeros(4096)])
    masked = alexnet(images, {"fc7": m7})
    plain = alexnet(images)
    assert torch.allclose(masked.fc8[0], plain.fc8[0])
    assert torch.allclose(masked.fc8[1], alexnet.fc8.bias)


def test_codes_are_the_relu_patterns(alexnet, images):
    own = codes(alexnet, images)
    acts = alexnet(images)
    assert torch.equal(own["m6"], (acts.fc6 > 0).float())
    # Constraining an image by its own codes changes nothing: the closed units were zero anyway.
    recoded = alexnet(images, as_gates(own))
    assert torch.allclose(recoded.fc8, acts.fc8, atol=1e-6)


# --------------------------------------------------------------------------- globally pooled nets

POOLED = {  # name -> input size: small, but large enough for every downsampling stage
    "resnet18": 64, "mobilenet_v2": 64, "efficientnet_b0": 64, "convnext_tiny": 64, "mobilenet_v3_small": 64,
}
_pooled_cache: dict[str, tuple[torch.nn.Module, Pathway]] = {}


def pooled(name: str) -> tuple[torch.nn.Module, Pathway]:
    """(plain random-init model in eval mode, its pathway sharing the model's layers), once per session."""
    if name not in _pooled_cache:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            plain = torchvision.models.get_model(name, weights=None).eval()
        _pooled_cache[name] = plain, Pathway(plain, input_size=POOLED[name])
    return _pooled_cache[name]


def all_ones(pathway: Pathway, batch: int) -> dict[str, torch.Tensor]:
    return {level: torch.ones(batch, *shape) for level, shape in pathway.gate_shapes.items()}


@pytest.mark.parametrize("name", POOLED)
def test_pooled_pathway_equals_the_plain_model(name):
    plain, pathway = pooled(name)
    size = POOLED[name]
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = plain(pathway.normalize(x))
        for gates in ({}, all_ones(pathway, 2)):
            acts = pathway(x, gates)
            assert (acts.fc8 - expected).abs().max().item() < 1e-5, gates.keys()
    assert pathway.family == "pooled" and acts.pool5.shape == (2, *pathway.pool5_shape)
    assert acts.fc7.shape == (2, pathway.fc7_dim)
    if name == "mobilenet_v3_small":  # a hidden classifier layer: the pooled vector is fc6, the hidden layer fc7
        assert pathway.has_fc6 and acts.fc6.shape == (2, 576) and pathway.fc7_dim == 1024
        assert pathway.levels == ("pool5", "fc6", "fc7", "fc8") and pathway.dropout_at == ("fc7",)
    else:  # fc7 is the global average of the last map; there is no fc6
        assert acts.fc6 is None and not pathway.has_fc6 and pathway.masks == ("m5", "m7")
        assert pathway.levels == ("pool5", "fc7", "fc8")
        assert torch.allclose(pathway.avgpool(acts.pool5).flatten(1), acts.fc7) or name == "convnext_tiny"
        assert pathway.roles["fc6"].startswith("absent")
        assert pathway.dropout_at == (("fc7",) if name in ("mobilenet_v2", "efficientnet_b0") else ())


@pytest.mark.slow
def test_shared_mobilenet_v2_pathway_equals_the_plain_model_and_classifies(shared):
    """The loaded pathway (batch norm folded, channels-last) gives the torchvision model's logits."""
    from generator.catalog import IMAGENETTE_WNIDS, ImageSpec, ModelSpec
    from generator.images import class_images
    from generator.nets.models import imagenet_classes, load_pathway

    weights = shared / "models" / "mobilenet-v2-imagenet.pt"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    pathway = load_pathway(ModelSpec("mobilenet_v2", weights=str(weights)))
    plain = torchvision.models.mobilenet_v2(num_classes=1000).eval()
    plain.load_state_dict(torch.load(weights, weights_only=True))
    index = {wnid: i for i, (wnid, _) in enumerate(imagenet_classes())}
    spec = ImageSpec("folder", shared / "data" / "imagenette" / "val", per_class=2)
    x = torch.cat([class_images(spec, wnid, 2, seed=0, size=224).images for wnid in IMAGENETTE_WNIDS])
    labels = torch.tensor([index[wnid] for wnid in IMAGENETTE_WNIDS for _ in range(2)])
    with torch.no_grad():
        expected = plain(pathway.normalize(x))
        for gates in ({}, all_ones(pathway, len(x))):
            fc8 = pathway(x, gates).fc8
            # batch norm is folded into the convolutions on load: the same logits up to float rounding
            assert (fc8 - expected).abs().max().item() < 1e-5 * expected.abs().max().item()
    top5 = (fc8.topk(5, dim=1).indices == labels[:, None]).any(1).float().mean().item()
    assert top5 >= 0.6, top5  # the card: 88.8% top-5 among 1000 on Imagenette val
    assert pathway.pool5_shape == (1280, 7, 7) and pathway.fc7_dim == 1280 and pathway.fc6 is None


def test_pooled_masks_gate_values_and_gradients():
    _, pathway = pooled("resnet18")
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    pool5 = pathway.trunk(x).requires_grad_(True)  # (512, 2, 2)
    m5 = window_mask(pathway.pool5_shape, 0, 1, 1)
    pathway.head(pool5, {"pool5": m5}).fc8[0, 3].backward()
    assert pool5.grad[0, :, :, 0].abs().sum() == 0 and pool5.grad[0, :, 1, 1].abs().sum() == 0
    assert pool5.grad[0, :, 0, 1].abs().sum() > 0
    pool5.grad = None
    m7 = torch.zeros(512)
    m7[:10] = 1.0
    acts = pathway.head(pool5, {"fc7": m7})
    acts.fc8[0, 3].backward()
    assert torch.equal(acts.fc7[0, 10:], torch.zeros(502))
    assert pool5.grad[0, 10:].abs().sum() == 0 and pool5.grad[0, :10].abs().sum() > 0
    with torch.no_grad():
        closed = pathway.head(pool5, {"fc7": torch.zeros(512)})
    assert torch.allclose(closed.fc8[0], pathway.fc8.bias)
    assert torch.allclose(closed_activity(closed.ungated["fc7"], torch.zeros(512)), pathway.head(pool5).fc7.mean())
    assert pathway.gate_shapes == {"pool5": (512, 2, 2), "fc7": (512,)}
    with pytest.raises(ValueError, match="no gate at fc6 \\(its pooled vector plays fc7\\)"):
        pathway.head(pool5, {"fc6": torch.ones(512)})


def test_mobilenet_v3_m6_gates_the_pooled_vector():
    _, pathway = pooled("mobilenet_v3_small")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        acts = pathway(x, {"fc6": torch.zeros(576)})
    assert torch.equal(acts.fc6, torch.zeros(2, 576))
    assert torch.allclose(acts.fc8[0], acts.fc8[1])  # nothing of the image reaches fc8


def test_batchnorm_stays_in_eval_mode():
    plain, pathway = pooled("resnet18")
    pathway.train()
    assert not any(m.training for m in pathway.modules())
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    before = plain.bn1.running_mean.clone()
    with torch.no_grad():
        batch = pathway(x).fc8
        single = pathway(x[:1]).fc8
    assert torch.allclose(batch[:1], single, atol=1e-4) and torch.equal(plain.bn1.running_mean, before)


class _Doubling(torch.nn.Module):
    """A ResNet-shaped net whose forward() does more than its children: not splittable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(2 * self.avgpool(self.conv(x)).flatten(1))


def test_unsplittable_models_are_refused_with_what_the_pathway_needs():
    with pytest.raises(PathwayError, match="does not reproduce its forward"):
        Pathway(_Doubling(), input_size=32)
    with pytest.raises(PathwayError, match="LSTM has no features or fc layer: the atlas needs either"):
        Pathway(torch.nn.LSTM(4, 4))
    squeeze = torchvision.models.squeezenet1_1(weights=None)
    with pytest.raises(PathwayError, match="classifier has 0 Linear layers"):
        Pathway(squeeze, input_size=64)
