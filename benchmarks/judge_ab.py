"""A/B of engine variants (transforms, parameterization, settings) against the judge, on the class
visualizations of the shared alexnet-slim atlas.

    python -m benchmarks.judge_ab [--variants pixels,robust,fourier] [--classes 0,4,9] [--out DIR]

For each variant: `atlas build --only classviz` of catalogs/shared-alexnet-slim.yaml into
DIR/<variant> with the variant's transforms and parameterization in place of the recipe's
(generator/engine/recipes.py), then benchmarks/transfer.py's classviz rows and colour ratio.
A built variant is reused (the build is incremental). Writes DIR/ab.json and DIR/ab.png, a
contact sheet: one row per class, (baseline, prior) per variant, then one of the class's photos.
Needs the `judge` extra and ../shared.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable

from PIL import Image, ImageDraw

import generator.engine.recipes as recipes
from benchmarks import judge as judge_module
from benchmarks import transfer
from benchmarks.common import IMAGENETTE, require_shared
from generator.build import build
from generator.catalog import load_catalog
from generator.engine.decorrelated import Decorrelated
from generator.engine.pad_rotate import Pad, RandomRotate
from generator.engine.settings import Settings

CATALOG = Path(__file__).resolve().parents[1] / "catalogs" / "shared-alexnet-slim.yaml"
RECIPE_TRANSFORMS, RECIPE_PARAM = recipes.transforms, recipes.parameterization


@dataclasses.dataclass
class Variant:
    """What a variant changes: transforms around the recipe's, a parameterization, engine settings."""

    transforms: Callable[[Settings], list[Any]] = RECIPE_TRANSFORMS
    param: Callable[[Settings], Any] = RECIPE_PARAM
    engine: dict[str, Any] = dataclasses.field(default_factory=dict)


def robust(settings: Settings) -> list[Any]:
    """Lucid's order: pad, the recipe's scale and jitter, rotate."""
    return [Pad(8), *RECIPE_TRANSFORMS(settings), RandomRotate(10)]


def fourier(settings: Settings) -> Decorrelated:
    return Decorrelated(fourier=True)


ROBUST = {"scale": 0.05}  # the recipe's random scale, on
VARIANTS: dict[str, Variant] = {
    "pixels": Variant(),
    "robust": Variant(transforms=robust, engine=ROBUST),
    "colour": Variant(param=lambda s: Decorrelated(fourier=False)),
    "fourier": Variant(param=fourier),
    "fourier-robust": Variant(transforms=robust, param=fourier, engine=ROBUST),
    "fourier-robust-notv": Variant(transforms=robust, param=fourier, engine={**ROBUST, "tv": 0.0}),
    "fourier-robust-prior30": Variant(transforms=robust, param=fourier, engine={**ROBUST, "prior_weight": 30.0}),
    "fourier-robust-prior10": Variant(transforms=robust, param=fourier, engine={**ROBUST, "prior_weight": 10.0}),
    "colour-robust": Variant(transforms=robust, param=lambda s: Decorrelated(fourier=False), engine=ROBUST),
}


def build_variant(name: str, variant: Variant, out: Path, classes: list[str], engine: dict[str, Any]) -> Path:
    catalog = load_catalog(CATALOG, {"output": str(out / name), "classes": classes})
    catalog = dataclasses.replace(catalog, engine={**catalog.engine, **variant.engine, **engine})
    recipes.transforms, recipes.parameterization = variant.transforms, variant.param  # type: ignore[assignment]
    try:
        report = build(catalog, only=["classviz"], progress=False)
    finally:
        recipes.transforms, recipes.parameterization = RECIPE_TRANSFORMS, RECIPE_PARAM  # type: ignore[assignment]
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
    parser.add_argument("--variants", default="pixels,robust,fourier", help=f"comma list of {', '.join(VARIANTS)}")
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
