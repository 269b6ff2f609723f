"""What names a model: the catalog's `model:` section as a dataclass, torch-free, so that
`generator.catalog` (which validates it) and `generator.nets.models` (which loads it) both import it
and neither imports the other at module level (no catalog <-> models cycle)."""
from __future__ import annotations

import re
from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WNID_PATTERN = re.compile(r"^n\d{8}$")


@dataclass
class ModelSpec:
    name: str  # "alexnet", "vgg16", "path/net.py:build", "pkg.mod:build"
    weights: str | None = None  # weights enum name ("IMAGENET1K_V1", "DEFAULT") or a state_dict path
    num_classes: int | None = None  # passed to factories (and torchvision models) when set
    labels: list[str] | None = None  # class ids in output order; None: the 1000 ILSVRC classes
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def is_weights_path(weights: str) -> bool:
    """Weights enum names are identifiers (IMAGENET1K_V1, DEFAULT); anything else is a file."""
    return not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", weights)
