"""Do vision transformers need engine defaults of their own? The patch grid's trace in class
visualizations of a random-init ViT under the CNN defaults, weaker and stronger transforms.

    python -m benchmarks.studies.vit_engine [--size 64] [--patch 8] [--iterations 64] [--classes 4] [--seeds 2]

A ViT cuts the image into patches with a strided conv (kernel = stride = patch), so the gradient
an image gets is discontinuous at the patch borders, and a picture optimized through it picks up
the grid (the checkerboards MACO and Lucent's ViT work report). `grid_excess` measures it: the
picture's power at the grid's frequencies (non-zero multiples of size / patch, along either
axis) over the power at their neighbouring frequencies (1.0: no spike at the grid; white noise
scores about 1). Random init can say whether the grid shows and
whether a setting removes it; not which pictures a trained ViT makes readable. Profiles:
  - jitter-only: raw pixels, jitter 4 (the paper's engine: nothing hides the grid)
  - defaults:    the CNN defaults (Fourier, pad 8, scale 0.05, jitter 4, rotate 10)
  - stronger:    the defaults with jitter = the patch size, scale 0.1, rotate 15
Writes benchmarks/out/vit_engine.json.
"""
from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch
from torch import Tensor

from benchmarks.common import print_table, write_json
from generator.engine.settings import RAW_PIXELS, settings_from
from generator.engine.solve import solve
from generator.methods.common import class_problem
from generator.nets.transformers import pathway_for


def profiles(patch: int) -> dict[str, dict[str, Any]]:
    return {"jitter-only": dict(RAW_PIXELS), "defaults": {}, "stronger": {"jitter": patch, "scale": 0.1, "rotate": 15.0}}


def vit(size: int, patch: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """A random ViT: width 64, 4 blocks, 10 classes, a random head."""
    from torchvision.models import VisionTransformer

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = VisionTransformer(image_size=size, patch_size=patch, num_layers=4, num_heads=4, hidden_dim=64,
                                mlp_dim=128, num_classes=10)
        torch.nn.init.normal_(net.heads.head.weight, std=0.2)
    return pathway_for(net, (0.5,) * 3, (0.5,) * 3, size)


def grid_excess(images: Tensor, patch: int) -> list[float]:
    """Per image: how far the spectrum spikes at the patch grid's frequencies. The power summed
    along each axis gives a profile over frequency; at every non-zero multiple of size / patch it
    is divided by the mean of its two neighbours, and the ratios are averaged (1.0: no spike; the
    neighbours cancel the spectrum's own slope, which the parameterization shapes)."""
    size = images.shape[-1]
    power = torch.fft.fft2(images - images.mean((-2, -1), keepdim=True)).abs().pow(2).sum(1)  # (B, S, S)
    profile = power.sum(1) + power.sum(2)  # (B, S): by column frequency plus by row frequency
    grid = [f for f in range(size // patch, size, size // patch)]
    ratios = [profile[:, f] / ((profile[:, f - 1] + profile[:, (f + 1) % size]) / 2).clamp_min(1e-12) for f in grid]
    return torch.stack(ratios, 1).mean(1).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=64)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pathway = vit(args.size, args.patch)
    rows = []
    for name, profile in profiles(args.patch).items():
        settings = settings_from(None, iterations=args.iterations, **profile)
        problems = [class_problem(pathway, settings, c, seed=s) for c in range(args.classes) for s in range(args.seeds)]
        solutions = solve(pathway, problems, settings, progress=False)
        images = torch.stack([s.image for s in solutions])
        excess = grid_excess(images, args.patch)
        with torch.no_grad():
            scores = pathway(images).fc8
        own = [float(scores[i, c]) for i, (c, _) in enumerate((c, s) for c in range(args.classes) for s in range(args.seeds))]
        rows.append({"profile": name, "grid_excess": statistics.mean(excess), "grid_excess_max": max(excess),
                     "class_score": statistics.mean(own), "pictures": len(images)})
    noise = grid_excess(torch.rand(8, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)), args.patch)
    print(f"random-init ViT {args.size} px, {args.patch} px patches, {args.iterations} steps, {args.classes} classes x "
          f"{args.seeds} seeds; white noise scores {statistics.mean(noise):.2f}")
    print_table(rows, ["profile", "grid_excess", "grid_excess_max", "class_score", "pictures"])
    path = write_json("vit_engine", {"size": args.size, "patch": args.patch, "iterations": args.iterations, "rows": rows,
                                     "noise_grid_excess": statistics.mean(noise)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
