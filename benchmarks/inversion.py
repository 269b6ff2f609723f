"""Table 1 of the paper: pool5 inversion of 100 images of 100 different ImageNet classes.

    python -m benchmarks.inversion            # the full protocol (100 images; CPU heavy)
    python -m benchmarks.inversion --quick    # 10 images, 60 iterations, for iterating

Protocol: the shared alexnet-slim; targets are ../shared/data/imagenet-samples (one image per
class, sorted by file name); the [7] retrieval database pairs pool5 1x1 features with the
67x67 centre patches of their 195x195 supports in the first `--per-class` images of each of the
ten Imagenette train classes (any database image that duplicates a target is dropped). Each
target is inverted as [8]+rand, [8]+[7] and ours with IDENTICAL engine settings
(`generator.methods.inversion.INVERSION_SETTINGS`, overridable below); ours differs from
[8]+[7] only by the patch prior. Prints mean +- std of the image error ||I0 - I|| / ||I0|| and
the feature error ||phi(I) - phi0|| / ||phi0|| per variant; writes benchmarks/out/inversion.json
and a contact sheet benchmarks/out/inversion.png (rows: original, [7] average, [8]+rand,
[8]+[7], ours).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from benchmarks.common import (
    IMAGENETTE,
    OUT,
    class_images,
    contact_sheet,
    load_image,
    print_table,
    require_shared,
    shared_pathway,
    write_json,
)
from generator.methods.inversion import INVERSION_SETTINGS, VARIANTS, inversion_settings, invert_pool5, summarize
from generator.methods.retrieval import Pool5Retrieval

NAMES = {"retrieved": "[7] average", "rand": "[8]+rand", "avg": "[8]+[7]", "prior": "ours"}


def drop_duplicates(database: torch.Tensor, targets: torch.Tensor, tolerance: float = 0.02) -> torch.Tensor:
    """Database images that are not (near-)copies of a target, compared on 32 px thumbnails:
    the samples and Imagenette both come from ImageNet, and a copy would make retrieval trivial."""
    small_db = F.interpolate(database, size=32, mode="area").flatten(1)
    small_targets = F.interpolate(targets, size=32, mode="area").flatten(1)
    closest = torch.cdist(small_db, small_targets).min(1).values / small_db.shape[1] ** 0.5
    return database[closest > tolerance]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 images, 60 iterations")
    parser.add_argument("--images", type=int, default=None, help="how many targets (default 100, quick 10)")
    parser.add_argument("--per-class", type=int, default=100, help="database images per Imagenette class")
    parser.add_argument("--batch", type=int, default=8, help="targets per solve call (x3 problems)")
    parser.add_argument("--whiten", action="store_true", help="match patches in a ZCA-whitened space")
    parser.add_argument("--normalize-features", action="store_true", help="L2-normalize pool5 for retrieval")
    parser.add_argument("--threads", type=int, default=2)
    for name, value in INVERSION_SETTINGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    count = args.images or (10 if args.quick else 100)
    overrides = {k: getattr(args, k) for k in INVERSION_SETTINGS if getattr(args, k) is not None}
    if args.quick and "iterations" not in overrides:
        overrides["iterations"] = 60
    settings = inversion_settings(None, overrides)

    shared = require_shared()
    start = time.time()
    pathway = shared_pathway()
    files = sorted((shared / "data" / "imagenet-samples").glob("*.JPEG"))[:count]
    targets = torch.stack([load_image(f) for f in files])
    database = drop_duplicates(torch.cat([class_images(w, args.per_class) for w in IMAGENETTE]), targets)
    retrieval = Pool5Retrieval.from_images(pathway, database, progress=False, normalize_features=args.normalize_features)
    print(f"{count} targets; database {len(database)} images = {retrieval.size} pool5 pairs "
          f"({time.time() - start:.0f}s); settings {settings}")

    variants = ("retrieved", *VARIANTS)
    results: dict[str, list] = {v: [] for v in variants}
    for first in range(0, count, args.batch):
        chunk = invert_pool5(pathway, targets[first : first + args.batch], retrieval, settings,
                             variants=variants, seed=first, whiten=args.whiten, progress=True)
        for variant in variants:
            results[variant].extend(chunk[variant])
        done = {NAMES[v]: round(summarize({v: results[v]})[f"image_error_{v}"], 4) for v in variants}
        print(f"{first + len(chunk['rand'])}/{count} images, {time.time() - start:.0f}s, mean image error {done}")

    numbers = summarize(results)
    rows = [
        {"variant": NAMES[v],
         "image error": f"{numbers[f'image_error_{v}']:.4f} +- {numbers[f'image_error_{v}_std']:.4f}",
         "feature error": f"{numbers[f'feature_error_{v}']:.4f} +- {numbers[f'feature_error_{v}_std']:.4f}"}
        for v in variants
    ]
    print_table(rows, ["variant", "image error", "feature error"])
    gain = 1 - numbers["image_error_prior"] / numbers["image_error_rand"]
    print(f"ours vs [8]+rand: {100 * gain:.1f}% lower image error; "
          f"ours vs [8]+[7]: {100 * (1 - numbers['image_error_prior'] / numbers['image_error_avg']):.1f}% lower")

    shown = min(8, count)
    contact_sheet(
        [[targets[i] for i in range(shown)]] + [[results[v][i][0] for i in range(shown)] for v in variants],
        OUT / "inversion.png",
        labels=["original"] + [NAMES[v] for v in variants],
    )
    per_image = [
        {"file": files[i].name, **{f"{key}_{v}": results[v][i][col] for v in variants
                                   for key, col in (("image_error", 1), ("feature_error", 2))}}
        for i in range(count)
    ]
    path = write_json("inversion", {
        "images": count, "database_images": len(database), "database_pairs": retrieval.size,
        "per_class": args.per_class, "whiten": args.whiten, "normalize_features": args.normalize_features,
        "settings": {k: getattr(settings, k) for k in INVERSION_SETTINGS},
        "numbers": numbers, "gain_vs_rand": gain, "per_image": per_image, "seconds": time.time() - start,
    })
    print(f"wrote {path} and {OUT / 'inversion.png'}")


if __name__ == "__main__":
    main()
