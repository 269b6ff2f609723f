"""The layers the per-class diagnostics invert and caricature, by the names people use
(conv1 ... conv5, pool5, fc6, fc7, fc8), and their features for a batch of images.

An AlexNet/VGG-style trunk's conv layers are the outputs of its ReLUs (what Mahendran &
Vedaldi invert); a VGG has more than five, so there each block's last ReLU (the one before a
max-pool) stands for the block. A globally pooled net keeps only the pathway's levels
(pool5 = its last map, [fc6,] fc7, fc8), and so does a vision transformer: it has no conv1 ...
conv5 to invert (its trunk is a patch embedding and a stack of attention blocks), so pre-images
and caricatures start at pool5, the patch tokens entering its last block. The keys are what `FeatureMatch(target, layer)` and
`Direction(vector, layer)` take: a pathway level or a module name such as "features.4".
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from generator.engine.terms import BANDS, OUTPUTS, pixel_band
from generator.nets.pathway import Pathway


def feature_layers(pathway: Pathway) -> dict[str, str]:
    """Display name -> layer key, from the input to the logits."""
    names: dict[str, str] = {}
    if pathway.family == "fc" and isinstance(pathway.features, nn.Sequential):
        children = list(pathway.features.named_children())
        relus = [i for i, (_, module) in enumerate(children) if isinstance(module, nn.ReLU)
                 and any(isinstance(m, nn.Conv2d) for _, m in children[:i])]
        if len(relus) > 5:  # VGG: each block's last ReLU, the one a pooling layer follows
            relus = [i for i in relus if i + 1 < len(children) and isinstance(children[i + 1][1], nn.MaxPool2d)]
        names = {f"conv{n}": f"features.{children[i][0]}" for n, i in enumerate(relus, start=1)}
    names.update({level: level for level in pathway.levels})
    return names


@torch.no_grad()
def layer_features(pathway: Pathway, images: Tensor, keys: list[str]) -> dict[str, Tensor]:
    """The features of `images` (B, 3, S, S in [0, 1]) at each key, unmasked, on CPU."""
    outputs: dict[str, Tensor] = {}

    def keeper(name: str):  # type: ignore[no-untyped-def]
        def keep(module: nn.Module, inputs: object, output: Tensor) -> None:
            outputs[name] = output.detach().clone()  # clone: an in-place ReLU may change it later
        return keep

    modules = sorted({key for key in keys if key not in OUTPUTS and key not in BANDS})
    handles = [pathway.get_submodule(key).register_forward_hook(keeper(key)) for key in modules]
    try:  # the picture's own bands need no pass through the net
        acts = pathway(images.to(pathway.mean.device)) if any(key not in BANDS for key in keys) else None
    finally:
        for handle in handles:
            handle.remove()
    for key in keys:
        if key in BANDS:
            outputs[key] = pixel_band(images.float(), key)
        elif key in OUTPUTS:
            value = getattr(acts, key, None)
            if value is None:
                raise ValueError(f"this pathway has no {key}")
            outputs[key] = value
    return {key: outputs[key].cpu() for key in keys}
