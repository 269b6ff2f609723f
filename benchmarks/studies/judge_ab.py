"""Reproduces docs/tuning.md#parameterization: class visualizations per engine variant, read by the judge.

    python -m benchmarks.studies.judge_ab [--variants pixels,pixels-transforms,fourier] [--classes 0,4,9] [--out DIR]

For each variant: `atlas build --only classviz` of catalogs/shared-alexnet-slim.yaml into
DIR/<variant> with the variant's engine settings over the catalog's (raw pixels and the paper's
image-normalized patches, with jitter only or with Lucid's transforms; the Fourier defaults with the
prior at weight 10 on image-normalized patches, at 30, and at its default 100 on photo-normalized
patches), then benchmarks/transfer.py's classviz rows and colour ratio. A built variant is reused
(the build is incremental). Writes DIR/ab.json and DIR/ab.png, a contact sheet: one row per class,
(baseline, prior) per variant, then one of the class's photos. Needs the `judge` extra and
../shared.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from benchmarks import judge as judge_module
from benchmarks import transfer
from benchmarks.common import IMAGENETTE, REPO, require_shared
from generator.build import build
from generator.catalog import load_catalog

CATALOG = REPO / "catalogs" / "shared-alexnet-slim.yaml"
PIXELS = {"param": "pixels", "prior_normalize": "image"}  # the paper's raw pixels and patch normalization
VARIANTS: dict[str, dict[str, Any]] = {
    "pixels": {**PIXELS, "pad": 0, "scale": 0.0, "rotate": 0.0},  # jitter only
    "pixels-transforms": PIXELS,  # + the defaults' pad, scale and rotation
    "fourier-prior10-image": {"prior_weight": 10.0, "prior_normalize": "image"},
    "fourier-prior30": {"prior_weight": 30.0},
    "fourier": {},  # the engine's defaults: Fourier, Lucid's transforms, prior 100 on photo-normalized patches
}


def build_variant(name: str, variant: dict[str, Any], out: Path, classes: list[str], engine: dict[str, Any]) -> Path:
    catalog = load_catalog(CATALOG, {"output": str(out / name), "classes": classes})
    catalog = dataclasses.replace(catalog, engine={**catalog.engine, **variant, **engine})
    report = build(catalog, only=["classviz"], progress=False)
    if not report.ok:
        sys.exit(f"error: variant {name}: {report.summary()}")
    return out / name


def contact_sheet(folders: dict[str, Path], path: Path, cell: int = 112) -> Path:
    """Rows: classes; columns: baseline and prior of each variant, then a class photo."""
    classes = [c for c in transfer.load_atlas(next(iter(folders.values())))]
    header = 18
    sheet = Image.new("RGB", (cell * (2 * len(folders) + 1), header + cell * len(classes)), "white")
    draw = ImageDraw.Draw(sheet)
    for v, name in enumerate(folders):
        draw.text((v * 2 * cell + 4, 3), f"{name}: baseline | prior", fill="black")
    for r, entry in enumerate(classes):
        for v, folder in enumerate(folders.values()):
            atlas = {c.id: c for c in transfer.load_atlas(folder)}[entry.id]
            for k, kind in enumerate(("classviz baseline", "classviz prior")):
                picture = atlas.kinds[kind][0].file
                sheet.paste(transfer.open_rgb(picture).resize((cell, cell)), ((2 * v + k) * cell, header + r * cell))
        photo = transfer.open_rgb(entry.image_file(0)).resize((cell, cell))
        sheet.paste(photo, (2 * len(folders) * cell, header + r * cell))
    sheet.save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="pixels,pixels-transforms,fourier", help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--classes", default=None, help="comma list of class indices (default: all 10)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/atlas-ab"), help="where the variants' atlases go")
    parser.add_argument("--iterations", type=int, default=None, help="override every variant's iterations (smoke runs)")
    args = parser.parse_args()
    require_shared()
    why = judge_module.available()
    if why:
        sys.exit(f"error: {why}")
    names = args.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        sys.exit(f"error: unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    classes = [IMAGENETTE[int(i)] for i in args.classes.split(",")] if args.classes else IMAGENETTE
    judge = judge_module.Judge.load()
    folders, results = {}, {}
    for name in names:
        engine = {"iterations": args.iterations} if args.iterations else {}
        folders[name] = build_variant(name, VARIANTS[name], args.out, classes, engine)
        result = transfer.measure(folders[name], judge, among=IMAGENETTE)  # top-1 among all 10, whatever --classes
        results[name] = result
        rows = {r["kind"]: r for r in result["recognition"]}
        colour = result["colour"] or {}
        print(f"{name:<22} " + "  ".join(
            f"{kind.split()[-1]} top-1 {rows[kind]['top1_among_classes']:.2f} top-5 {rows[kind]['top5_among_1000']:.2f}"
            for kind in ("classviz baseline", "classviz prior") if kind in rows
        ) + f"  colour ratio {colour.get('ratio', float('nan')):.2f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ab.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out / 'ab.json'} and {contact_sheet(folders, args.out / 'ab.png')}")


if __name__ == "__main__":
    main()
