"""Which pixels carry the class score: occlusion sensitivity (Zeiler & Fergus) and Grad-CAM
(Selvaraju et al.) at pool5, the last feature map, on the class images the net scores highest.

Occlusion: a square of the model's mean colour slides over the image; each pixel's value is the
mean drop of the class score (fc8, pre-softmax) over the placements that cover it. Grad-CAM:
the ReLU of pool5's channels weighted by the spatial mean of d score / d pool5, bilinearly
upsampled to the input. An FC-headed net has no global pooling, so CAM proper does not apply;
Grad-CAM's weights stand in for it. The two maps are compared by Spearman rank correlation
(on a 28 x 28 grid) and by the overlap (IoU) of their top-`top` pixels.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import Tensor

from generator.methods import ClassContext, MethodResult, Picture, SaliencyParams, spec
from generator.nets.pathway import Pathway
from generator.records import Step

SPEC = spec("saliency")
VERSION = SPEC.version
DEFAULTS: dict[str, Any] = SPEC.defaults()

# a perceptually ordered ramp (dark blue -> purple -> orange -> light yellow) for the overlays
RAMP = torch.tensor([[0.05, 0.03, 0.30], [0.45, 0.10, 0.55], [0.85, 0.30, 0.30], [0.98, 0.65, 0.15],
                     [0.99, 0.99, 0.75]])


@torch.no_grad()
def occlusion_map(pathway: Pathway, image: Tensor, class_index: int, patch: int, stride: int,
                  batch: int = 64) -> Tensor:
    """(S, S): the mean drop of fc8[class_index] over the occluder placements covering each pixel
    (placements every `stride` pixels, the last one flush with the far edge)."""
    size = image.shape[-1]
    patch = max(1, min(patch, size))
    starts = list(range(0, size - patch + 1, max(1, stride)))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    device = pathway.mean.device
    image = image.to(device).float()
    fill = pathway.mean.view(3, 1, 1)
    base = float(pathway(image.unsqueeze(0)).fc8[0, class_index])
    places = [(top, left) for top in starts for left in starts]
    drops = []
    for first in range(0, len(places), batch):
        chunk = places[first : first + batch]
        occluded = image.unsqueeze(0).repeat(len(chunk), 1, 1, 1)
        for n, (top, left) in enumerate(chunk):
            occluded[n, :, top : top + patch, left : left + patch] = fill
        drops.append(base - pathway(occluded).fc8[:, class_index])
    drop = torch.cat(drops).cpu()
    total, count = torch.zeros(size, size), torch.zeros(size, size)
    for value, (top, left) in zip(drop, places):
        total[top : top + patch, left : left + patch] += value
        count[top : top + patch, left : left + patch] += 1
    return total / count.clamp_min(1)


def grad_cam(pathway: Pathway, image: Tensor, class_index: int) -> Tensor:
    """(S, S) Grad-CAM at pool5, >= 0: relu(sum_c mean_hw(d fc8[class] / d A_c) * A_c),
    upsampled bilinearly to the input size."""
    device = pathway.mean.device
    size = image.shape[-1]
    with torch.no_grad():
        maps, context = pathway.stem(image.to(device).float().unsqueeze(0))
    maps = maps.detach().requires_grad_(True)
    score = pathway.head(maps, None, context).fc8[0, class_index]
    (grads,) = torch.autograd.grad(score, maps)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * maps).sum(1, keepdim=True)).detach()
    return F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)[0, 0].cpu()


def overlay(image: Tensor, heat: Tensor, opacity: float = 0.55) -> Tensor:
    """The image under the heat map (scaled to its own [min, max]) in RAMP's colours."""
    span = (heat.max() - heat.min()).clamp_min(1e-12)
    level = ((heat - heat.min()) / span).clamp(0, 1) * (len(RAMP) - 1)
    low = level.floor().long().clamp(max=len(RAMP) - 2)
    frac = (level - low).unsqueeze(-1)
    colours = (RAMP[low] * (1 - frac) + RAMP[low + 1] * frac).permute(2, 0, 1)
    return ((1 - opacity) * image.float().cpu() + opacity * colours).clamp(0, 1)


