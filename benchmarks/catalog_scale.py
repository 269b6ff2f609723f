"""How long do `atlas list` and `atlas build --dry-run` take on a catalog of N classes? (target: list < 5 s at 10,000)

Writes a world of N classes in a temporary folder: a model file (`net.py:build`, which these two
commands never load), a labels file of N ids, an ImageNet-layout image folder with one
small JPEG per class, and a catalog that lists every class, one in ten with a method
override. Then runs each command once in a fresh process (Python start-up included, as a user
sees it) and prints its wall and CPU seconds.

    python -m benchmarks.catalog_scale [--classes 10000] [--keep DIR]
"""
from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]

NET = "def build(num_classes=3):\n    raise NotImplementedError('atlas list and build --dry-run never load the model')\n"


def write_world(root: Path, n_classes: int) -> Path:
    """The world's files; returns the catalog's path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "net.py").write_text(NET)
    ids = [f"c{i:06d}" for i in range(n_classes)]
    (root / "labels.txt").write_text("".join(f"{class_id}\n" for class_id in ids))
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (20, 120, 200)).save(buffer, format="JPEG")
    for class_id in ids:
        folder = root / "images" / class_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{class_id}_0.JPEG").write_bytes(buffer.getvalue())
    classes = "".join(f"  - {{id: {class_id}, methods: {{topics: {{k: 4}}}}}}\n" if i % 10 == 0 else f"  - {class_id}\n"
                      for i, class_id in enumerate(ids))
    catalog = root / "catalog.yaml"
    catalog.write_text(f"model: {{name: net.py:build, labels: labels.txt, input_size: 32}}\n"
                       f"images: {{root: images, per_class: 1}}\n"
                       f"output: site\ndevice: cpu\nunits: {{enabled: false}}\nclasses:\n{classes}")
    return catalog


def timed(command: list[str], catalog: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one `atlas` command in a fresh process: on a
    shared machine the CPU seconds are the ones to compare."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "generator", *command, "--catalog", str(catalog)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"atlas {' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="write the world here and keep it (default: a temp folder)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="catalog-scale-"))
    try:
        catalog = write_world(root, args.classes)
        for command in (["list"], ["build", "--dry-run"]):
            wall, cpu = timed(command, catalog)
            print(f"atlas {' '.join(command)}, {args.classes} classes: {wall:.1f} s ({cpu:.1f} s CPU)", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
