"""Hierarchical codes (paper Sec. 4.4, masks m5-7): how much of an image does its code hold?

An image's ReLU on/off pattern at pool5, fc6 and fc7 is a binary code. Visualizing the class
under the code of a real image, with more and more of it fixed ({m7}, then {m6, m7}, then
{m5, m6, m7}), should give pictures closer and closer to that image: the class knowledge is
organized hierarchically, the later layers choosing among the layouts the earlier ones allow.

Nets without fc6 (globally pooled: ResNet, MobileNet v2, EfficientNet, ConvNeXt, RegNet) have a
two-level code, {m7} (the pooled vector) then {m5-7} (plus the last feature map); the result
says so in `numbers["levels_note"]` and the claim compares the levels the net has.

Tuning notes: docs/tuning.md#hierarchy
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from generator.engine.solve import solve
from generator.methods import ClassContext, HierarchyParams, MethodResult, Picture, spec
from generator.methods.common import (
    class_database,
    class_problem,
    closed_weights,
    cosine_distances,
    engine_settings,
    fc7_of,
    seen_under,
)
from generator.nets.families import pathway_words
from generator.nets.pathway import Pathway, as_gates
from generator.records import Step

SPEC = spec("hierarchy")
VERSION = SPEC.version
DEFAULTS: dict[str, Any] = SPEC.defaults()
LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("m7", ("m7",)),
    ("m6-7", ("m6", "m7")),
    ("m5-7", ("m5", "m6", "m7")),
)
NO_FC6 = ("{{m6-7}} is left out: this network has no fc6 ({why}), so the code has two levels, {{m7}} then {{m5-7}}")
WHY_NO_FC6 = {False: "a globally pooled net: its last feature map plays pool5 and the pooled vector fc7",
              "tokens": "a transformer: pool5 is {pool5_name}, fc7 {fc7_name}"}


def no_fc6_note(pathway: Pathway) -> str:
    """Why the code of a net without fc6 has two levels, in the words of its levels."""
    words = pathway_words(pathway)
    why = WHY_NO_FC6["tokens" if getattr(pathway, "tokens", None) else False].format_map(words)
    return NO_FC6.format(why=why)


def levels_of(pathway: Pathway) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The code levels this net has: all three for AlexNet/VGG, {m7} and {m5-7} without fc6."""
    return tuple((level, tuple(m for m in masks if m in pathway.masks)) for level, masks in LEVELS
                 if level != "m6-7" or pathway.has_fc6)


@torch.no_grad()
def codes(pathway: Pathway, images: Tensor) -> dict[str, Tensor]:
    """The binary codes (m5, [m6,] m7) of images: 1 where the unit is on (> 0, Sec. 4.4). On a
    post-ReLU layer that is the ReLU pattern; on a signed one (ConvNeXt's, SiLU / Hardswish
    maps) it is the sign pattern, the same test applied to values that also go negative."""
    acts = pathway(images)
    layers = {"m5": acts.pool5, "m6": acts.fc6, "m7": acts.fc7}
    return {name: (layers[name] > 0).float() for name in pathway.masks}


def most_typical(fc7: Tensor, count: int) -> list[int]:
    """Indices of the `count` images whose fc7 is closest (L2) to the class's mean fc7."""
    distances = (fc7 - fc7.mean(0, keepdim=True)).norm(dim=1)
    return torch.argsort(distances)[:count].tolist()


