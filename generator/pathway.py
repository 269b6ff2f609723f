"""The neural pathway of Sec. 4: trunk -> pool5 -> fc6 -> fc7 -> fc8 with 0/1 masks.

Every method in the atlas is an optimization through this one module. It takes images in
[0, 1] RGB (normalization by the model's mean/std happens inside, so the optimizer, the
regularizers and the patch prior all live in plain image space) and returns the four
activations. Masks multiply post-ReLU activations, so they gate both the forward values and
the gradients, exactly as in the authors' code:

    fc6 = m6 * relu(W6 vec(m5 * pool5)),  fc7 = m7 * relu(W7 fc6),  fc8 = W8 fc7.

A mask is either per sample (first dim = batch) or broadcast (no batch dim).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generator.memory import keep_freed_memory


class PathwayError(ValueError):
    """The model does not have the features/avgpool/classifier layout we can split."""


@dataclass
class Activations:
    pool5: Tensor  # (B, C, H, W), after the last ReLU + max-pool (+ avgpool)
    fc6: Tensor  # (B, D6) post-ReLU, masked
    fc7: Tensor  # (B, D7) post-ReLU, masked
    fc8: Tensor  # (B, classes) pre-softmax scores
    closed: Tensor | None = None  # (B, 3) mean activity on the units each mask closes (head(closed_activity=True))


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


class Pathway(nn.Module):
    """A classifier split into trunk (to pool5) and the three fc layers, with masks.

    Works for any model with `features` (conv trunk ending in ReLU/max-pool), optional
    `avgpool`, and `classifier` (3 Linear layers with ReLUs after the first two):
    torchvision's AlexNet and VGG (with or without BN), and look-alikes.
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
        missing = [n for n in ("features", "classifier") if not hasattr(model, n)]
        if missing:
            raise PathwayError(
                f"{type(model).__name__} has no {' or '.join(missing)}: the atlas needs the "
                "features/avgpool/classifier layout of AlexNet and VGG (pool5 -> fc6 -> fc7 -> fc8); "
                "ResNets and other architectures without fc6/fc7 cannot be split into a pathway"
            )
        self.features = model.features
        self.avgpool = getattr(model, "avgpool", None) or nn.Identity()
        self.fc6, self.fc7, self.fc8 = _find_classifier_layers(model.classifier)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.input_size = input_size
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            probe = self.trunk(torch.zeros(1, 3, input_size, input_size))
        self.pool5_shape: tuple[int, int, int] = tuple(probe.shape[1:])  # type: ignore[assignment]
        if probe[0].numel() != self.fc6.in_features:
            raise PathwayError(
                f"pool5 has {probe[0].numel()} values {self.pool5_shape} but fc6 expects "
                f"{self.fc6.in_features}"
            )

    @property
    def num_classes(self) -> int:
        return self.fc8.out_features

    @property
    def fc6_dim(self) -> int:
        return self.fc6.out_features

    @property
    def fc7_dim(self) -> int:
        return self.fc7.out_features

    def train(self, mode: bool = True) -> "Pathway":
        # Dropout is never part of the pathway (masks replace it); keep BN in eval too.
        return super().train(False)

    def normalize(self, images: Tensor) -> Tensor:
        return (images - self.mean) / self.std

    def trunk(self, images: Tensor) -> Tensor:
        """pool5 of [0,1] images (no mask)."""
        return self.avgpool(self.features(self.normalize(images)))

    def trunk_layer(self, images: Tensor, index: int) -> Tensor:
        """Output of features[index] (for inverting any conv layer)."""
        x = self.normalize(images)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == index:
                return x
        raise IndexError(f"features has {len(self.features)} layers, asked for {index}")

    def forward(
        self,
        images: Tensor,
        m5: Tensor | None = None,
        m6: Tensor | None = None,
        m7: Tensor | None = None,
        closed_activity: bool = False,
    ) -> Activations:
        pool5 = self.trunk(images)
        return self.head(pool5, m5, m6, m7, closed_activity)

    def head(
        self,
        pool5: Tensor,
        m5: Tensor | None = None,
        m6: Tensor | None = None,
        m7: Tensor | None = None,
        closed_activity: bool = False,
    ) -> Activations:
        """fc6, fc7, fc8 from pool5 under the masks (pool5 returned unmasked).

        With closed_activity, also each layer's mean activity on the units its mask closes,
        before the mask zeroes it (0 for a layer without a mask). A mask only gates: a closed
        unit's value cannot reach fc8, but nothing stops the image from driving it. This is what
        a method penalizes when a code must also *forbid* its off units (hierarchy.py)."""
        closed = []

        def gate(values: Tensor, mask: Tensor | None) -> Tensor:
            if closed_activity:
                shut = values.new_zeros(values.shape[0]) if mask is None else (values * (mask == 0)).flatten(1).mean(1)
                closed.append(shut)
            return values if mask is None else values * mask

        x = gate(pool5, m5)
        fc6 = gate(F.relu(self.fc6(torch.flatten(x, 1))), m6)
        fc7 = gate(F.relu(self.fc7(fc6)), m7)
        return Activations(
            pool5=pool5, fc6=fc6, fc7=fc7, fc8=self.fc8(fc7), closed=torch.stack(closed, 1) if closed else None
        )

    @torch.no_grad()
    def codes(self, images: Tensor) -> dict[str, Tensor]:
        """The binary ReLU codes (m5, m6, m7) of images: 1 where the unit is on (Sec. 4.4)."""
        acts = self(images)
        return {
            "m5": (acts.pool5 > 0).float(),
            "m6": (acts.fc6 > 0).float(),
            "m7": (acts.fc7 > 0).float(),
        }

    def window_mask(self, top: int, left: int, size: int) -> Tensor:
        """m5 that opens only a size x size window of pool5 positions (all channels, Sec. 4.1)."""
        c, h, w = self.pool5_shape
        mask = torch.zeros(c, h, w, device=self.mean.device)
        mask[:, top : top + size, left : left + size] = 1.0
        return mask
