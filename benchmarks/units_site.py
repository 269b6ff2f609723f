"""The unit atlas's pages on a built atlas (targets: layer index transfer < 300 KB, `atlas render`
with the unit pages < 5 s), or on a synthetic one (`--synthetic N`: N classes with all 11
methods, benchmarks/fake_atlas.py's manifests, plus a unit atlas of AlexNet's shape: 256 pool5
channels and 8 fc6 + 8 fc7 units per class, 9 patches each):

  * render seconds: `python -m generator render` in a fresh process, twice (the first writes every
    page; the second finds them unchanged), wall and CPU;
  * layer index bytes: what headless Chromium requests when it opens `units/<layer>/index.html`
    at 1280x900 (the page, CSS, JS and the thumbnails it loads eagerly: lazy ones in the first
    screens), summed from the files' sizes, beside the total of every thumbnail the page names;
  * the unit step's seconds from `units/manifest.json`.

    python -m benchmarks.units_site --output /tmp/units-atlas [--layer pool5]
    python -m benchmarks.units_site --synthetic 10 [--output DIR]

Writes benchmarks/out/units_site.json.
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from benchmarks.browser import CHROMIUM_ARGS, chromium_path
from benchmarks.fake_atlas import write_fake_units, write_large_atlas

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
INDEX_TARGET_BYTES = 300_000
RENDER_TARGET_S = 5.0


def write_synthetic(output: Path, n_classes: int) -> None:
    """N classes with every method (write_large_atlas) and an AlexNet-shaped unit atlas."""
    write_large_atlas(output, n_classes)
    write_fake_units(output)


def render_seconds(output: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `atlas render` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "generator", "render", "--output", str(output)], check=True,
                   cwd=REPO, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - start, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def eager_bytes(page_path: Path) -> dict[str, int]:
    """Bytes of every file Chromium requests on opening the page (no scrolling)."""
    from playwright.sync_api import sync_playwright

    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.on("request", lambda r: requested.append(r.url))
        page.goto(page_path.as_uri(), wait_until="networkidle")
        page.wait_for_timeout(500)
        browser.close()
    files = {unquote(urlsplit(url).path) for url in requested if url.startswith("file://")}
    return {path: Path(path).stat().st_size for path in sorted(files) if Path(path).is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, help="a built atlas (with --synthetic: where to write one)")
    parser.add_argument("--synthetic", type=int, metavar="N", help="write a synthetic atlas of N classes first")
    parser.add_argument("--layer", default="pool5")
    args = parser.parse_args()
    if args.output is None and args.synthetic is None:
        parser.error("give --output (a built atlas) or --synthetic N")
    output = (args.output or Path(tempfile.mkdtemp(prefix="units-site-"))).resolve()
    if args.synthetic is not None:
        write_synthetic(output, args.synthetic)
    first = render_seconds(output)
    second = render_seconds(output)
    index = output / "units" / args.layer / "index.html"
    loaded = eager_bytes(index)
    html = index.read_text()
    named = {unquote(m) for m in re.findall(r'<img src="([^"]+)"', html)}
    every_thumb = sum((index.parent / name).stat().st_size for name in named if (index.parent / name).is_file())
    manifest = json.loads((output / "units" / "manifest.json").read_text())
    pages = sum(1 for _ in (output / "units").rglob("*.html"))
    methods = sorted({m for p in (output / "classes").glob("*/manifest.json")
                      for m in json.loads(p.read_text())["methods"]})
    result = {
        "atlas": str(output), "classes": sum(1 for _ in (output / "classes").glob("*/manifest.json")),
        "methods": methods,
        "render_s": {"first_wall": round(first[0], 2), "first_cpu": round(first[1], 2),
                     "again_wall": round(second[0], 2), "again_cpu": round(second[1], 2)},
        "render_target_s": RENDER_TARGET_S, "unit_pages": pages,
        "index": {"html_bytes": index.stat().st_size, "eager_bytes": sum(loaded.values()), "eager_files": len(loaded),
                  "all_thumbnails_bytes": every_thumb, "target_bytes": INDEX_TARGET_BYTES,
                  "ratio_to_target": round(sum(loaded.values()) / INDEX_TARGET_BYTES, 3)},
        "unit_step_s": manifest.get("seconds"), "numbers": manifest.get("numbers"),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "units_site.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"render / target: {first[0] / RENDER_TARGET_S:.2f} (first, wall)  {second[0] / RENDER_TARGET_S:.2f} (again)")


if __name__ == "__main__":
    main()
