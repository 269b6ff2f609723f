"""The names of a model's outputs: the ILSVRC-2012 class table (package data) and, for a model
spec, the (id, name) of each output. Data only, no torch: the catalog resolves its classes
without loading a network (`generator.nets.models` re-exports both functions)."""
from __future__ import annotations

import functools
import importlib.resources

from generator.modelspec import WNID_PATTERN, ModelSpec


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """The 1000 ILSVRC-2012 (wnid, name) pairs in the standard index order (package data)."""
    text = importlib.resources.files("generator").joinpath("data/imagenet_classes.tsv").read_text()
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
    return tuple((wnid, name) for _, wnid, name in rows)


def class_table(spec: ModelSpec) -> list[tuple[str, str]]:
    """(id, name) of each output, in output order.

    With `labels`, ImageNet wnids get their ImageNet names and any other label names itself.
    Without, the 1000 ILSVRC classes, or "0".."n-1" for a model with another num_classes.
    """
    names = dict(imagenet_classes())
    if spec.labels is not None:
        return [(label, names.get(label, label) if WNID_PATTERN.match(label) else label) for label in spec.labels]
    if spec.num_classes is not None and spec.num_classes != len(names):
        return [(str(i), f"class {i}") for i in range(spec.num_classes)]
    return list(imagenet_classes())
