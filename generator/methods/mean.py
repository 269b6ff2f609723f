"""The class's mean image: what every photo of the class shares at the pixel level (a centred
object, a sky band, a dominant colour), beside the mean of the photos the network scores highest.
Its probability says whether the network reads that average as the class; a class whose mean
is still the class is one the network knows by layout and colour."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from generator.methods import ClassContext, MeanParams, MethodResult, Picture, spec
from generator.records import Meta, refs

SPEC = spec("mean")
VERSION = SPEC.version
DEFAULTS: dict[str, Any] = SPEC.defaults()


@torch.no_grad()
def run(ctx: ClassContext, values: MeanParams | Mapping[str, Any] = MeanParams()) -> MethodResult:
    params: MeanParams = SPEC.typed(values)
    scores = ctx.features.fc8[:, ctx.class_index].float()
    top = torch.argsort(scores, descending=True)[: params.top]
    means = {"all": ctx.images.mean(0), "top": ctx.images[top].mean(0)}
    device = ctx.pathway.mean.device
    logits = ctx.pathway(torch.stack(list(means.values())).to(device)).fc8.float().cpu()
    probs = logits.softmax(1)[:, ctx.class_index]
    pictures = []
    for (key, image), prob, score in zip(means.items(), probs.tolist(), logits[:, ctx.class_index].tolist()):
        which = f"all {len(ctx.images)}" if key == "all" else f"the {len(top)} highest-scoring"
        pictures.append(Picture(
            key=key, image=image.clamp(0, 1),
            caption=f"Pixel mean of {which} class images of {ctx.class_name}; p = {prob:.2f}",
            alt=f"Blurry average of {which} photos of {ctx.class_name}",
            numbers={"prob": prob, "score": score},
            meta=Meta(exemplars=refs(top.tolist(), score=scores[top].tolist()) if key == "top" else ()),
        ))
    numbers = {"all_prob": pictures[0].numbers["prob"], "top_prob": pictures[1].numbers["prob"],
               "photo_prob": float(ctx.features.fc8.float().softmax(1)[:, ctx.class_index].mean())}
    return MethodResult(method="mean", params=params, seed=ctx.seed, pictures=pictures, numbers=numbers)