def typical_and_distinct(fc7: Tensor, count: int) -> list[int]:
    """The most typical image, then greedily the image of the typical half (closest half to the
    class mean) farthest in fc7 cosine from those already chosen. The plain top-`count` by
    typicality are near-duplicates (their fc7 codes overlap at IoU 0.84-0.98 on 4 of the 6
    demo classes), so further rows would repeat the first instead of testing other codes."""
    ranked = most_typical(fc7, fc7.shape[0])
    pool = ranked[: max(count, (fc7.shape[0] + 1) // 2)]
    distances = cosine_distances(fc7[pool])
    chosen = [0]
    while len(chosen) < min(count, len(pool)):
        nearest = distances[:, chosen].min(dim=1).values
        nearest[chosen] = -1.0
        chosen.append(int(nearest.argmax()))
    return [pool[i] for i in chosen]


def relative_error(estimate: Tensor, reference: Tensor) -> float:
    """||reference - estimate|| / ||reference||: the paper's error for reconstructions."""
    return float((reference - estimate).norm() / reference.norm().clamp_min(1e-12))


def error_to_others(picture: Tensor, images: Tensor, exclude: int) -> float:
    """Mean relative_error of `picture` to the class's images other than `exclude`: the control
    for the pixel error. A picture that only got calmer comes closer to every class image; one
    that found *its* image comes closer to it than to the others (pixel_m / pixel_others_m falls)."""
    others = torch.cat([images[:exclude], images[exclude + 1 :]])
    if others.shape[0] == 0:
        return float("nan")
    return float(((others - picture).flatten(1).norm(dim=1) / others.flatten(1).norm(dim=1).clamp_min(1e-12)).mean())


def code_iou(code: Tensor, reference: Tensor) -> float:
    """Intersection over union of the on-units of two binary codes (1.0 when both are empty)."""
    union = ((code + reference) > 0).float().sum()
    return float((code * reference).sum() / union) if union > 0 else 1.0


def class_layout_init(images: Tensor, exclude: int, grid: tuple[int, int]) -> Tensor | None:
    """The class's coarse colour layout without image `exclude`: the mean of the other images,
    area-averaged to the pool5 grid and upsampled bilinearly. None with no other image."""
    others = torch.cat([images[:exclude], images[exclude + 1 :]])
    if others.shape[0] == 0:
        return None
    coarse = F.interpolate(others.mean(0, keepdim=True), size=grid, mode="area")
    return F.interpolate(coarse, size=images.shape[-2:], mode="bilinear", align_corners=False)[0].clamp(0, 1)


def run(ctx: ClassContext, values: HierarchyParams | Mapping[str, Any] = HierarchyParams()) -> MethodResult:
    params: HierarchyParams = SPEC.typed(values)
    pathway = ctx.pathway
    device = pathway.mean.device
    chosen = typical_and_distinct(ctx.features.fc7, min(params.images, ctx.images.shape[0]))
    inputs = ctx.images[chosen]
    levels = levels_of(pathway)
    image_codes = codes(pathway, inputs.to(device))
    with torch.no_grad():  # each image's own score under its code: what an inversion should reach
        own_scores = {
            level: pathway(inputs.to(device), as_gates({m: image_codes[m] for m in masks})).fc8[:, ctx.class_index].cpu()
            for level, masks in levels
        }
    prior = class_database(ctx, params.prior)
    inits = [
        class_layout_init(ctx.images, index, pathway.pool5_shape[1:]) if params.init == "class_layout" else None
        for index in chosen
    ]
    settings = engine_settings(ctx, asdict(params))
    problems = [
        class_problem(
            pathway, settings, ctx.class_index,
            database=prior,
            closed=closed_weights(params.forbid, masks, ctx.features, ctx.class_index),
            init=inits[row],
            seed=ctx.seed,
            label=f"image {index} code {level}",
            gates=as_gates({name: image_codes[name][row].cpu() for name in masks}),
        )
        for row, index in enumerate(chosen)
        for level, masks in levels
    ]
    solutions = solve(pathway, problems, settings, progress=ctx.progress)
    results = torch.stack([s.image for s in solutions])
    input_fc7 = fc7_of(pathway, inputs)
    result_fc7 = fc7_of(pathway, results)
    result_codes = {name: code.cpu() for name, code in codes(pathway, results.to(device)).items()}

    pictures: list[Picture] = []
    kinds = ("pixel", "pixel_others", "fc7")
    errors: dict[str, list[float]] = {f"{kind}_{level}": [] for kind in kinds for level, _ in levels}
    score_ratios: list[float] = []
    for row, index in enumerate(chosen):
        name = ctx.image_names[index]
        pictures.append(
            Picture(
                key=f"image{row}-input",
                image=inputs[row],
                caption=f"Input: {ctx.class_name} image {name}, the most typical by fc7" if row == 0
                else f"Input: {ctx.class_name} image {name}",
                alt=f"Photograph of {ctx.class_name} whose binary code is inverted",
                meta=Step(image=index, step="input"),
            )
        )
        for step, (level, masks) in enumerate(levels):
            at = row * len(levels) + step
            solution = solutions[at]
            pixel = relative_error(solution.image, inputs[row])
            others = error_to_others(solution.image, ctx.images, index)
            feature = float(cosine_distances(torch.stack([result_fc7[at], input_fc7[row]]))[0, 1])
            score, prob = solution.numbers["score"], solution.numbers["prob"]
            ratio = score / float(own_scores[level][row]) if own_scores[level][row] > 0 else float("nan")
            errors[f"pixel_{level}"].append(pixel)
            errors[f"pixel_others_{level}"].append(others)
            errors[f"fc7_{level}"].append(feature)
            score_ratios.append(ratio)
            pictures.append(
                Picture(
                    key=f"image{row}-{level}",
                    image=solution.image,
                    caption=f"{ctx.class_name} under the {level} code of {name} ({', '.join(masks)} fixed)"
                    + (", patch prior" if prior is not None else "") + seen_under(asdict(params), settings),
                    alt=f"Visualization of {ctx.class_name} constrained by the {level} ReLU code of one image",
                    numbers={
                        "score": score, "prob": prob, "pixel_error": pixel, "fc7_error": feature,
                        "pixel_error_others": others,
                        "score_ratio": ratio,
                        # does the picture's own (unmasked) code agree with the image's? (mechanism)
                        **{f"iou_{m}": code_iou(result_codes[m][at], image_codes[m][row].cpu()) for m in pathway.masks},
                    },
                    meta=Step(image=index, step=level, diverged=solution.diverged, notes={"masks": list(masks)}),
                )
            )
    numbers: dict[str, Any] = {key: sum(v) / len(v) for key, v in errors.items()}
    finite = [r for r in score_ratios if r == r]
    numbers["lowest_score_ratio"] = min(finite) if finite else None
    numbers["images"] = chosen
    numbers["levels"] = [level for level, _ in levels]
    if not pathway.has_fc6:
        numbers["levels_note"] = no_fc6_note(pathway)
    numbers["init"] = params.init
    numbers["forbid"] = params.forbid
    numbers["pixel_metric"] = "||I0 - I|| / ||I0|| in [0, 1] RGB"
    numbers["pixel_others_metric"] = "the same error to the class's other images, averaged (control)"
    numbers["fc7_metric"] = "1 - cos(fc7(I0), fc7(I)) (unmasked net)"
    return MethodResult(method="hierarchy", params=params, seed=ctx.seed, pictures=pictures, numbers=numbers)
