"""How long does `atlas build` take when nothing changed, and `atlas render`? (targets: 5 s, 2 s)

Builds a 10-class atlas of the shared alexnet-slim on the shared Imagenette train images once
(every method enabled, but a deliberately tiny engine schedule and few images per class so the
first build fits on a shared 2-core CPU — those pictures are not meant to be looked at), then
times, on the same output folder:

  * a no-op rebuild (`build()`), with the model loader and the image loader replaced by
    functions that raise, so the measurement also proves the no-op path loads neither;
  * a dry run (what `atlas build --dry-run` costs);
  * `generator.site.render` (what `atlas render` costs);
  * the whole `atlas build` command on the up-to-date atlas, in a fresh process (Python and
    torch start-up, catalog, no-op build, render): what a user waits for.

The first build is kept in benchmarks/out/incremental-site and reused by later runs
(`--fresh` rebuilds it). Writes benchmarks/out/incremental.json.

    .venv/bin/python -m benchmarks.incremental [--iterations 3] [--per-class 10] [--fresh]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmarks.common import IMAGENETTE, OUT, print_table, require_shared, write_json
from generator import build as build_module
from generator.catalog import load_catalog
from generator.site import render

NOOP_TARGET_S = 5.0
RENDER_TARGET_S = 2.0


def write_catalog(folder: Path, shared: Path, iterations: int, per_class: int) -> Path:
    models = shared / "models"
    catalog = {
        "model": {"name": f"{models / 'alexnet_slim.py'}:build", "weights": str(models / "alexnet-slim-imagenette.pt"),
                  "num_classes": 10, "labels": "imagenette"},
        "images": {"source": "folder", "root": str(shared / "data" / "imagenette" / "train"), "per_class": per_class},
        "classes": list(IMAGENETTE),
        "engine": {"iterations": iterations},
        "methods": {"inversion": {"iterations": iterations}},  # inversion has its own schedule
        "output": str(folder / "site"),
        "device": "cpu",
        "seed": 0,
    }
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    return path


def refuse(*_args, **_kwargs):
    raise AssertionError("the no-op rebuild tried to load the model or the images")


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3, help="engine iterations of the first build")
    parser.add_argument("--per-class", type=int, default=10, help="images per class of the first build")
    parser.add_argument("--fresh", action="store_true", help="redo the first build from scratch")
    args = parser.parse_args()
    shared = require_shared()
    folder = OUT / "incremental-site"
    if args.fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    catalog = load_catalog(write_catalog(folder, shared, args.iterations, args.per_class))

    first_s, first = timed(lambda: build_module.build(catalog, progress=True))
    print(first.summary())
    if not first.ok:
        sys.exit("the first build failed; no timings")

    build_module._load_pathway = refuse  # from here on, any model or image load is an error
    build_module._class_images = refuse
    noop_s, noop = timed(lambda: build_module.build(catalog, progress=False))
    assert noop.ok and noop.ran == [], noop.summary()
    dry_s, dry = timed(lambda: build_module.build(catalog, dry_run=True, progress=False))
    assert dry.planned == []
    render_s, index = timed(lambda: render(catalog.output))
    atlas = Path(sys.executable).with_name("atlas")
    command = [str(atlas), "build", "--catalog", str(catalog.path)]
    cli_s, cli = timed(lambda: subprocess.run(command, capture_output=True, text=True))
    assert cli.returncode == 0 and "0 ran" in cli.stdout, cli.stdout + cli.stderr

    result = {
        "classes": len(catalog.classes),
        "methods_fresh": len(noop.skipped),
        "first_build": {"seconds": round(first_s, 2), "ran": len(first.ran), "engine_iterations": args.iterations,
                        "images_per_class": args.per_class,
                        "note": "tiny schedule for a shared CPU; 0 ran means reused from an earlier run"},
        "noop_rebuild_s": round(noop_s, 3), "noop_target_s": NOOP_TARGET_S,
        "dry_run_s": round(dry_s, 3),
        "render_s": round(render_s, 3), "render_target_s": RENDER_TARGET_S,
        "cli_noop_build_and_render_s": round(cli_s, 3),
        "noop_loaded_model_or_images": False,
        "site": str(index),
    }
    print_table([{"step": "first build", "seconds": first_s, "target": "-"},
                 {"step": "no-op rebuild", "seconds": noop_s, "target": NOOP_TARGET_S},
                 {"step": "dry run", "seconds": dry_s, "target": "-"},
                 {"step": "render", "seconds": render_s, "target": RENDER_TARGET_S},
                 {"step": "`atlas build` (no-op + render, new process)", "seconds": cli_s, "target": "-"}], ["step", "seconds", "target"])
    print(f"wrote {write_json('incremental', result)}")
    if noop_s > NOOP_TARGET_S or render_s > RENDER_TARGET_S:
        sys.exit("a timing target was missed")


if __name__ == "__main__":
    main()
