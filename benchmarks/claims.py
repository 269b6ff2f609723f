"""Measure the paper's intra-class claims (Sec. 4.1-4.4) and print them as a table.

    python -m benchmarks.claims --demo                     # build the demo world's atlas, with planted truth
    python -m benchmarks.claims --shared --classes 3       # the shared alexnet-slim on Imagenette (no truth)
    python -m benchmarks.claims --catalog catalog.yaml     # any catalog
    python -m benchmarks.claims --from-output site [--demo-truth]   # only read an existing atlas

Building runs only the four intra-class methods (location, topics, ensemble, hierarchy) through
`generator.build`, so the numbers come from the same code and manifests as the website. Writes
benchmarks/out/claims.json (and <output>/claims.json).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks.common import IMAGENETTE, OUT, SHARED, print_table, require_shared, write_json
from generator.build import build
from generator.catalog import load_catalog, parse_catalog
from generator.site.claims import claims_from_manifests, truth_from_demo, write_claims

INTRA_CLASS = ("location", "topics", "ensemble", "hierarchy")


def demo_catalog(world, output: Path, per_class: int, iterations: int | None, classes: int) -> dict:
    from generator.demo import catalog_dict

    raw = catalog_dict(world, output)
    raw["images"]["per_class"] = per_class
    raw["classes"] = raw["classes"][:classes]
    if iterations:
        raw["engine"]["iterations"] = iterations
    return raw


def shared_catalog(output: Path, per_class: int, iterations: int | None, classes: int) -> dict:
    models = require_shared() / "models"
    raw = {
        "model": {"name": f"{models / 'alexnet_slim.py'}:build", "weights": str(models / "alexnet-slim-imagenette.pt"),
                  "num_classes": 10, "labels": list(IMAGENETTE)},
        "images": {"source": "folder", "root": str(SHARED / "data" / "imagenette" / "train"), "per_class": per_class},
        "classes": list(IMAGENETTE[:classes]),
        "methods": {"topics": {"images": per_class}},
        "engine": {},
        "output": str(output),
        "device": "cpu",
        "seed": 0,
    }
    if iterations:
        raw["engine"]["iterations"] = iterations
    return raw


def run_build(catalog) -> None:
    start = time.perf_counter()
    report = build(catalog, only=INTRA_CLASS, progress=True)
    print(report.summary(), f"({time.perf_counter() - start:.0f}s)", file=sys.stderr)


def show(result: dict) -> None:
    print(f"model {result['model']}; {result['classes']} classes; {result['images']}")
    rows = [{"id": c["id"], "sec": c["section"], "value": c["value"], "threshold": c["threshold"],
             "holds": c["holds"], "metric": c["metric"]} for c in result["claims"]]
    print_table(rows, ["id", "sec", "value", "threshold", "holds", "metric"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--demo", action="store_true", help="build the demo world's atlas and use its planted truth")
    source.add_argument("--shared", action="store_true", help="build with the shared alexnet-slim on Imagenette")
    source.add_argument("--catalog", type=Path, help="build this catalog")
    source.add_argument("--from-output", type=Path, help="only read the manifests of an existing atlas")
    parser.add_argument("--demo-truth", action="store_true", help="with --from-output: use the demo world's truth")
    parser.add_argument("--output", type=Path, default=OUT / "claims-atlas", help="where to build (default benchmarks/out/claims-atlas)")
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--classes", type=int, default=10, help="build only the first N classes")
    parser.add_argument("--iterations", type=int, default=None, help="engine iterations (default: the catalog's)")
    args = parser.parse_args()

    truth = None
    if args.demo or args.demo_truth:
        from generator.demo import ensure_demo

        world = ensure_demo()
        truth = truth_from_demo(world)
    if args.from_output:
        output = args.from_output
    else:
        output = args.output.resolve()
        if args.demo:
            catalog = parse_catalog(demo_catalog(world, output, args.per_class, args.iterations, args.classes), base=output)
        elif args.shared:
            catalog = parse_catalog(shared_catalog(output, args.per_class, args.iterations, args.classes), base=output)
        else:
            catalog = load_catalog(args.catalog)
            output = Path(catalog.output)
        run_build(catalog)
    write_claims(output, truth)
    result = claims_from_manifests(output, truth)
    show(result)
    path = write_json("claims", result)
    print(f"wrote {path} and {output / 'claims.json'}")


if __name__ == "__main__":
    main()
