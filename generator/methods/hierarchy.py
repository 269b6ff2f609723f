"""Hierarchical codes (paper Sec. 4.4, masks m5-7): how much of an image does its code hold?

An image's ReLU on/off pattern at pool5, fc6 and fc7 is a binary code. Visualizing the class
under the code of a real image, with more and more of it fixed ({m7}, then {m6, m7}, then
{m5, m6, m7}), should give pictures closer and closer to that image: the class knowledge is
organized hierarchically, the later layers choosing among the layouts the earlier ones allow.
We report each picture's distance to the image: relative L2 in pixels (the paper's error) and
cosine distance in fc7.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from generator.methods import ClassContext, MethodResult, Picture
from generator.methods.location import class_database, cosine_distances, fc7_of
from generator.optimize import Problem, settings_from, solve

VERSION = 2
DEFAULTS: dict[str, Any] = {
    "images": 1,  # how many of the class's images to invert (the most typical first)
    "prior": True,
}
LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("m7", ("m7",)),
    ("m6-7", ("m6", "m7")),
    ("m5-7", ("m5", "m6", "m7")),
)


def most_typical(fc7: Tensor, count: int) -> list[int]:
    """Indices of the `count` images whose fc7 is closest (L2) to the class's mean fc7."""
    distances = (fc7 - fc7.mean(0, keepdim=True)).norm(dim=1)
    return torch.argsort(distances)[:count].tolist()


def relative_error(estimate: Tensor, reference: Tensor) -> float:
    """||reference - estimate|| / ||reference||: the paper's error for reconstructions."""
    return float((reference - estimate).norm() / reference.norm().clamp_min(1e-12))


def run(ctx: ClassContext, params: dict[str, Any]) -> MethodResult:
    params = {**DEFAULTS, **params}
    pathway = ctx.pathway
    chosen = most_typical(ctx.features.fc7, min(int(params["images"]), ctx.images.shape[0]))
    inputs = ctx.images[chosen]
    codes = pathway.codes(inputs.to(pathway.mean.device))
    prior = class_database(ctx, params)
    problems = [
        Problem(
            target_class=ctx.class_index,
            prior=prior,
            seed=ctx.seed,
            label=f"image {index} code {level}",
            **{name: codes[name][row].cpu() for name in masks},
        )
        for row, index in enumerate(chosen)
        for level, masks in LEVELS
    ]
    solutions = solve(pathway, problems, settings_from(ctx.engine), progress=ctx.progress)
    input_fc7 = fc7_of(pathway, inputs)
    result_fc7 = fc7_of(pathway, torch.stack([s.image for s in solutions]))

    pictures: list[Picture] = []
    errors: dict[str, list[float]] = {f"{kind}_{level}": [] for kind in ("pixel", "fc7") for level, _ in LEVELS}
    for row, index in enumerate(chosen):
        name = ctx.image_names[index]
        pictures.append(
            Picture(
                key=f"image{row}-input",
                image=inputs[row],
                caption=f"Input: {ctx.class_name} image {name}, the most typical by fc7" if row == 0
                else f"Input: {ctx.class_name} image {name}",
                alt=f"Photograph of {ctx.class_name} whose binary code is inverted",
                meta={"image": index, "level": "input"},
            )
        )
        for step, (level, masks) in enumerate(LEVELS):
            at = row * len(LEVELS) + step
            solution = solutions[at]
            pixel = relative_error(solution.image, inputs[row])
            feature = float(cosine_distances(torch.stack([result_fc7[at], input_fc7[row]]))[0, 1])
            errors[f"pixel_{level}"].append(pixel)
            errors[f"fc7_{level}"].append(feature)
            pictures.append(
                Picture(
                    key=f"image{row}-{level}",
                    image=solution.image,
                    caption=f"{ctx.class_name} under the {level} code of {name} ({', '.join(masks)} fixed), patch prior",
                    alt=f"Visualization of {ctx.class_name} constrained by the {level} ReLU code of one image",
                    numbers={"score": solution.score, "prob": solution.prob, "pixel_error": pixel, "fc7_error": feature},
                    meta={"image": index, "level": level, "masks": list(masks), "diverged": solution.diverged},
                )
            )
    numbers: dict[str, Any] = {key: sum(v) / len(v) for key, v in errors.items()}
    numbers["images"] = chosen
    numbers["levels"] = [level for level, _ in LEVELS]
    numbers["pixel_metric"] = "||I0 - I|| / ||I0|| in [0, 1] RGB"
    # Cosine, like every fc7 comparison in the atlas: a class visualization drives fc7 to
    # several times a photo's norm, so a relative L2 error would measure magnitude, not content.
    numbers["fc7_metric"] = "1 - cos(fc7(I0), fc7(I)) (unmasked net)"
    return MethodResult(method="hierarchy", params=params, seed=ctx.seed, pictures=pictures, numbers=numbers)
