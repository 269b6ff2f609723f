"""Seconds per class: one class's full method suite on the shared alexnet-slim, per method.

    python -m benchmarks.class_time [--class n01440764] [--methods all] [--iterations N]

Runs each enabled method of the shared catalog (catalogs/shared-alexnet-slim.yaml) on one class,
as a build does (the same ClassContext, the catalog's parameters), and reports per method its
wall seconds, the image-iterations the engine ran (images through a grad-enabled forward of the
pathway) and the seconds per image-iteration against the bare model's forward + backward to the
input, measured in the same run at the same batch sizes (the floor any engine pays). Only ratios
from one run mean anything on a shared machine. `--iterations` cuts every solve (quick look;
the per-step costs stay). Writes benchmarks/out/class_time.json. Needs ../shared.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from benchmarks.common import REPO, bare_rate, parse_overrides, print_table, require_shared, write_json
from generator.catalog import Catalog, load_catalog
from generator.engine.meter import IterationCounter
from generator.methods import ClassContext, method_module

CATALOG = REPO / "catalogs" / "shared-alexnet-slim.yaml"


def load_shared_catalog(path: str | None = None) -> Catalog:
    require_shared()
    return load_catalog(REPO / path if path else CATALOG, {"device": "cpu"})


def class_context(catalog: Catalog, wnid: str) -> ClassContext:
    """What a build hands every method of class `wnid` (its images, features, prior section)."""
    from generator.images import class_images
    from generator.nets.features import extract
    from generator.nets.models import load_pathway

    entry = next(e for e in catalog.classes if e.id == wnid)
    pathway = load_pathway(catalog.model, "cpu")
    loaded = class_images(catalog.images, entry.id, catalog.images.per_class, catalog.seed, pathway.input_size)
    features = extract(pathway, loaded.images, progress=False)
    return ClassContext(pathway=pathway, class_index=entry.index, class_id=entry.id, class_name=entry.name,
                        images=loaded.images, image_names=list(loaded.names), features=features,
                        engine=dict(catalog.engine), seed=catalog.seed, prior=catalog.prior)


def method_params(catalog: Catalog, ctx: ClassContext, name: str, iterations: int | None) -> dict[str, Any]:
    params = {k: v for k, v in catalog.methods[name].items() if k != "enabled"}
    if iterations is not None:
        ctx.engine = {**catalog.engine, "iterations": iterations}
        if params.get("iterations") is not None:
            params["iterations"] = iterations
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--class", dest="wnid", default="n01440764")
    parser.add_argument("--catalog", default=None, help="a catalog path relative to the repository "
                        "(default catalogs/shared-alexnet-slim.yaml)")
    parser.add_argument("--methods", default="all", help="comma list, or all the catalog enables")
    parser.add_argument("--iterations", type=int, default=None, help="cut every solve to N steps (quick look)")
    parser.add_argument("--engine", default="", help="engine settings over the catalog's, e.g. "
                        "coarse_size=112,coarse_until=0.6")
    args = parser.parse_args()
    catalog = load_shared_catalog(args.catalog)
    catalog.engine.update(parse_overrides(args.engine))
    start = time.perf_counter()
    ctx = class_context(catalog, args.wnid)
    setup = time.perf_counter() - start
    names = [n for n, p in catalog.methods.items() if p.get("enabled", True)] if args.methods == "all" \
        else args.methods.split(",")
    rows: list[dict[str, Any]] = []
    for name in names:
        params = method_params(catalog, ctx, name, args.iterations)
        counter = IterationCounter(ctx.pathway)
        start = time.perf_counter()
        method_module(name).run(ctx, params)
        seconds = time.perf_counter() - start
        counter.close()
        # the floor for this method: its batch sizes, same machine, right after it
        floor = sum(size * steps / bare_rate(ctx.pathway, size, min(steps, 5))
                    for size, steps in counter.batches.items())
        rows.append({"method": name, "seconds": seconds, "image_its": counter.images, "bare_s": floor,
                     "ms_per_image_it": 1000 * seconds / max(counter.images, 1),
                     "vs_bare": seconds / floor if floor else float("nan")})
        print_table(rows[-1:], list(rows[-1]))
    seconds, image_its, bare = (sum(float(r[c]) for r in rows) for c in ("seconds", "image_its", "bare_s"))
    total: dict[str, Any] = {"method": "TOTAL", "seconds": seconds, "image_its": int(image_its), "bare_s": bare,
                             "ms_per_image_it": 1000 * seconds / max(image_its, 1),
                             "vs_bare": seconds / bare if bare else float("nan")}
    print(f"\nclass {args.wnid}, {torch.get_num_threads()} threads, setup (images + features) {setup:.1f} s"
          + (f", every solve cut to {args.iterations} steps" if args.iterations else ""))
    print_table(rows + [total], list(total))
    path = write_json("class_time", {"class": args.wnid, "threads": torch.get_num_threads(), "setup_s": setup,
                                     "iterations": args.iterations, "methods": rows, "total": total})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
