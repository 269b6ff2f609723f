"""Does the website hold at 1000 classes? (targets: index transfer < 500 KB, render < 20 s)

Writes a fake atlas of N ImageNet classes (benchmarks/fake_atlas.py's schema-exact manifests; every
class page references real small picture files, hard-linked from one drawn class), runs
`atlas render` on it in a fresh process and reports:

  * render seconds, wall and CPU (the whole command: Python start-up, manifests, every page;
    on a shared machine the CPU seconds are the ones to compare);
  * index bytes: index.html, and what opening it transfers before any thumbnail (the page, its
    CSS/JS and the class list it loads), plus the thumbnails of its first page of cards;
  * class page bytes, smallest and largest (they must not grow with the class count);
  * the class list's bytes (class-index.js: loaded on the first search, sort or page turn);
  * with Playwright and Chromium: first contentful paint of the index from file://;
  * with Lighthouse (`npm install -g lighthouse`, or --lighthouse PATH) and Chromium: the four
    category scores of the index and of the first class page, served on 127.0.0.1 by
    `atlas serve`'s server (default settings: mobile, simulated throttling).

    python -m benchmarks.site_scale [--classes 1000] [--keep DIR] [--lighthouse PATH]

Writes benchmarks/out/site_scale.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.browser import CHROMIUM_ARGS, chromium_path
from benchmarks.fake_atlas import write_large_atlas

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
INDEX_TARGET_BYTES = 500_000
RENDER_TARGET_S = 20.0


def index_transfer(output: Path) -> tuple[int, int]:
    """(bytes before any thumbnail, bytes of the thumbnails the first page of cards shows): the
    index page plus every local file it links with <link>/<script>/<img>, and the class list
    the page's script loads."""
    html = (output / "index.html").read_text()
    assets = set(re.findall(r'<(?:link|script)[^>]+(?:href|src)="([^"#?]+)[^"]*"', html))
    images = set(re.findall(r'<img[^>]+src="([^"#?]+)"', html))
    base = len(html.encode()) + sum((output / a).stat().st_size for a in assets if (output / a).is_file())
    thumbs = sum((output / i).stat().st_size for i in images if (output / i).is_file())
    return base, thumbs


def first_paint_ms(index: Path) -> float | None:
    """First contentful paint of the index in headless Chromium, or None without a browser."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    executable = chromium_path()
    if executable is None:
        return None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(index.as_uri())
        page.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0")
        value = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")
        browser.close()
    return float(value)


def class_list_bytes(output: Path) -> int:
    """Bytes of the class list the index loads on first use (its data-index attribute)."""
    found = re.search(r'data-index="([^"?]+)', (output / "index.html").read_text())
    return (output / found.group(1)).stat().st_size if found else 0


def lighthouse_scores(output: Path, pages: list[str], command: str | None) -> dict[str, dict[str, int]] | None:
    """Lighthouse's four category scores (0-100) per page, the site served by `atlas serve` on
    127.0.0.1, or None without Lighthouse or Chromium."""
    if command == "none":
        return None
    command = command or shutil.which("lighthouse")
    chromium = os.environ.get("CHROME_PATH") or chromium_path()
    if command is None or chromium is None:
        return None
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "generator", "serve", "--output", str(output), "--port", str(port)],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scores = {}
    try:
        for _ in range(100):  # until it answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        for page in pages:
            with tempfile.NamedTemporaryFile(suffix=".json") as report:
                subprocess.run([command, f"http://127.0.0.1:{port}/{page}", "--quiet",
                                "--chrome-flags=--headless --no-sandbox --disable-gpu", "--output", "json",
                                "--output-path", report.name], check=True, env={**os.environ, "CHROME_PATH": chromium},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                categories = json.loads(Path(report.name).read_text())["categories"]
            scores[page] = {name: round(100 * c["score"]) for name, c in categories.items()}
    finally:
        server.terminate()
        server.wait()
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="write the atlas here and keep it (default: a temp folder)")
    parser.add_argument("--lighthouse", help="the lighthouse command (default: `lighthouse` on PATH; none: skip)")
    args = parser.parse_args()
    output = args.keep or Path(tempfile.mkdtemp(prefix="site-scale-"))
    try:
        start = time.perf_counter()
        write_large_atlas(output, args.classes)
        made = time.perf_counter() - start
        start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "generator", "render", "--output", str(output)], check=True,
                       cwd=REPO, stdout=subprocess.DEVNULL)
        render_s = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        render_cpu_s = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
        base, thumbs = index_transfer(output)
        index_bytes = (output / "index.html").stat().st_size
        pages = [p.stat().st_size for p in (output / "classes").glob("*/index.html")]
        paint = first_paint_ms(output / "index.html")
        class_list = class_list_bytes(output)
        first_class = sorted((output / "classes").glob("*/index.html"))[0].relative_to(output).as_posix()
        lighthouse = lighthouse_scores(output, ["index.html", first_class], args.lighthouse)
    finally:
        if args.keep is None:
            shutil.rmtree(output, ignore_errors=True)
    result = {"classes": args.classes, "make_s": round(made, 2), "render_s": round(render_s, 2), "render_cpu_s": round(render_cpu_s, 2),
              "index_html_bytes": index_bytes,
              "index_transfer_bytes": base, "first_page_thumbnail_bytes": thumbs,
              "class_list_bytes": class_list,
              "class_page_bytes_min": min(pages), "class_page_bytes_max": max(pages),
              "first_contentful_paint_ms": None if paint is None else round(paint, 1),
              "lighthouse": lighthouse,
              "index_target_bytes": INDEX_TARGET_BYTES, "render_target_s": RENDER_TARGET_S}
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(f"index transfer / target: {base / INDEX_TARGET_BYTES:.2f}   render / target: {render_s / RENDER_TARGET_S:.2f}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "site_scale.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
