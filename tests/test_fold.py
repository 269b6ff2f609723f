"""Batch norm folded into the convolutions (generator/fold.py): the pathway's activations under
masks and its gradient to the input are those of the unfolded net, for every family with BN."""
from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from generator.fold import fold_batchnorm
from generator.modelspec import ModelSpec
from generator.pathway import Pathway

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


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet_b0", "vgg11_bn", "regnet_y_400mf"])
def test_folded_pathway_has_the_same_activations_masks_and_input_gradient(name):
    torch.manual_seed(0)
    model = _with_random_statistics(torchvision.models.get_model(name, weights=None))
    plain = Pathway(copy.deepcopy(model), input_size=SIZE)
    folded = Pathway(fold_batchnorm(model), input_size=SIZE)
    assert _batchnorms(plain) > 0 and _batchnorms(folded) == 0
    assert [n for n, _ in plain.named_modules()] == [n for n, _ in folded.named_modules()]  # layer keys unchanged

    generator = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, SIZE, SIZE, generator=generator)
    masks = {"m5": (torch.rand(2, *plain.pool5_shape, generator=generator) > 0.3).float(),
             "m7": (torch.rand(2, plain.fc7_dim, generator=generator) > 0.5).float()}
    if plain.has_fc6:
        masks["m6"] = (torch.rand(2, plain.fc6_dim, generator=generator) > 0.5).float()
    gradients = []
    for pathway in (plain, folded):
        x = images.clone().requires_grad_(True)
        acts = pathway(x, closed_activity=True, **masks)
        acts.fc8[:, 3].sum().backward()
        gradients.append(x.grad)
        if pathway is plain:
            expected = acts
    for level in (*plain.levels, "closed"):
        assert _relative(getattr(acts, level), getattr(expected, level)) < 1e-5, level
    assert _relative(gradients[1], gradients[0]) < 1e-4


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


def test_load_pathway_folds_the_batch_norms():
    from generator.models import load_pathway

    pathway = load_pathway(ModelSpec("mobilenet_v2", input_size=SIZE))
    assert _batchnorms(pathway) == 0
    assert not any(p.requires_grad for p in pathway.parameters())
