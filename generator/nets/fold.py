"""Fold eval-mode batch norm into the convolution before it.

In eval mode a BatchNorm2d is a per-channel affine map, y = a * x + b, so a Conv2d followed by
it is one Conv2d with weights a * W and bias a * c + b. The atlas only ever runs its net in
eval mode, and batch norm with its backward is about a fifth of a MobileNet's forward +
backward on CPU: folding roughly halves the net's pass with the same activations (to float
rounding) and the same gradients to the input.

The fold walks the module tree instead of tracing it (torch.fx cannot trace every user's
model): it fuses a Conv2d immediately followed by a batch norm inside a plain nn.Sequential
(torchvision's VGG-BN features, Conv2dNormActivation of MobileNet, EfficientNet and RegNet,
ResNet's downsample), and the named conv/bn pairs of torchvision's ResNet blocks, whose
forward applies bn_i right after conv_i. The batch norm's slot becomes nn.Identity, so module
names and Sequential indices (what `Pathway.trunk_layer` and the methods' layer keys use) stay
the same; a hook on the former batch norm sees the same values as before.

A folded net on CPU also gets its convolutions' weights in channels-last memory
(`channels_last_on_cpu`), oneDNN's own layout, which every convolution then computes in: the
forward + backward of folded MobileNet-v2, ResNet-50 and EfficientNet-B0 ran another 1.05-1.3x
faster (benchmarks/net_speed.py). Nets without batch norm are left in the default layout, so
their pictures keep their exact rounding.
"""
from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

P = TypeVar("P", bound=nn.Module)
# torchvision's ResNet and its blocks: forward runs bn{i}(conv{i}(x)) with nothing between.
_RESNET_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


class FoldedConv2d(nn.Conv2d):
    """A Conv2d with the eval-mode batch norm that followed it folded into its weights and bias."""


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode batch norm that directly follows a Conv2d into it (in place;
    returns `model`). Batch norms in training mode, without running statistics, or after
    anything but a Conv2d are left as they are."""
    for module in list(model.modules()):
        if type(module).forward is nn.Sequential.forward:  # nn.Sequential and subclasses that keep its forward
            names = [name for name, _ in module.named_children()]
            for first, second in zip(names, names[1:]):
                _fold_pair(module, first, second)
        elif _is_resnet_part(module):
            for first, second in _RESNET_PAIRS:
                _fold_pair(module, first, second)
    return model


def _is_resnet_part(module: nn.Module) -> bool:
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    return type(module) in (ResNet, BasicBlock, Bottleneck)


def _fold_pair(parent: nn.Module, conv_name: str, bn_name: str) -> None:
    """Replace parent.conv_name by the fused conv and parent.bn_name by Identity, if they fit."""
    conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
    if type(conv) is not nn.Conv2d or conv.training or not _foldable(bn):
        return
    if conv.out_channels != bn.running_mean.numel():  # type: ignore[union-attr]
        return
    setattr(parent, conv_name, fused_conv(conv, bn))  # type: ignore[arg-type]
    setattr(parent, bn_name, nn.Identity())


def _foldable(bn: object) -> bool:
    """An eval-mode batch norm with running statistics: BatchNorm2d, or torchvision's frozen one."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    if isinstance(bn, nn.BatchNorm2d):
        return not bn.training and bn.track_running_stats and bn.running_mean is not None
    return type(bn) is FrozenBatchNorm2d


def fused_conv(conv: nn.Conv2d, bn: nn.Module) -> FoldedConv2d:
    """A new Conv2d computing bn(conv(x)); the products are formed in float64, then rounded once."""
    fused = FoldedConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,  # type: ignore[arg-type]
                      conv.padding, conv.dilation, conv.groups, bias=True,  # type: ignore[arg-type]
                      padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
    eps = float(getattr(bn, "eps", 1e-5))
    stats = [getattr(bn, name) for name in ("running_mean", "running_var", "weight", "bias")]
    with torch.no_grad():
        weight, bias = fuse_conv_bn_weights(
            conv.weight.double(), None if conv.bias is None else conv.bias.double(),
            stats[0].double(), stats[1].double(), eps,
            None if stats[2] is None else stats[2].double(), None if stats[3] is None else stats[3].double())
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)  # type: ignore[union-attr]
    fused.requires_grad_(conv.weight.requires_grad)
    return fused.eval()


def channels_last_on_cpu(pathway: P) -> P:
    """A net with folded batch norms on CPU in channels-last memory; any other net as it is."""
    on_cpu = all(p.device.type == "cpu" for p in pathway.parameters())
    if on_cpu and any(isinstance(m, FoldedConv2d) for m in pathway.modules()):
        pathway.to(memory_format=torch.channels_last)
    return pathway