def rank_correlation(a: Tensor, b: Tensor, grid: int = 28) -> float:
    """Spearman correlation of two maps, each averaged down to grid x grid cells."""
    small = [F.adaptive_avg_pool2d(m.float()[None, None], grid).flatten().numpy() for m in (a, b)]
    if small[0].std() == 0 or small[1].std() == 0:
        return float("nan")  # a flat map has no ranking
    return float(spearmanr(small[0], small[1]).statistic)


def top_overlap(a: Tensor, b: Tensor, fraction: float) -> float:
    """IoU of the two maps' top-`fraction` pixels."""
    count = max(1, int(round(fraction * a.numel())))
    top = [torch.zeros(m.numel(), dtype=torch.bool).index_fill_(0, m.flatten().topk(count).indices, True) for m in (a, b)]
    return float((top[0] & top[1]).sum() / (top[0] | top[1]).sum().clamp_min(1))


def mass_inside(heat: Tensor, box: tuple[int, int, int, int]) -> float:
    """Share of the map's positive mass inside box (x, y, w, h) in pixels."""
    x, y, w, h = box
    positive = heat.clamp_min(0)
    return float(positive[y : y + h, x : x + w].sum() / positive.sum().clamp_min(1e-12))


def maps_for(pathway: Pathway, image: Tensor, class_index: int, patch: float, stride: float) -> dict[str, Tensor]:
    """Both maps of one image; patch and stride are fractions of the input side."""
    size = image.shape[-1]
    return {"occlusion": occlusion_map(pathway, image, class_index, max(1, round(patch * size)),
                                       max(1, round(stride * size))),
            "gradcam": grad_cam(pathway, image, class_index)}


def _finite_mean(values: list[float]) -> float:
    kept = [v for v in values if math.isfinite(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def run(ctx: ClassContext, values: SaliencyParams | Mapping[str, Any] = SaliencyParams()) -> MethodResult:
    params: SaliencyParams = SPEC.typed(values)
    scores = ctx.features.fc8[:, ctx.class_index]
    chosen = torch.argsort(scores, descending=True)[: params.images].tolist()
    pictures, agreement, overlaps = [], [], []
    for i in chosen:
        image = ctx.images[i]
        maps = maps_for(ctx.pathway, image, ctx.class_index, params.patch, params.stride)
        rho = rank_correlation(maps["occlusion"], maps["gradcam"])
        iou = top_overlap(maps["occlusion"], maps["gradcam"], params.top)
        agreement.append(rho)
        overlaps.append(iou)
        pictures.append(Picture(key=f"img{i}-original", image=image,
                                caption=f"{ctx.class_name} image {i}, class score {float(scores[i]):.3g}",
                                alt=f"Class image {i} of {ctx.class_name}", meta=Step(image=i, step="original")))
        words = {"occlusion": "score drop when a grey square covers each region",
                 "gradcam": "Grad-CAM at pool5"}
        for name, heat in maps.items():
            pictures.append(Picture(
                key=f"img{i}-{name}", image=overlay(image, heat),
                caption=f"{ctx.class_name} image {i}: {words[name]} (bright: more evidence for the class); "
                f"agreement with the other map: rank correlation {rho:.2f}, top-{params.top:.0%} IoU {iou:.2f}",
                alt=f"Heat map over a {ctx.class_name} image showing where the {words[name]} is largest",
                numbers={"rank_correlation": rho, "top_iou": iou, "peak": float(heat.max())},
                meta=Step(image=i, step=name),
            ))
    numbers = {"images": chosen, "rank_correlation": _finite_mean(agreement), "top_iou": _finite_mean(overlaps)}
    return MethodResult(method="saliency", params=params, seed=ctx.seed, pictures=pictures, numbers=numbers)
