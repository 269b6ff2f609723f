"""Style-based object completion (paper Sec. 5.2): paint a class into a box of a scene.

Inside the box we optimize E_class for a class (by default the scene's own top-1, as the
paper's "hay" in a grassland) while every pixel outside stays fixed, with the patch prior so
the new content looks like natural patches. A topic's m7 mask (topics.py) picks the style of
the inserted object. This is an application, not a per-class atlas method: `atlas complete`
calls `complete_scene` on one image.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from generator.engine.patch_database import PatchDatabase, normalized_patches
from generator.engine.settings import RAW_PIXELS, Settings, settings_from
from generator.engine.solve import solve
from generator.methods.common import class_problem
from generator.nets.pathway import Pathway

if TYPE_CHECKING:
    from generator.catalog import Catalog

Box = tuple[int, int, int, int]  # x, y, width, height in pixels


@dataclass
class Completion:
    image: Tensor  # (3, S, S) in [0, 1]: the scene with the box filled in
    class_index: int
    score: float  # fc8[class] of the result (under the topic mask, if any)
    prob: float
    start_score: float  # fc8[class] of the starting image (box filled with context colour)
    diverged: bool
    box: Box

    @property
    def numbers(self) -> dict[str, Any]:
        values = asdict(self)
        values.pop("image")
        values["box"] = list(self.box)
        return values


def check_box(box: Box, size: int) -> Box:
    """The box as ints, or a clear error if it is empty or leaves the size x size image."""
    x, y, w, h = (int(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"completion: box {box} must have positive width and height")
    if x < 0 or y < 0 or x + w > size or y + h > size:
        raise ValueError(f"completion: box {box} (x, y, w, h) must lie inside the {size}x{size} image")
    return x, y, w, h


def keep_mask(box: Box, size: int) -> Tensor:
    """(1, S, S): 1 for the pixels that stay fixed (everything outside the box)."""
    x, y, w, h = box
    keep = torch.ones(1, size, size)
    keep[:, y : y + h, x : x + w] = 0.0
    return keep


def fill_box(image: Tensor, box: Box, seed: int = 0, noise: float = 0.1) -> Tensor:
    """The starting image: the box painted with the mean colour around it plus seeded noise,
    so whatever appears there comes from the optimization, not from what was there before."""
    x, y, w, h = box
    keep = keep_mask(box, image.shape[-1]).bool()[0]
    context = image[:, keep].mean(1).view(3, 1, 1)
    generator = torch.Generator().manual_seed(seed)
    start = image.clone()
    start[:, y : y + h, x : x + w] = (context + noise * torch.randn(3, h, w, generator=generator)).clamp(0, 1)
    return start


def context_database(image: Tensor, box: Box, patch: int = 7, stride: int = 4, cut_stride: int = 2) -> PatchDatabase:
    """Patch prior from the image itself: its normalized patches that do not touch the box."""
    size = image.shape[-1]
    x, y, w, h = box
    patches = normalized_patches(image[None].float(), patch, cut_stride)[0]
    starts = range(0, size - patch + 1, cut_stride)
    outside = torch.tensor(
        [top + patch <= y or top >= y + h or left + patch <= x or left >= x + w for top in starts for left in starts]
    )
    if not outside.any():
        raise ValueError(f"completion: box {box} leaves no {patch}x{patch} patch outside it for the prior")
    return PatchDatabase.from_patches(patches[outside], patch, stride)


def complete(
    pathway: Pathway,
    image: Tensor,
    box: Box,
    class_index: int | None = None,
    topic_mask: Tensor | None = None,
    prior: PatchDatabase | None = None,
    settings: Settings | None = None,
    seed: int = 0,
) -> Completion:
    """Fill `box` of `image` (3, S, S) in [0, 1] with class `class_index` (default: the image's
    top-1), optionally in one style (`topic_mask`, an m7 from `topics.topic_masks_for`), with
    the patch prior of `prior` (default: the image's own patches outside the box)."""
    size = pathway.input_size
    if image.dim() != 3 or tuple(image.shape) != (3, size, size):
        raise ValueError(f"completion: image must be (3, {size}, {size}) for this model, got {tuple(image.shape)}")
    box = check_box(box, size)
    device = pathway.mean.device
    image = image.detach().float().cpu()
    if class_index is None:
        with torch.no_grad():
            class_index = int(pathway(image[None].to(device)).fc8.argmax(1))
    start = fill_box(image, box, seed)
    with torch.no_grad():
        gates = {} if topic_mask is None else {"fc7": topic_mask.to(device)}
        start_score = float(pathway(start[None].to(device), gates).fc8[0, class_index])
    # Completion edits pixels in place around a scene kept exactly: raw pixels, seen untransformed.
    settings = replace(settings or settings_from(None), **RAW_PIXELS, prior_normalize="image")
    problem = class_problem(
        pathway, settings, class_index,
        database=prior if prior is not None else context_database(image, box),
        gates=gates,
        init=start,
        keep=keep_mask(box, size),
        seed=seed,
        label=f"complete box {box}",
    )
    solution = solve(pathway, [problem], settings, progress=False)[0]
    return Completion(
        image=solution.image,
        class_index=class_index,
        score=solution.numbers["score"],
        prob=solution.numbers["prob"],
        start_score=start_score,
        diverged=solution.diverged,
        box=box,
    )


def topic_mask(catalog: Catalog, pathway: Pathway, class_index: int, topic: int) -> Tensor:
    """m7 of topic `topic` of a class (numbered from 1, as the site shows them), from NMF on the
    fc7 of its catalog images; ValueError for a topic the class does not have."""
    from generator.images import class_images
    from generator.methods import topics
    from generator.nets import features
    from generator.nets.models import class_table

    params = catalog.methods["topics"]
    class_id = class_table(catalog.model)[class_index][0]
    loaded = class_images(catalog.images, class_id, params["images"], catalog.seed, pathway.input_size)
    fc7 = features.extract(pathway, loaded.images, progress=False).fc7
    model = topics.topic_masks_for(pathway, fc7, k=params["k"], threshold=params["threshold"],
                                   min_fraction=params["min_fraction"], keep_fraction=params["keep_fraction"],
                                   seed=catalog.seed)
    if not 1 <= topic <= len(model.masks):
        raise ValueError(f"--topic {topic}: the class has topics 1..{len(model.masks)}")
    return model.masks[topic - 1]


def complete_scene(catalog: Catalog, scene: Tensor, box: Box, class_name: str | None = None,
                   topic: int | None = None) -> Completion:
    """`atlas complete`: the catalog's model paints `class_name` (default: the scene's top-1) into
    `box` of `scene`, in the style of its topic `topic` (from 1) when given. LookupError for an
    unknown class; ValueError for a box outside the scene or a topic the class lacks."""
    from generator.catalog import find_class
    from generator.nets.models import class_table, load_pathway

    pathway = load_pathway(catalog.model, catalog.device)
    class_index = None if class_name is None else find_class(class_table(catalog.model), class_name)
    mask = None if topic is None or class_index is None else topic_mask(catalog, pathway, class_index, topic)
    return complete(pathway, scene, box, class_index=class_index, topic_mask=mask,
                    settings=settings_from(catalog.engine), seed=catalog.seed)
