"""Speed of one class's method suite on a vision transformer beside a CNN, on this CPU.

    python -m benchmarks.vit_speed [--models vit_b_16,mobilenet_v2] [--iterations 3] [--images 8]

For each model (torchvision, random init at 224 px: speed does not depend on the weights), one
class of smooth random images goes through every method of the atlas with small parameters and
every solve cut to `--iterations` steps, on 1 thread. Per model: the suite's wall seconds, the
image-iterations its solves ran (images through a grad-enabled forward of the pathway), their
rate, and the rate of the bare model's forward + backward to the input at the same batch sizes
(the floor any engine pays), measured right after in the same run. The suite's seconds also hold
what is not an image-iteration (features, NMF, occlusion's forwards, t-SNE), so `vs_bare` is the
whole suite's cost per image-iteration over the floor's. Writes benchmarks/out/vit_speed.json.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from torch import nn

from benchmarks.class_time import IterationCounter
from benchmarks.common import bare_rate, print_table, write_json
from generator.catalog import ModelSpec
from generator.methods import METHOD_NAMES, ClassContext, PriorParams, method_module
from generator.nets.models import load_pathway
from generator.nets.pathway import Pathway

# every method, with the sizes of a quick class (the solves' steps come from --iterations)
SUITE: dict[str, dict[str, Any]] = {
    "classviz": {}, "location": {}, "topics": {"k": 2, "retrieved": 2}, "ensemble": {"masks": 2, "inits": 1},
    "hierarchy": {"images": 1}, "inversion": {"images": 1, "database_images": 4, "k": 2},
    "preimages": {}, "caricatures": {}, "neighbours": {"queries": 1, "topics": 2}, "fc7map": {"topics": 2, "perplexity": 2.0},
    "saliency": {"images": 1}, "mean": {"top": 4},
}
OWN_ITERATIONS = ("inversion", "preimages", "caricatures")  # methods with an `iterations` parameter of their own


def class_context(pathway: Pathway, images: int, iterations: int) -> ClassContext:
    """A class of smooth random images (upsampled noise) with its features, as a build hands it over."""
    size = pathway.input_size
    coarse = torch.rand(images, 3, size // 16, size // 16, generator=torch.Generator().manual_seed(0))
    pictures = nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    with torch.no_grad():
        features = pathway(pictures)
    return ClassContext(pathway=pathway, class_index=1, class_id="c1", class_name="thing", images=pictures,
                        image_names=[f"{i}.png" for i in range(images)], features=features,
                        engine={"iterations": iterations}, seed=0, progress=False,
                        prior=PriorParams(images=images, max_patches=2000))


def suite(name: str, images: int, iterations: int) -> dict[str, Any]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        pathway = load_pathway(ModelSpec(name))
    start = time.perf_counter()
    ctx = class_context(pathway, images, iterations)
    setup = time.perf_counter() - start
    counter = IterationCounter(pathway)
    start = time.perf_counter()
    for method in METHOD_NAMES:
        params = {**SUITE.get(method, {}), **({"iterations": iterations} if method in OWN_ITERATIONS else {})}
        method_module(method).run(ctx, params)
    seconds = time.perf_counter() - start
    counter.close()
    floor = sum(size * steps / bare_rate(pathway, size, 1) for size, steps in counter.batches.items())
    return {"model": name, "pool5": "x".join(map(str, pathway.pool5_shape)), "setup_s": setup, "suite_s": seconds,
            "image_its": counter.images, "image_it_per_s": counter.images / seconds,
            "bare_image_it_per_s": counter.images / floor, "vs_bare": seconds / floor,
            "batches": dict(counter.batches)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="vit_b_16,mobilenet_v2")
    parser.add_argument("--iterations", type=int, default=3, help="steps of every solve")
    parser.add_argument("--images", type=int, default=8, help="images of the class")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [suite(name, args.images, args.iterations) for name in args.models.split(",")]
    print(f"one class of {args.images} images, every method, {args.iterations} steps a solve, "
          f"{torch.get_num_threads()} thread, 224 px, random init")
    print_table(rows, ["model", "pool5", "setup_s", "suite_s", "image_its", "image_it_per_s", "bare_image_it_per_s", "vs_bare"])
    path = write_json("vit_speed", {"images": args.images, "iterations": args.iterations, "threads": 1, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
