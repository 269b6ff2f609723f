"""The atlas's methods. Each is a short module that poses problems for the one engine
(`generator.engine.solve.solve`) and returns a `MethodResult`; `generator.build` writes it.

Contract for a method module `generator/methods/<name>.py`:

    VERSION: int                 # bump when the code changes what it produces (cache key)
    DEFAULTS: dict               # its parameters and their defaults (catalog `methods.<name>`)
    def run(ctx: ClassContext, params: dict) -> MethodResult

`params` is DEFAULTS updated with the catalog's values (already validated by the catalog).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from generator.pathway import Activations, Pathway

METHOD_NAMES = ("classviz", "location", "topics", "ensemble", "hierarchy", "inversion")


@dataclass
class ClassContext:
    """Everything a method needs about one class; built once per class by `generator.build`."""

    pathway: Pathway
    class_index: int  # the class's index into fc8
    class_id: str  # wnid (or demo id)
    class_name: str
    images: Tensor  # (N, 3, S, S) in [0, 1]: the class's images, in their deterministic order
    image_names: list[str]  # display names of those images (file names), same order
    features: Activations  # pool5/fc6/fc7/fc8 of `images` (no masks), on CPU
    engine: dict[str, Any]  # engine settings from the catalog (`generator.engine.settings.Settings` fields)
    seed: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = False  # show the engine's bar over optimization steps


@dataclass
class Picture:
    """One image of the atlas plus everything needed to caption and reproduce it."""

    key: str  # unique within its method, used as the file stem: e.g. "window-r0-c1"
    image: Tensor  # (3, H, W) in [0, 1]
    caption: str  # what produced it, for people
    alt: str  # alt text: what the picture shows
    numbers: dict[str, float] = field(default_factory=dict)  # e.g. {"prob": 0.97}
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. {"row": 0, "col": 1}, {"topic": 2,
    # "retrieved": [{"image": 7, "loading": 0.81}, ...]} where "image" indexes ctx.images


@dataclass
class MethodResult:
    method: str
    params: dict[str, Any]
    seed: int
    pictures: list[Picture]
    numbers: dict[str, Any] = field(default_factory=dict)  # summary numbers (e.g. heterogeneity)


def method_module(name: str):
    """The module implementing method `name` (imported lazily: methods pull in the engine)."""
    import importlib

    if name not in METHOD_NAMES:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHOD_NAMES)}")
    return importlib.import_module(f"generator.methods.{name}")


def method_defaults(name: str) -> dict[str, Any]:
    """A copy of the method's DEFAULTS (what the catalog may set under `methods.<name>`)."""
    return dict(method_module(name).DEFAULTS)
