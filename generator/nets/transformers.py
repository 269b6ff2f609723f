"""Vision transformers (torchvision's ViT, Swin, Swin v2, MaxViT; any timm model) as a Pathway.

A transformer is cut at pool5 by a `Split`: `stem` runs the normalized images up to pool5, a
spatial grid of tokens (B, C, H, W), so that location windows and pool5 gates are windows of
patches; `finish` runs the gated grid on to the vector the classifier starts from. Which layer
plays which part (also in `families.FAMILY_ROLES`, for the methods page):

- ViT (a class token): pool5 = the patch tokens *entering* the last encoder block. The class token
  is computed in parallel with the patch tokens, so gating the tokens that *leave* the last block
  could never change it; gating the tokens that enter it changes what the class token attends to
  in that block. The class token entering the last block is the `context` the head needs beside
  pool5 (`Activations.context`). fc7 = the class token after the last block and the final
  LayerNorm (signed: topics factorize its split), fc8 = the head's logits; fc6 only where the head
  has a hidden layer (a ViT built with `representation_size`: fc6 = the class token, fc7 = tanh).
- Swin / Swin v2: pool5 = the last stage's tokens after the final LayerNorm, as their grid (the
  map the net averages); fc7 = their average (signed), fc8 = the head.
- MaxViT: pool5 = the last block's map; its classifier has a hidden layer, so fc6 = the average
  after the classifier's LayerNorm, fc7 = tanh(Linear(fc6)), fc8 = the last Linear.
- timm (`generator/nets/timm_models.py`): a ViT-like model (blocks, patch_embed, prefix tokens)
  as a ViT; any other as `forward_features` (pool5, NHWC turned to NCHW) then
  `forward_head(pre_logits=True)` (fc7) then its classifier (fc8).

Closing a token multiplies it by 0; the block's LayerNorm turns a zero token into its bias, the
same for every closed token, so a closed token carries no trace of the image. A window is opened
with 1 (location.open_value): attention does not average the grid, and LayerNorm undoes a scale.
Transformers keep the engine's CNN defaults: under them a random-init ViT's pictures show no
patch grid, and stronger transforms remove nothing more (benchmarks/studies/vit_engine.py).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from generator.nets.families import CLASS_TOKEN
from generator.nets.pathway import Pathway
from generator.nets.split import Split, SplitPathway, needs_context, to_grid, to_tokens


class TorchvisionViT(Split):
    family = "tokens"
    tokens = CLASS_TOKEN

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.side = int(model.image_size // model.patch_size)
        self.layers = model.encoder.layers
        hidden = model.hidden_dim
        self.roles = {
            "pool5": f"the patch tokens entering the last encoder block ({hidden}x{self.side}x{self.side}; gating one "
                     "changes what the class token attends to there)",
            "fc7": f"the class token after the last block and encoder.ln ({hidden}, signed)",
        }

    def stem(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        model = self.model
        tokens = model._process_input(x)
        tokens = torch.cat([model.class_token.expand(len(x), -1, -1), tokens], 1)
        tokens = model.encoder.dropout(tokens + model.encoder.pos_embedding)
        for layer in self.layers[:-1]:
            tokens = layer(tokens)
        return to_grid(tokens[:, 1:], self.side, self.side), tokens[:, :1]

    def finish(self, pool5: Tensor, context: Tensor | None) -> Tensor:
        tokens = torch.cat([needs_context("VisionTransformer", context), to_tokens(pool5)], 1)
        return self.model.encoder.ln(self.layers[-1](tokens))[:, 0]

    def classifier(self) -> list[tuple[str, nn.Module]]:
        return [(f"heads.{name}", module) for name, module in self.model.heads.named_children()]


class TorchvisionSwin(Split):
    roles = {"pool5": "the last stage's tokens after the final LayerNorm, as their grid (768x7x7 for swin_t; signed)",
             "fc7": "their global average (signed, no dropout)"}

    def stem(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        model = self.model
        return model.permute(model.norm(model.features(x))), None

    def finish(self, pool5: Tensor, context: Tensor | None) -> Tensor:
        return self.model.flatten(self.model.avgpool(pool5))

    def classifier(self) -> list[tuple[str, nn.Module]]:
        return [("head", self.model.head)]


class TorchvisionMaxViT(Split):
    roles = {"pool5": "the last block's map (512x7x7 for maxvit_t; signed)",
             "fc7": "classifier.3 + Tanh, the hidden layer (fc6 = the average after classifier.2, LayerNorm)"}

    def stem(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        x = self.model.stem(x)
        for block in self.model.blocks:
            x = block(x)
        return x, None

    def finish(self, pool5: Tensor, context: Tensor | None) -> Tensor:
        pool, flatten = self.model.classifier[:2]
        return flatten(pool(pool5))

    def classifier(self) -> list[tuple[str, nn.Module]]:
        return [(f"classifier.{name}", module) for name, module in list(self.model.classifier.named_children())[2:]]


def split_of(model: nn.Module) -> Split | None:
    """The Split of a transformer or timm model; None for the nets `Pathway` splits itself."""
    from torchvision.models import MaxVit, SwinTransformer, VisionTransformer

    if type(model).__module__.startswith("timm."):
        from generator.nets import timm_models

        return timm_models.split(model)
    for kind, split in ((VisionTransformer, TorchvisionViT), (SwinTransformer, TorchvisionSwin), (MaxVit, TorchvisionMaxViT)):
        if isinstance(model, kind):
            return split(model)
    return None


def pathway_for(model: nn.Module, mean: Sequence[float], std: Sequence[float], input_size: int) -> Pathway:
    """The Pathway of any supported model: a SplitPathway for transformers and timm models,
    else Pathway's own split (AlexNet/VGG, the globally pooled CNNs)."""
    split = split_of(model)
    if split is None:
        return Pathway(model, mean=mean, std=std, input_size=input_size)
    return SplitPathway(model, split, mean=mean, std=std, input_size=input_size)


def random_head(model: nn.Module) -> None:
    """Give a random-init net a random classifier where its init left it all zero (torchvision's
    ViT zero-inits `heads.head`): with a zero head every class score is 0 for every image, and
    no picture could show anything. The classifier is the model's last Linear; torch's global
    generator draws it, like the rest of the init."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears and not linears[-1].weight.any():
        linears[-1].reset_parameters()


def torchvision_kwargs(name: str, input_size: int, weights: str | None) -> dict[str, Any]:
    """What torchvision's ViT and MaxViT builders need to know of the input size: a ViT builds its
    position embedding for one size, a MaxViT its partitions. Named weights trained at another
    size are refused here, with the size to set, instead of as a shape mismatch."""
    from generator.errors import ModelError
    from generator.modelspec import is_weights_path
    from generator.nets.families import model_family

    family = model_family(name)
    if family not in ("vit", "maxvit"):
        return {}
    if weights is not None and not is_weights_path(weights):
        import torchvision.models

        try:
            trained = torchvision.models.get_model_weights(name)[weights].meta["min_size"][0]
        except KeyError:
            trained = input_size  # an unknown name: the loader says so
        if trained != input_size:
            raise ModelError(f"{name} weights {weights} are for {trained}px images, not {input_size}px: "
                             f"set model.input_size: {trained} in catalog.yaml")
    return {"image_size": input_size} if family == "vit" else {"input_size": (input_size, input_size)}
