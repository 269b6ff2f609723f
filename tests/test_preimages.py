"""Pre-images at every layer and caricatures: the layers they name, the errors they report
(measured again here with hooks of the test's own), and what the optimization does."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from generator.methods import caricatures, preimages
from generator.methods.layers import feature_layers, layer_features
from generator.nets.pathway import Pathway


def relu_outputs(pathway: Pathway, images: torch.Tensor) -> list[torch.Tensor]:
    """The output of every ReLU of the trunk that follows a conv, by running the layers by hand."""
    x = pathway.normalize(images)
    found = []
    for module in pathway.features:
        x = module(x)
        if isinstance(module, nn.ReLU):
            found.append(x.clone())
    return found


def test_layers_are_the_conv_relus_then_the_pathway_levels(tiny_context):
    ctx = tiny_context(n=2)
    layers = feature_layers(ctx.pathway)
    assert list(layers) == ["conv1", "conv2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8"]
    features = layer_features(ctx.pathway, ctx.images, list(layers.values()))
    by_hand = relu_outputs(ctx.pathway, ctx.images)
    for n, mine in enumerate(by_hand, start=1):
        assert torch.allclose(features[layers[f"conv{n}"]], mine)
    assert torch.allclose(features["fc8"], ctx.pathway(ctx.images).fc8)


class TinyPooled(nn.Module):
    """conv trunk -> global average pool -> one Linear: a globally pooled net in miniature."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def test_a_pooled_net_has_only_its_pathway_levels():
    pathway = Pathway(TinyPooled(), input_size=16)
    assert pathway.family == "pooled"
    assert list(feature_layers(pathway)) == ["pool5", "fc7", "fc8"]


def test_a_vgg_keeps_one_relu_per_block():
    """More than five conv ReLUs (a VGG): each block's last one, the one before its max-pool."""
    block = lambda a, b: [nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.Conv2d(b, b, 3, padding=1), nn.ReLU(),  # noqa: E731
                          nn.MaxPool2d(2)]
    net = nn.Module()
    net.features = nn.Sequential(*block(3, 4), *block(4, 4), *block(4, 4))
    net.classifier = nn.Sequential(nn.Linear(4 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    pathway = Pathway(net, input_size=32)
    layers = feature_layers(pathway)
    assert list(layers) == ["conv1", "conv2", "conv3", "pool5", "fc6", "fc7", "fc8"]
    assert [layers[f"conv{n}"] for n in (1, 2, 3)] == ["features.3", "features.8", "features.13"]


def test_reported_errors_match_an_independent_measurement(tiny_context):
    ctx = tiny_context(n=2)
    result = preimages.run(ctx, {"iterations": 25, "images": 1})
    original = ctx.images[0:1]
    targets = relu_outputs(ctx.pathway, original)
    with torch.no_grad():
        target_acts = ctx.pathway(original)
    rows = {p.meta.step: p for p in result.pictures}
    assert rows["original"].image.equal(ctx.images[0])
    for name in result.numbers["layers"]:
        picture = rows[name]
        image = picture.image.unsqueeze(0)
        with torch.no_grad():
            if name.startswith("conv"):
                mine, target = relu_outputs(ctx.pathway, image)[int(name[4:]) - 1], targets[int(name[4:]) - 1]
            else:
                mine, target = getattr(ctx.pathway(image), name), getattr(target_acts, name)
        expected = float((mine - target).pow(2).sum() / target.pow(2).sum())
        assert picture.numbers["feature_error"] == pytest.approx(expected, rel=1e-4, abs=1e-7), name
        pixel = float((picture.image - ctx.images[0]).norm() / ctx.images[0].norm())
        assert picture.numbers["pixel_error"] == pytest.approx(pixel, rel=1e-5)
        assert result.numbers["feature_error"][name] == pytest.approx(picture.numbers["feature_error"])
    assert result.numbers["below_0_1"] == [n for n in result.numbers["layers"] if result.numbers["feature_error"][n] < 0.1]


def test_optimizing_lowers_the_feature_error(tiny_context):
    ctx = tiny_context(n=1)
    weak = {"jitter": 0, "tv": 1.0}  # the tiny random net's deep codes are nearly matched by any smooth image
    short = preimages.run(ctx, {"iterations": 1, **weak})
    longer = preimages.run(ctx, {"iterations": 30, **weak})
    for name in ("conv1", "conv2", "pool5"):
        assert longer.numbers["feature_error"][name] < 0.5 * short.numbers["feature_error"][name], name


def test_caricatures_amplify_the_images_own_pattern(tiny_context):
    ctx = tiny_context(n=1)
    result = caricatures.run(ctx, {"layers": "conv2,fc7,nonsense", "iterations": 30, "lr": 0.1, "jitter": 0,
                                   "tv": 0.0})
    assert result.numbers["layers"] == ["conv2", "fc7"]
    features = layer_features(ctx.pathway, ctx.images[:1], [feature_layers(ctx.pathway)[n] for n in ("conv2", "fc7")])
    for picture in result.pictures:
        if picture.meta.step == "original":
            continue
        key = feature_layers(ctx.pathway)[picture.meta.step]
        reached = layer_features(ctx.pathway, picture.image.unsqueeze(0), [key])[key]
        gain = float((reached * features[key]).sum() / features[key].pow(2).sum())
        assert picture.numbers["gain"] == pytest.approx(gain, rel=1e-4)
        assert gain > {"conv2": 2.0, "fc7": 1.03}[picture.meta.step], picture.key  # its own pattern grew
    with pytest.raises(ValueError, match="none of the layers"):
        caricatures.run(ctx, {"layers": "conv9"})
