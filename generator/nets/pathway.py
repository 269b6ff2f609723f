"""The neural pathway of Sec. 4: trunk -> pool5 -> (fc6) -> fc7 -> fc8 with 0/1 masks.

Every method in the atlas is an optimization through this one module. It takes images in
[0, 1] RGB (normalization by the model's mean/std happens inside, so the optimizer, the
regularizers and the patch prior all live in plain image space) and returns the activations.
Masks multiply activations, so they gate both the forward values and the gradients, exactly
as in the authors' code. Two families of networks:

- "fc" (AlexNet, VGG and look-alikes: features / avgpool / classifier with three Linear layers):
      fc6 = m6 * relu(W6 vec(m5 * pool5)),  fc7 = m7 * relu(W7 fc6),  fc8 = W8 fc7.
- "pooled" (ResNet, Wide ResNet, ResNeXt, RegNet, MobileNet v2/v3, EfficientNet, ConvNeXt): the
  last spatial feature map plays pool5, its global average (where MobileNet and EfficientNet
  are trained with dropout) plays fc7, the logits fc8; fc6 does not exist (`Activations.fc6 is None`):
      fc7 = m7 * head_pre(avgpool(m5 * pool5)),  fc8 = W8 fc7.
  A classifier with one hidden Linear layer (MobileNet v3) makes the pooled vector fc6 and the
  hidden layer's output fc7, since that is where its dropout sits:
      fc6 = m6 * avgpool(m5 * pool5),  fc7 = m7 * act(W7 fc6),  fc8 = W8 fc7.

`pathway.levels` / `pathway.gate_shapes` / `pathway.has_fc6` say which exist; `pathway.roles`
says, as data, which module plays each part (for the site's methods page). Vision transformers
and timm models are cut at pool5 by `generator/nets/split.py` (a subclass that only says how to
reach pool5 and how to pool it: transformers.py, timm_models.py); a class-token ViT's head also needs the class token
entering its last block, which `stem` returns as the `context` and `head` takes back.
Masks are passed as `gates`, named by the level they gate: `pathway(x, gates={"pool5": m5,
"fc7": m7})` (`MASKS` maps the paper's names to the levels). A gate is either per sample (first
dim = batch) or broadcast (no batch dim).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generator.errors import PathwayError
from generator.nets.memory import keep_freed_memory

NEEDS = (
    "the atlas needs either AlexNet/VGG's features/avgpool/classifier layout with three Linear layers "
    "(pool5 -> fc6 -> fc7 -> fc8), or a globally pooled CNN: a conv trunk (`features`, or ResNet/RegNet's "
    "layers before `avgpool`), global average pooling, and a classifier of one Linear layer (or two with "
    "an activation between) as in torchvision's resnet*, wide_resnet*, resnext*, regnet_*, mobilenet_v2/v3, "
    "efficientnet_b*, convnext_*; or a vision transformer (vit_*, swin_*, swin_v2_*, maxvit_t; any timm model as "
    "timm:<name>)"
)
# What the last map holds per torchvision class (the roles table's wording; "?" for other models).
LAST_MAP = {
    "ResNet": "ReLU after the last residual add (non-negative)",
    "RegNet": "ReLU after the last residual add (non-negative)",
    "MobileNetV2": "ReLU6 of the last 1x1 conv (non-negative)",
    "MobileNetV3": "Hardswish of the last 1x1 conv (>= -0.375)",
    "EfficientNet": "SiLU of the last 1x1 conv (>= -0.28)",
    "ConvNeXt": "the last stage's residual stream, no activation (signed)",
}
MASKS = {"m5": "pool5", "m6": "fc6", "m7": "fc7"}  # the paper's mask names -> the level each gates


def as_gates(masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Masks named as the paper names them ({"m5": ..., "m7": ...}) as gates named by level."""
    return {MASKS[name]: mask for name, mask in masks.items()}


_HEAD_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.GELU, nn.Tanh)
_PRE_POOL_OK = (nn.Dropout, nn.Flatten, nn.LayerNorm, nn.Identity)


