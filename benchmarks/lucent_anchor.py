"""The anchor to beat: Lucent's `render_vis` on the shared mobilenet-v2, read by the judge.

    python -m benchmarks.lucent_anchor [--steps 200] [--size 224] [--classes 10] [--seed 0]
                                       [--json PATH] [--sheet PATH]

For each of the 10 Imagenette classes, maximize the class's pre-softmax logit (Lucent's
`objectives.channel` on `classifier_1`, the Linear of torchvision's mobilenet_v2 classifier,
i.e. what Lucent's "labels" layer resolves to) with two Lucent recipes:
- lucent: its defaults, `param.image(size)` (decorrelated colour, Fourier basis) with
  `transform.standard_transforms` (pad 12, jitter 8, scale 0.9-1.1, rotate -10..10, jitter 4),
  Adam lr 0.05;
- pixels: plain pixels (`fft=False, decorrelate=False`) with `transform.jitter(8)` only.
Lucent normalizes by ImageNet's mean/std itself. The judge (benchmarks/judge.py) reads each
picture as transfer.py does: top-1 among the 10 classes, top-5 among the 1000. The table also
gives the mobilenet's own softmax probability of the class. Seeds: torch and numpy (Lucent's
transforms draw from numpy's global RNG) are seeded per variant.

Needs the `anchor` extra (torch-lucent and its kornia<=0.4.1; the judge's ai-edge-litert) and
../shared (the model, the judge).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from benchmarks import judge as judge_module
from benchmarks.common import IMAGENETTE, IMAGENETTE_NAMES, OUT, SHARED, contact_sheet, print_table

WEIGHTS = SHARED / "models" / "mobilenet-v2-imagenet.pt"
LOGITS = "classifier_1"  # Lucent's name of mobilenet_v2's classifier[1] (the Linear): pre-softmax logits


def lucent_missing() -> str | None:
    """None when Lucent imports here, else how to install it."""
    try:
        import lucent.optvis.render  # noqa: F401
    except ImportError as error:
        return f"Lucent does not import ({error}): pip install -e '.[anchor]'"
    return None


def load_model() -> torch.nn.Module:
    model = torchvision.models.mobilenet_v2(num_classes=1000)
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval().requires_grad_(False)


def recipe(name: str, size: int, batch: int) -> tuple[Any, list]:
    """(param_f, transforms) of a variant."""
    from lucent.optvis import param, transform

    if name == "lucent":
        return (lambda: param.image(size, batch=batch)), list(transform.standard_transforms)
    return (lambda: param.image(size, batch=batch, fft=False, decorrelate=False)), [transform.jitter(8)]


def render(model: torch.nn.Module, variant: str, indices: list[int], steps: int, size: int, seed: int) -> torch.Tensor:
    """One picture per class index, optimized together (one batch; each picture's loss is its own
    logit, so only the transforms' random draws are shared): (B, 3, size, size) in [0, 1]."""
    from lucent.optvis import objectives
    from lucent.optvis import render as lucent_render

    torch.manual_seed(seed)
    np.random.seed(seed)
    objective = sum(objectives.channel(LOGITS, index, batch=b) for b, index in enumerate(indices))
    param_f, transforms = recipe(variant, size, len(indices))
    images = lucent_render.render_vis(model, objective, param_f, transforms=transforms, thresholds=(steps,),
                                      show_image=False, progress=False)
    return torch.from_numpy(images[-1]).permute(0, 3, 1, 2).float()


@torch.no_grad()
def own_probability(model: torch.nn.Module, pictures: torch.Tensor, indices: list[int]) -> list[float]:
    """The mobilenet's softmax probability of each picture's class (at 224 px, ImageNet-normalized)."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = torch.nn.functional.interpolate(pictures, size=224, mode="bilinear", align_corners=False)
    probs = model((x - mean) / std).softmax(1)
    return [float(probs[b, i]) for b, i in enumerate(indices)]


def measure(steps: int, size: int, n_classes: int, seed: int, sheet: Path) -> dict[str, Any]:
    model = load_model()
    judge = judge_module.Judge.load()
    index = judge_module.wnid_indices()
    wnids, names = list(IMAGENETTE[:n_classes]), list(IMAGENETTE_NAMES[:n_classes])
    indices = [index[w] for w in wnids]
    ten = [index[w] for w in IMAGENETTE]
    rows, pictures = [], {}
    for variant in ("lucent", "pixels"):
        start = time.perf_counter()
        pictures[variant] = render(model, variant, indices, steps, size, seed)
        seconds = time.perf_counter() - start
        reading = judge.read(list(pictures[variant]))
        truth = np.array(indices)
        top1, top5 = reading.top1_among(ten) == truth, (reading.top(5) == truth[:, None]).any(1)
        own = own_probability(model, pictures[variant], indices)
        rows.append({
            "variant": variant, "n": len(indices), "top1_among_10": float(top1.mean()),
            "top5_among_1000": float(top5.mean()), "own_prob": float(np.mean(own)), "seconds": round(seconds, 1),
            "per_class": [{"wnid": w, "name": n, "judge_top1_among_10": bool(a), "judge_top5": bool(b), "own_prob": p}
                          for w, n, a, b, p in zip(wnids, names, top1, top5, own)],
        })
    contact_sheet([list(pictures[v]) for v in pictures], sheet, labels=list(pictures), cell=160)
    return {"model": "mobilenet-v2-imagenet.pt (torchvision mobilenet_v2)", "objective": f"pre-softmax logit ({LOGITS})",
            "steps": steps, "size": size, "seed": seed, "classes": wnids, "sheet": str(sheet), "rows": rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=10, help="the first N Imagenette classes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--sheet", type=Path, default=OUT / "lucent_anchor.png", help="contact sheet (rows: variants)")
    args = parser.parse_args(argv)
    why = judge_module.available() or lucent_missing()
    if why or not WEIGHTS.is_file():
        raise SystemExit(f"error: {why or f'{WEIGHTS} not found (set ATLAS_SHARED)'}")
    result = measure(args.steps, args.size, args.classes, args.seed, args.sheet)
    print(f"Lucent render_vis on {result['model']}, {result['objective']}, {args.steps} steps, {args.size} px, "
          f"seed {args.seed}; the judge's reading:")
    print_table(result["rows"], ["variant", "n", "top1_among_10", "top5_among_1000", "own_prob", "seconds"])
    print(f"contact sheet: {args.sheet}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
