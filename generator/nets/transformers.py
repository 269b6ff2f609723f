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
same for every closed token, so a closed token carries no trace of the image.
"""
from __future__ import annotations

from typing import Any, Sequence, cast

import torch
from torch import Tensor, nn

from generator.errors import PathwayError
from generator.nets.families import CLASS_TOKEN, POOLED_TOKEN  # what fc7 is: `SplitPathway.tokens`, the manifest's model record
from generator.nets.memory import keep_freed_memory
from generator.nets.pathway import Pathway

TOKEN_MARGIN = 1  # cells of context around a token's own cell in its unit-atlas patch


def to_grid(tokens: Tensor, height: int, width: int) -> Tensor:
    """(B, N, C) patch tokens in row-major order -> their (B, C, H, W) grid."""
    if tokens.shape[1] != height * width:
        raise PathwayError(f"{tokens.shape[1]} patch tokens do not fill a {height}x{width} grid")
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


def to_tokens(grid: Tensor) -> Tensor:
    """(B, C, H, W) grid -> (B, H*W, C) tokens, row-major (the inverse of to_grid)."""
    return grid.flatten(2).transpose(1, 2)


def needs_context(architecture: str, context: Tensor | None) -> Tensor:
    if context is None:
        raise ValueError(f"{architecture}'s head needs the class token entering its last block beside pool5: "
                         "pass context= (Activations.context, or Pathway.stem(images))")
    return context


class Split(nn.Module):
    """How one architecture is cut at pool5 (holds the model, so the pathway's parameters,
    device moves and digest include it)."""

    model: Any  # the whole model (nn.Module's typing would make every attribute Tensor | Module)
    family = "pooled"  # Pathway.family: "pooled" (the head averages pool5) or "tokens" (it attends to it)
    tokens: str | None = POOLED_TOKEN  # what fc7 is made of; None: a CNN (a timm ResNet)
    roles: dict[str, str] = {}  # pool5, fc7 in words (the pathway adds fc6 / fc8)

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        """Normalized images -> pool5, as `pathway.features` is for the CNNs."""
        return self.stem(x)[0]

    def stem(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Normalized images -> (pool5 (B, C, H, W), the context the head needs or None)."""
        raise NotImplementedError

    def finish(self, pool5: Tensor, context: Tensor | None) -> Tensor:
        """(Gated) pool5 -> the vector the classifier's named layers start from."""
        raise NotImplementedError

    def classifier(self) -> list[tuple[str, nn.Module]]:
        """The classifier's named layers after `finish`: [pre] Linear [act, dropout] [Linear]."""
        raise NotImplementedError


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


class SplitPathway(Pathway):
    """A Pathway whose trunk and pooling come from a Split (module docstring); the head, the
    gates and the levels are Pathway's."""

    def __init__(self, model: nn.Module, split: Split, mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225), input_size: int = 224) -> None:
        nn.Module.__init__(self)
        keep_freed_memory()
        model.eval()
        self.architecture = type(model).__name__
        self.input_size = input_size
        self.family = split.family
        self.tokens = split.tokens
        self.features = split  # units' conv1 picture and layer walks look here
        self.avgpool = nn.Identity()
        self.head_pre: nn.ModuleList = nn.ModuleList()
        self.hidden_activation: nn.Module | None = None
        self.dropout_at: tuple[str, ...] = ()
        self._init_pooled_head(split.classifier())
        try:
            probe = self._freeze(mean, std)
        except Exception as exc:
            raise PathwayError(f"{self.architecture} fails on a {input_size}px input: {type(exc).__name__}: {exc}") from None
        if probe.dim() != 4:
            raise PathwayError(f"{self.architecture}'s pool5 has shape {tuple(probe.shape)}, not a (C, H, W) grid")
        self._roles = {
            "pool5": f"{split.roles['pool5']}; location windows and the m5 code live here",
            "fc6": "the vector before the hidden layer" if self.has_fc6 else "absent: no hidden layer in the head, so no m6",
            "fc7": f"{split.roles['fc7']}; topics and the m7 code live here"
                   + ("" if "fc7" in self.dropout_at else " (no dropout here in training)"),
            "fc8": f"{self._names['fc8']} (logits)",
        }
        self._check_reproduces(model)

    @property
    def split(self) -> Split:
        return cast(Split, self.features)

    def stem(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.split.stem(self.normalize(images))

    def trunk(self, images: Tensor) -> Tensor:
        return self.stem(images)[0]

    def trunk_layer(self, images: Tensor, index: int) -> Tensor:
        raise IndexError(f"{self.architecture} has no conv trunk to index: its levels are {', '.join(self.levels)}")

    def pool(self, pool5: Tensor, context: Tensor | None = None) -> Tensor:
        pooled = self.split.finish(pool5, context)
        for layer in self.head_pre:
            pooled = layer(pooled)
        return torch.flatten(pooled, 1)


def pathway_for(model: nn.Module, mean: Sequence[float], std: Sequence[float], input_size: int) -> Pathway:
    """The Pathway of any supported model: a SplitPathway for transformers and timm models,
    else Pathway's own split (AlexNet/VGG, the globally pooled CNNs)."""
    split = split_of(model)
    if split is None:
        return Pathway(model, mean=mean, std=std, input_size=input_size)
    return SplitPathway(model, split, mean=mean, std=std, input_size=input_size)


def token_fields(pathway: Pathway) -> Tensor | None:
    """(H, W, 4) boxes [top, left, bottom, right) for the unit atlas's patches of a transformer's
    pool5 tokens: the token's own cell of the input (the patch its residual stream starts from)
    with TOKEN_MARGIN cells around it. Measured by gradients, every token's field is the whole
    image (attention mixes all tokens from the first block on), which would make every top patch
    the whole image. None for nets that are not transformers."""
    if getattr(pathway, "tokens", None) is None:
        return None
    _, height, width = pathway.pool5_shape
    size = pathway.input_size
    boxes = torch.zeros(height, width, 4, dtype=torch.long)
    for i in range(height):
        for j in range(width):
            top, bottom = max(0, i - TOKEN_MARGIN), min(height, i + 1 + TOKEN_MARGIN)
            left, right = max(0, j - TOKEN_MARGIN), min(width, j + 1 + TOKEN_MARGIN)
            boxes[i, j] = torch.tensor([top * size // height, left * size // width,
                                        bottom * size // height, right * size // width])
    return boxes


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
