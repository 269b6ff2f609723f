"""Small helpers shared by the benchmark scripts: the shared model and images, contact sheets,
JSON output. Benchmarks use the real data in ../shared (never copied into the repo).

Run benchmarks from the repo root as modules: `python -m benchmarks.speed`."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from generator.nets.pathway import Pathway
from generator.store import to_pil

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATLAS_SHARED", REPO.parent / "shared"))
OUT = REPO / "benchmarks" / "out"
IMAGENETTE = (
    "n01440764 n02102040 n02979186 n03000684 n03028079 n03394916 n03417042 n03425413 n03445777 n03888257"
).split()
IMAGENETTE_NAMES = (
    "tench", "English springer", "cassette player", "chain saw", "church",
    "French horn", "garbage truck", "gas pump", "golf ball", "parachute",
)


def parse_overrides(text: str) -> dict[str, Any]:
    """"a.b=1,c=x" -> {"a.b": 1, "c": "x"}: settings given on a command line, values read as YAML
    scalars; a piece without "=" continues the value before it ("layers=pool5,fc7" -> "pool5,fc7")."""
    import yaml

    raw: dict[str, str] = {}
    key = None
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        if sep:
            key = name.strip()
            raw[key] = value
        elif key is not None:
            raw[key] += "," + item
        else:
            raise SystemExit(f"error: {item!r} is not KEY=VALUE")
    return {k: yaml.safe_load(v) for k, v in raw.items()}


def require_shared() -> Path:
    """../shared, or exit with a clear message (benchmarks need the real model and images)."""
    if not (SHARED / "models" / "alexnet-slim-imagenette.pt").is_file():
        sys.exit(f"benchmark needs the shared model and data at {SHARED} (set ATLAS_SHARED)")
    return SHARED


def shared_pathway(device: str | torch.device = "cpu") -> Pathway:
    """The trained alexnet-slim (10 Imagenette classes, model output order = IMAGENETTE) as a Pathway."""
    models = require_shared() / "models"
    spec = importlib.util.spec_from_file_location("alexnet_slim", models / "alexnet_slim.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    net = module.build(num_classes=10)
    net.load_state_dict(torch.load(models / "alexnet-slim-imagenette.pt", weights_only=True, map_location="cpu"))
    return Pathway(net).to(device)


def shared_units_dataset() -> tuple[Any, Pathway, Any]:
    """The shared alexnet-slim catalog, its pathway (1 CPU thread) and the unit step's dataset of its
    images: what the unit benchmarks measure on. Output goes to benchmarks/out/units_pictures_site."""
    from generator.catalog import load_catalog
    from generator.nets.models import load_pathway
    from generator.units import run as units_run

    require_shared()
    torch.set_num_threads(1)
    catalog = load_catalog(REPO / "catalogs" / "shared-alexnet-slim.yaml", {"output": str(OUT / "units_pictures_site")})
    pathway = load_pathway(catalog.model, "cpu")
    return catalog, pathway, units_run.load_dataset(catalog, pathway, progress=False)


def bare_rate(pathway: Pathway, batch: int, steps: int) -> float:
    """Image-iterations/s of forward + backward to the input, nothing else."""
    images = torch.rand(batch, 3, pathway.input_size, pathway.input_size, generator=torch.Generator().manual_seed(0))
    images.requires_grad_(True)
    targets = torch.arange(batch) % pathway.num_classes
    pathway(images).fc8.gather(1, targets[:, None]).sum().backward()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        images.grad = None
        pathway(images).fc8.gather(1, targets[:, None]).sum().backward()
    return batch * steps / (time.perf_counter() - start)


def load_image(path: Path, size: int = 224) -> Tensor:
    """One image as (3, size, size) in [0, 1] (resized, centre-cropped to a square)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = size / min(im.size)
        im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))), Image.BILINEAR)
        left, top = (im.width - size) // 2, (im.height - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255


def class_images(wnid: str, n: int, split: str = "train", size: int = 224) -> Tensor:
    """The first n images (sorted file names) of an Imagenette class: (n, 3, size, size) in [0, 1]."""
    files = sorted((require_shared() / "data" / "imagenette" / split / wnid).glob("*.JPEG"))[:n]
    return torch.stack([load_image(f, size) for f in files])


def contact_sheet(rows: Sequence[Sequence[Tensor]], path: Path, labels: Sequence[str] = (), cell: int = 128) -> Path:
    """Save a grid of images (one list per row, (3,H,W) in [0,1]) with an optional label per row."""
    margin = 110 if labels else 0
    width = margin + cell * max(len(r) for r in rows)
    sheet = Image.new("RGB", (width, cell * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        if r < len(labels):
            draw.text((4, r * cell + cell // 2 - 6), labels[r], fill="black")
        for c, image in enumerate(row):
            sheet.paste(to_pil(image).resize((cell, cell), Image.BILINEAR), (margin + c * cell, r * cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def write_json(name: str, data: dict[str, Any]) -> Path:
    """Write benchmarks/out/<name>.json (pretty, stable key order) and return its path."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """A plain fixed-width table of dict rows (floats with 3 significant digits)."""
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