@dataclass
class Activations:
    pool5: Tensor  # (B, C, H, W): AlexNet/VGG: after the last ReLU + max-pool (+ avgpool); pooled nets: the last map
    fc6: Tensor | None  # (B, D6) masked; None for nets without fc6 (most globally pooled nets)
    fc7: Tensor  # (B, D7) masked: AlexNet/VGG's fc7, or a pooled net's pooled vector (MobileNet v3: hidden layer)
    fc8: Tensor  # (B, classes) pre-softmax scores
    # each gated level's values before its gate: a gate only gates, so a closed unit's value cannot
    # reach fc8 but nothing stops the image from driving it (terms.ClosedActivity charges for that)
    ungated: dict[str, Tensor] = field(default_factory=dict)
    # what the head needs beside pool5 (`Pathway.stem`): a class-token transformer's prefix tokens
    # entering its last block (B, P, C); None for the CNNs and the pooled transformers
    context: Tensor | None = None


def _find_classifier_layers(classifier: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    """The three Linear layers of an AlexNet/VGG-style classifier, checked for ReLUs between."""
    layers = list(classifier.children()) if isinstance(classifier, nn.Sequential) else []
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    if len(linears) != 3:
        raise PathwayError(
            f"expected a classifier nn.Sequential with exactly 3 nn.Linear layers (fc6, fc7, fc8), "
            f"found {len(linears)}"
        )
    allowed = (nn.Linear, nn.ReLU, nn.Dropout)
    odd = [type(m).__name__ for m in layers if not isinstance(m, allowed)]
    if odd:
        raise PathwayError(f"classifier has layers the pathway cannot mask: {', '.join(odd)}")
    relus_after = []
    for lin in linears[:2]:
        i = layers.index(lin)
        relus_after.append(any(isinstance(m, nn.ReLU) for m in layers[i + 1 : layers.index(linears[linears.index(lin) + 1])]))
    if not all(relus_after):
        raise PathwayError("classifier must have a ReLU after fc6 and after fc7")
    return linears[0], linears[1], linears[2]


def _is_global_pool(module: nn.Module | None) -> bool:
    if module is None:
        return True  # mobilenet_v2 pools in forward() with adaptive_avg_pool2d(x, (1, 1))
    size = getattr(module, "output_size", None)
    return isinstance(module, nn.AdaptiveAvgPool2d) and size in (1, (1, 1), [1, 1])


def _is_fc_layout(model: nn.Module) -> bool:
    """AlexNet/VGG: features + classifier with three Linear layers."""
    classifier = getattr(model, "classifier", None)
    if not hasattr(model, "features") or not isinstance(classifier, nn.Sequential):
        return False
    return sum(isinstance(m, nn.Linear) for m in classifier.children()) == 3


def _split_pooled(model: nn.Module) -> tuple[nn.Sequential, str, list[tuple[str, nn.Module]]]:
    """(trunk, trunk description, named head layers) of a globally pooled CNN, or PathwayError."""
    name = type(model).__name__
    if not _is_global_pool(getattr(model, "avgpool", None)):
        raise PathwayError(f"{name}.avgpool is {model.avgpool}, not a global average pool; {NEEDS}")
    if isinstance(getattr(model, "features", None), nn.Module) and isinstance(getattr(model, "classifier", None), nn.Module):
        trunk, where = model.features, "features"
        head = model.classifier
        named = [(f"classifier.{n}", m) for n, m in head.named_children()] if isinstance(head, nn.Sequential) else [("classifier", head)]
    elif isinstance(getattr(model, "fc", None), nn.Linear) and hasattr(model, "avgpool"):
        children = list(model.named_children())
        before = [(n, m) for n, m in children[: [n for n, _ in children].index("avgpool")]]
        trunk, where = nn.Sequential(*[m for _, m in before]), " -> ".join(n for n, _ in before)
        named = [("fc", model.fc)]
    else:
        raise PathwayError(f"{name} has neither features/classifier nor avgpool/fc; {NEEDS}")
    if not isinstance(trunk, nn.Sequential):
        trunk = nn.Sequential(trunk)
    return trunk, where, named


class Pathway(nn.Module):
    """A classifier split into trunk (to pool5) and its head, with masks.

    See the module docstring for the two families. `family` is "fc" or "pooled".
    """

    mean: Tensor  # (1, 3, 1, 1) buffers: the model's normalization
    std: Tensor

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        input_size: int = 224,
    ) -> None:
        super().__init__()
        keep_freed_memory()  # every pathway allocates batch-sized tensors at each step (memory.py)
        model.eval()
        self.architecture = type(model).__name__
        self.input_size = input_size
        self.fc6: nn.Module | None
        self.head_pre: nn.ModuleList = nn.ModuleList()  # pooled: layers between the pool and fc7 (ConvNeXt's LayerNorm2d)
        self.hidden_activation: nn.Module | None = None  # pooled with a hidden layer: its activation
        self.dropout_at: tuple[str, ...] = ()  # the levels whose values the net drops out in training
        if _is_fc_layout(model):
            self.family = "fc"
            self.features = model.features
            self.avgpool = getattr(model, "avgpool", None) or nn.Identity()
            self.fc6, self.fc7, self.fc8 = _find_classifier_layers(model.classifier)
            layers = list(model.classifier.children())
            self.dropout_at = tuple(
                level for level, linear in zip(("pool5", "fc6", "fc7"), (self.fc6, self.fc7, self.fc8))
                if isinstance(layers[layers.index(linear) - 1], nn.Dropout)
            )
            self._roles = {
                "pool5": "features -> avgpool: the last conv map after ReLU and max-pool",
                "fc6": "classifier's first Linear + ReLU",
                "fc7": "classifier's second Linear + ReLU",
                "fc8": "classifier's last Linear (logits)",
            }
        else:
            if not (hasattr(model, "features") or hasattr(model, "fc")):
                raise PathwayError(f"{self.architecture} has no features or fc layer: {NEEDS}")
            self.family = "pooled"
            self.features, where, named = _split_pooled(model)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self._init_pooled_head(named)
            pooled = "the global average of the last map"
            last = LAST_MAP.get(self.architecture, "the trunk's last output")
            self._roles = {
                "pool5": f"{where}: the last spatial map ({last}); location windows and the m5 code live here",
                "fc6": (f"{pooled} (input of the hidden classifier layer)" if self.fc6 is not None else
                        "absent: the net pools the last map straight into its classifier, so there is no m6 "
                        "(the hierarchy has {m7} and {m5-7} only)"),
                "fc7": (f"{self._names['fc7']} + {type(self.hidden_activation).__name__}" if self.fc6 is not None else
                        f"{pooled}{' after ' + self._names['pre'] if self._names['pre'] else ''}")
                + ("; the net was trained with dropout here" if "fc7" in self.dropout_at else
                   "; the net has no dropout here (its dropout masks pick members of an ensemble it never trained)")
                + "; topics and the m7 code live here",
                "fc8": f"{self._names['fc8']} (logits)",
            }
        probe = self._freeze(mean, std)
        if probe.dim() != 4:
            raise PathwayError(f"{self.architecture}'s trunk gives shape {tuple(probe.shape)}, not a (C, H, W) map; {NEEDS}")
        if self.family == "fc" and probe[0].numel() != self.fc6.in_features:  # type: ignore[union-attr]
            raise PathwayError(
                f"pool5 has {probe[0].numel()} values {self.pool5_shape} but fc6 expects "
                f"{self.fc6.in_features}"  # type: ignore[union-attr]
            )
        first = self.fc7 if self.has_fc6 else self.fc8
        if self.family == "pooled" and self.pool5_shape[0] != first.in_features:  # type: ignore[union-attr]
            raise PathwayError(f"the last map has {self.pool5_shape[0]} channels {self.pool5_shape} but the "
                               f"classifier expects {first.in_features}; {NEEDS}")  # type: ignore[union-attr]
        if self.family == "pooled":
            self._check_reproduces(model)

    def _freeze(self, mean: Sequence[float], std: Sequence[float]) -> Tensor:
        """Normalization buffers, eval mode and frozen parameters; sets `pool5_shape` from the
        trunk's output on one black image, which it returns."""
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            probe = self.trunk(torch.zeros(1, 3, self.input_size, self.input_size))
        self.pool5_shape: tuple[int, int, int] = tuple(probe.shape[1:])  # type: ignore[assignment]
        return probe

    def _init_pooled_head(self, named: list[tuple[str, nn.Module]]) -> None:
        """Split a pooled net's classifier: [pre layers] Linear [activation, dropout] [Linear]."""
        linears = [i for i, (_, m) in enumerate(named) if isinstance(m, nn.Linear)]
        if len(linears) not in (1, 2):
            raise PathwayError(f"{self.architecture}'s classifier has {len(linears)} Linear layers; {NEEDS}")
        pre = named[: linears[0]]
        odd = [f"{n} ({type(m).__name__})" for n, m in pre if not isinstance(m, _PRE_POOL_OK)
               and "LayerNorm" not in type(m).__name__]
        if odd:
            raise PathwayError(f"{self.architecture}'s classifier has layers before its Linear the pathway cannot "
                               f"pass: {', '.join(odd)}")
        self.head_pre = nn.ModuleList([m for _, m in pre if not isinstance(m, (nn.Dropout, nn.Flatten, nn.Identity))])
        names = {"pre": ", ".join(n for n, m in pre if m in list(self.head_pre))}
        dropout_first = any(isinstance(m, nn.Dropout) for _, m in pre)
        if len(linears) == 1:
            self.fc6, self.fc7 = None, None
            between = named[linears[0] + 1 :]
            self.fc8 = named[linears[0]][1]
            names["fc8"] = named[linears[0]][0]
            self.dropout_at = ("fc7",) if dropout_first else ()
        else:
            between = named[linears[0] + 1 : linears[1]]
            acts = [m for _, m in between if isinstance(m, _HEAD_ACTIVATIONS)]
            odd = [type(m).__name__ for _, m in between if not isinstance(m, (*_HEAD_ACTIVATIONS, nn.Dropout))]
            if len(acts) != 1 or odd:
                raise PathwayError(f"{self.architecture}'s classifier needs exactly one activation (and dropout) "
                                   f"between its two Linear layers; {NEEDS}")
            self.fc6 = nn.Identity()  # type: ignore[assignment]  # marks "exists"; fc6 is the pooled vector itself
            self.fc7, self.hidden_activation = named[linears[0]][1], acts[0]
            self.fc8 = named[linears[1]][1]
            names |= {"fc7": named[linears[0]][0], "fc8": named[linears[1]][0]}
            self.dropout_at = (("fc6",) if dropout_first else ()) + \
                (("fc7",) if any(isinstance(m, nn.Dropout) for _, m in between) else ())
            between = named[linears[1] + 1 :]
        if any(not isinstance(m, nn.Dropout) for _, m in between if not isinstance(m, nn.Linear)):
            raise PathwayError(f"{self.architecture}'s classifier has layers after its logits; {NEEDS}")
        self._names = names

    @torch.no_grad()
    def _check_reproduces(self, model: nn.Module) -> None:
        """A split that does not reproduce model(x) (e.g. a forward() that does more than its
        children) is refused instead of giving an atlas of some other function."""
        x = torch.rand(2, 3, self.input_size, self.input_size, generator=torch.Generator().manual_seed(0))
        try:
            expected = model.eval()(self.normalize(x))
        except Exception as exc:
            raise PathwayError(f"{self.architecture} fails on a {self.input_size}px input: {type(exc).__name__}: {exc}") from None
        got = self(x).fc8
        if not isinstance(expected, Tensor) or expected.shape != got.shape or \
                (expected - got).abs().max() > 1e-4 * (1.0 + expected.abs().max()):
            raise PathwayError(f"splitting {self.architecture} into trunk -> global pool -> classifier does not "
                               f"reproduce its forward(); {NEEDS}")

    @property
    def has_fc6(self) -> bool:
        return self.fc6 is not None

    @property
    def levels(self) -> tuple[str, ...]:
        """The activations this net has, in order: pool5, [fc6,] fc7, fc8."""
        return ("pool5", "fc6", "fc7", "fc8") if self.has_fc6 else ("pool5", "fc7", "fc8")

    @property
    def gate_shapes(self) -> dict[str, tuple[int, ...]]:
        """The levels this net takes a gate at (pool5, [fc6,] fc7) -> one sample's gate shape."""
        shapes: dict[str, tuple[int, ...]] = {"pool5": self.pool5_shape}
        if self.fc6_dim is not None:
            shapes["fc6"] = (self.fc6_dim,)
        return shapes | {"fc7": (self.fc7_dim,)}

    @property
    def masks(self) -> tuple[str, ...]:
        """The paper's names of the masks this net takes: m5, [m6,] m7."""
        return tuple(name for name, level in MASKS.items() if level in self.gate_shapes)

    @property
    def roles(self) -> dict[str, str]:
        """Which module plays each part (pool5, fc6, fc7, fc8), in words, for the methods page."""
        return dict(self._roles)

    @property
    def num_classes(self) -> int:
        return self.fc8.out_features

    @property
    def fc6_dim(self) -> int | None:
        if self.fc6 is None:
            return None
        return self.fc6.out_features if isinstance(self.fc6, nn.Linear) else self.pool5_shape[0]

    @property
    def fc7_dim(self) -> int:
        return self.fc8.in_features

    def train(self, mode: bool = True) -> "Pathway":
        # Dropout is never part of the pathway (masks replace it); keep BN in eval too.
        return super().train(False)

    def normalize(self, images: Tensor) -> Tensor:
        return (images - self.mean) / self.std

    def trunk(self, images: Tensor) -> Tensor:
        """pool5 of [0,1] images (no mask)."""
        x = self.features(self.normalize(images))
        return self.avgpool(x) if self.family == "fc" else x

    def trunk_layer(self, images: Tensor, index: int) -> Tensor:
        """Output of features[index] (for inverting any conv layer)."""
        x = self.normalize(images)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == index:
                return x
        raise IndexError(f"features has {len(self.features)} layers, asked for {index}")

    def stem(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """pool5 of [0,1] images and the context the head needs beside it (None here; a
        class-token transformer's class token entering its last block)."""
        return self.trunk(images), None

    def forward(self, images: Tensor, gates: Mapping[str, Tensor] | None = None) -> Activations:
        pool5, context = self.stem(images)
        return self.head(pool5, gates, context)

    def pool(self, pool5: Tensor, context: Tensor | None = None) -> Tensor:
        """A pooled net's (gated) pool5 -> the vector its classifier starts from: the global
        average, then the layers before the classifier's first Linear (ConvNeXt's LayerNorm2d)."""
        pooled = self.avgpool(pool5)
        for layer in self.head_pre:
            pooled = layer(pooled)
        return torch.flatten(pooled, 1)

    def head(self, pool5: Tensor, gates: Mapping[str, Tensor] | None = None,
             context: Tensor | None = None) -> Activations:
        """fc6, fc7, fc8 from pool5 (and the stem's `context`, for the nets that need it), each
        level named in `gates` multiplied by its gate (pool5 is returned ungated). A gate
        multiplies the values, so it gates both them and their gradient, as the authors' masks do."""
        gates = gates or {}
        unknown = sorted(set(gates) - set(self.gate_shapes))
        if unknown:
            why = " (its pooled vector plays fc7)" if "fc6" in unknown and not self.has_fc6 else ""
            raise ValueError(f"{self.architecture} has no gate at {', '.join(unknown)}{why}; "
                             f"it gates {', '.join(self.gate_shapes)}")
        ungated: dict[str, Tensor] = {}

        def gate(level: str, values: Tensor) -> Tensor:
            if level not in gates:
                return values
            ungated[level] = values
            return values * gates[level]

        x = gate("pool5", pool5)
        fc6: Tensor | None
        if self.family == "fc":
            fc6 = gate("fc6", F.relu(self.fc6(torch.flatten(x, 1))))  # type: ignore[misc]
            fc7 = gate("fc7", F.relu(self.fc7(fc6)))
        else:
            pooled = self.pool(x, context)
            if self.has_fc6:
                fc6 = gate("fc6", pooled)
                fc7 = gate("fc7", self.hidden_activation(self.fc7(fc6)))  # type: ignore[misc]
            else:
                fc6, fc7 = None, gate("fc7", pooled)
        return Activations(pool5=pool5, fc6=fc6, fc7=fc7, fc8=self.fc8(fc7), ungated=ungated, context=context)
