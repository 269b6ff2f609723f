"""Batch norm folded into the convolutions (generator/nets/fold.py): the pathway's activations under
masks and its gradient to the input are those of the unfolded net, for every family with BN."""
from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from generator.modelspec import ModelSpec
from generator.nets.fold import channels_last_on_cpu, fold_batchnorm
from generator.nets.pathway import Pathway, as_gates

SIZE = 64


def _with_random_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random init, plus batch norms that are far from identity (a fresh net's running mean 0,
    variance 1 and affine 1, 0 would let a fold that ignores them pass)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                n = bn.num_features
                bn.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
                bn.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=generator))
                bn.weight.copy_((0.5 + torch.rand(n, generator=generator)) * torch.sign(torch.randn(n, generator=generator)))
                bn.bias.copy_(0.2 * torch.randn(n, generator=generator))
    return model.eval()


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    got, expected = got.detach(), expected.detach()
    return float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


def _batchnorms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in module.modules())


def _three(model: nn.Module, dtype: torch.dtype) -> tuple[Pathway, Pathway, Pathway]:
    """The net as it is, folded, and folded in channels-last memory, as `dtype` Pathways (folded
    after the cast, so that float64 sees no float32 rounding of the folded weights)."""
    def pathway() -> Pathway:
        return Pathway(copy.deepcopy(model), input_size=SIZE).to(dtype)

    return pathway(), fold_batchnorm(pathway()), channels_last_on_cpu(fold_batchnorm(pathway()))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet_b0", "vgg11_bn", "regnet_y_400mf"])
def test_folded_pathway_has_the_same_activations_masks_and_input_gradient(name):
    """Activations in float32, as the atlas runs; the input gradient in float64, because in
    float32 a pre-activation within rounding of 0 may switch a ReLU, and then the gradient
    differs where that unit reaches (vgg11_bn in channels-last: one unit of 131,072, 1e-3 of the
    gradient), as any change of rounding (thread count, conv algorithm) may do."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None)
    if name == "vgg11_bn":  # VGG's BN trunk with a small head (its 25088 x 4096 fc6 would take the test's time)
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Sequential(nn.Linear(512, 64), nn.ReLU(), nn.Dropout(), nn.Linear(64, 64), nn.ReLU(),
                                         nn.Dropout(), nn.Linear(64, 10))
    model = _with_random_statistics(model)
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, SIZE, SIZE, generator=generator)
    for dtype in (torch.float32, torch.float64):
        plain, folded, last = _three(model, dtype)
        assert _batchnorms(plain) > 0 and _batchnorms(folded) == 0
        assert [n for n, _ in plain.named_modules()] == [n for n, _ in folded.named_modules()]  # layer keys unchanged
        generator = torch.Generator().manual_seed(2)
        masks = {"m5": (torch.rand(2, *plain.pool5_shape, generator=generator) > 0.3).to(dtype),
                 "m7": (torch.rand(2, plain.fc7_dim, generator=generator) > 0.5).to(dtype)}
        if plain.has_fc6:
            masks["m6"] = (torch.rand(2, plain.fc6_dim, generator=generator) > 0.5).to(dtype)
        results = []
        for pathway in (plain, folded, last):
            x = images.clone().to(dtype).requires_grad_(True)
            acts = pathway(x, as_gates(masks))
            acts.fc8[:, 3].sum().backward()
            results.append((acts, x.grad))
        (expected, expected_grad), *others = results
        for acts, grad in others:
            for level in plain.levels:
                assert _relative(getattr(acts, level), getattr(expected, level)) < 1e-5, level
            for level, values in expected.ungated.items():  # what the closed units' activity is measured on
                assert _relative(acts.ungated[level], values) < 1e-5, level
            if dtype == torch.float64:
                assert _relative(grad, expected_grad) < 1e-4


def test_resnet_blocks_and_downsample_are_folded():
    model = _with_random_statistics(torchvision.models.resnet50(weights=None))
    fold_batchnorm(model)
    assert _batchnorms(model) == 0
    assert isinstance(model.layer1[0].downsample[1], nn.Identity) and model.layer1[0].downsample[0].bias is not None


class _Reordered(nn.Sequential):
    """A Sequential whose forward does not run its children in order: nothing may be folded."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self[0](torch.relu(self[1](x)))  # bn first, then conv (channels equal)


def test_only_a_batch_norm_right_after_a_conv_in_eval_mode_is_folded():
    reordered = _Reordered(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)).eval()
    after_relu = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    training = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    for model in (reordered, after_relu, training):
        assert _batchnorms(fold_batchnorm(model)) == 1


def _channels_last(pathway: nn.Module) -> bool:
    """Whether the first conv's weights (3 input channels, k x k) lie in channels-last memory."""
    first = next(m.weight for m in pathway.modules() if isinstance(m, nn.Conv2d))
    return first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous()


def test_load_pathway_folds_the_batch_norms_and_lays_a_folded_net_out_channels_last(tiny_alexnet):
    from generator.nets.models import load_pathway

    pathway = load_pathway(ModelSpec("mobilenet_v2", input_size=SIZE))
    assert _batchnorms(pathway) == 0 and _channels_last(pathway)
    assert not any(p.requires_grad for p in pathway.parameters())
    assert not _channels_last(channels_last_on_cpu(tiny_alexnet(size=SIZE)))  # no batch norm: its layout stays
