"""A Pathway cut at pool5 by a `Split`: the trunk up to a grid of tokens (or a timm model's last
map) and the pooling after it, for the nets Pathway cannot split itself (vision transformers,
timm models: generator/nets/transformers.py, generator/nets/timm_models.py). The head, the gates
and the levels are Pathway's; `stem` also returns the context a class-token ViT's head needs
beside pool5 (its class token entering the last block)."""
from __future__ import annotations

import abc
from typing import Any, Sequence, cast

import torch
from torch import Tensor, nn

from generator.errors import PathwayError
from generator.nets.families import POOLED_TOKEN
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


class Split(nn.Module, abc.ABC):
    """How one architecture is cut at pool5 (holds the model, so the pathway's parameters,
    device moves and digest include it). Each family implements the three cuts below."""

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

    @abc.abstractmethod
    def stem(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Normalized images -> (pool5 (B, C, H, W), the context the head needs or None)."""
        ...

    @abc.abstractmethod
    def finish(self, pool5: Tensor, context: Tensor | None) -> Tensor:
        """(Gated) pool5 -> the vector the classifier's named layers start from."""
        ...

    @abc.abstractmethod
    def classifier(self) -> list[tuple[str, nn.Module]]:
        """The classifier's named layers after `finish`: [pre] Linear [act, dropout] [Linear]."""
        ...


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
