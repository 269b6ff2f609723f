"""Do vision transformers need engine defaults of their own? The patch grid's trace in class
visualizations of a random-init ViT under the CNN defaults, weaker and stronger transforms.

    python -m benchmarks.studies.vit_engine [--iterations 64] [--classes 4] [--seeds 2]

A ViT cuts the image into patches with a strided conv (kernel = stride = patch), so the gradient
an image gets is discontinuous at the patch borders, and a picture optimized through it picks up
the grid (the checkerboards MACO and Lucent's ViT work report). `grid_excess` measures it: the
share of the picture's spectral power (mean removed) at the grid's frequencies (any row or
column frequency a non-zero multiple of size / patch), over the share those frequencies hold in
the spectrum (1.0: no more than their share). Random init can say whether the grid shows and
whether a setting removes it; not which pictures a trained ViT makes readable. Profiles:
  - jitter-only: raw pixels, jitter 4 (the paper's engine: nothing hides the grid)
  - defaults:    the CNN defaults (Fourier, pad 8, scale 0.05, jitter 4, rotate 10)
  - stronger:    the defaults with jitter = patch size, scale 0.1, rotate 15
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

SIZE, PATCH = 64, 8
PROFILES: dict[str, dict[str, Any]] = {
    "jitter-only": dict(RAW_PIXELS),
    "defaults": {},
    "stronger": {"jitter": PATCH, "scale": 0.1, "rotate": 15.0},
}


def vit(seed: int = 0):  # type: ignore[no-untyped-def]
    """A random ViT: 64 px, 8 px patches (an 8x8 grid), width 64, 4 blocks, 10 classes, random head."""
    from torchvision.models import VisionTransformer

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = VisionTransformer(image_size=SIZE, patch_size=PATCH, num_layers=4, num_heads=4, hidden_dim=64,
                                mlp_dim=128, num_classes=10)
        torch.nn.init.normal_(net.heads.head.weight, std=0.2)
    return pathway_for(net, (0.5,) * 3, (0.5,) * 3, SIZE)


def grid_excess(images: Tensor, patch: int = PATCH) -> list[float]:
    """Per image: (share of non-DC power at the patch grid's frequencies) / (their share of frequencies)."""
    size = images.shape[-1]
    power = torch.fft.fft2(images - images.mean((-2, -1), keepdim=True)).abs().pow(2).sum(1)  # (B, S, S)
    freq = torch.arange(size)
    on_grid = (freq % (size // patch) == 0) & (freq != 0)
    grid = on_grid[:, None] | on_grid[None, :]
    grid[0, 0] = False
    share = grid.float().sum() / (size * size - 1)
    return (power[:, grid].sum(1) / power.sum((1, 2)).clamp_min(1e-12) / share).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=64)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pathway = vit()
    rows = []
    for name, profile in PROFILES.items():
        settings = settings_from(None, iterations=args.iterations, **profile)
        problems = [class_problem(pathway, settings, c, seed=s) for c in range(args.classes) for s in range(args.seeds)]
        solutions = solve(pathway, problems, settings, progress=False)
        images = torch.stack([s.image for s in solutions])
        excess = grid_excess(images)
        with torch.no_grad():
            scores = pathway(images).fc8
        own = [float(scores[i, c]) for i, (c, _) in enumerate((c, s) for c in range(args.classes) for s in range(args.seeds))]
        rows.append({"profile": name, "grid_excess": statistics.mean(excess), "grid_excess_max": max(excess),
                     "class_score": statistics.mean(own), "pictures": len(images)})
    noise = grid_excess(torch.rand(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)))
    print(f"random-init ViT {SIZE} px, {PATCH} px patches, {args.iterations} steps, {args.classes} classes x "
          f"{args.seeds} seeds; white noise scores {statistics.mean(noise):.2f}")
    print_table(rows, ["profile", "grid_excess", "grid_excess_max", "class_score", "pictures"])
    path = write_json("vit_engine", {"size": SIZE, "patch": PATCH, "iterations": args.iterations, "rows": rows,
                                     "noise_grid_excess": statistics.mean(noise)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
