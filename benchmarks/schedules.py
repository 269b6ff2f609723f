"""Quality per image-iteration: the same classes built under several schedules, each read by the judge.

    python -m benchmarks.schedules --catalog catalogs/shared-mobilenet-v2.yaml --classes 6 \
        --only classviz,topics --variant today --variant half:engine.iterations=100,engine.lr=0.02

Each `--variant NAME[:KEY=VALUE,...]` is the catalog with dotted keys overridden
(`engine.iterations=100`, `methods.topics.diversity=10`); it is built from scratch with `atlas build`
into benchmarks/out/schedules/NAME (an existing folder is reused, so a variant is built once),
then read by the judge as benchmarks/transfer.py reads an atlas. Prints per variant the
image-iterations and seconds per class the build reported, and per kind of picture the judge's
top-1 among the classes / top-5 among 1000, topic match and spread, KID and the ensemble's
ratio. Builds run one after another with `--threads` torch threads: compare seconds only within
one run. Needs ../shared and the `judge` extra. Writes benchmarks/out/schedules.json.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmarks import judge as judge_module
from benchmarks.common import OUT, REPO, parse_overrides, require_shared, write_json
from benchmarks.transfer import compare, measure

SPEED = re.compile(r"speed: ([\d.]+) image-iterations per second(?: \(([\d.]+) in full-size images\))?, "
                   r"([\d.]+) s per class")


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """"NAME:a.b=1,c=x" -> ("NAME", {"a.b": 1, "c": "x"}); values are read as YAML scalars."""
    name, _, rest = text.partition(":")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SystemExit(f"error: variant name {name!r}: letters, digits, . _ - only")
    return name, parse_overrides(rest)


def variant_catalog(catalog: Path, overrides: dict[str, Any], output: Path) -> dict[str, Any]:
    """The catalog as a dict with its relative paths made absolute, the overrides set and `output`."""
    raw = yaml.safe_load(catalog.read_text())
    base = catalog.resolve().parent
    for section, key in (("model", "weights"), ("images", "root"), ("prior", "root")):
        value = (raw.get(section) or {}).get(key)
        if isinstance(value, str) and not Path(value).is_absolute() and (base / value).exists():
            raw[section][key] = str((base / value).resolve())
    name = (raw.get("model") or {}).get("name")
    if isinstance(name, str) and ".py:" in name and not Path(name).is_absolute():  # a model file beside the catalog
        file, _, factory = name.partition(":")
        raw["model"]["name"] = f"{(base / file).resolve()}:{factory}"
    for dotted, value in overrides.items():
        *path, last = dotted.split(".")
        node = raw
        for part in path:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    raw["output"] = str(output)
    return raw


def build(name: str, raw: dict[str, Any], classes: list[str], only: str | None, threads: int) -> dict[str, float]:
    """Build the variant (if its folder has no finished build) and return its reported speed."""
    folder = Path(raw["output"])
    log = folder.parent / f"{name}.log"
    if not (folder / "index.html").exists():
        path = folder.parent / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        command = [sys.executable, "-c", "from generator.cli import app; app()", "build", "--catalog", str(path), "--threads", str(threads),
                   "--classes", ",".join(classes)] + (["--only", only] if only else [])
        print(f"building {name} ...", flush=True)
        with log.open("w") as out:
            subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, check=True)
    found = SPEED.findall(log.read_text()) if log.exists() else []
    if not found:
        return {}
    rate, full, per_class = found[-1]
    rate_full = float(full or rate)
    return {"image_its_per_s": float(rate), "s_per_class": float(per_class),
            "image_its_per_class": float(rate) * float(per_class), "full_size_per_class": rate_full * float(per_class)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", type=Path, default=REPO / "catalogs" / "shared-mobilenet-v2.yaml")
    parser.add_argument("--classes", type=int, default=6, help="the catalog's first N classes")
    parser.add_argument("--only", default=None, help="methods to build (comma list; default: the catalog's)")
    parser.add_argument("--variant", action="append", default=[], help="NAME[:KEY=VALUE,...] (repeat)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    require_shared()
    why = judge_module.available()
    if why:
        sys.exit(f"error: {why}")
    variants = [parse_variant(v) for v in args.variant or ["today"]]
    raw_classes = yaml.safe_load(args.catalog.read_text())["classes"]
    classes = [c if isinstance(c, str) else c["id"] for c in raw_classes][: args.classes]
    judge = judge_module.Judge.load()
    results = []
    for name, overrides in variants:
        raw = variant_catalog(args.catalog, overrides, OUT / "schedules" / name)
        speed = build(name, raw, classes, args.only, args.threads)
        result = measure(Path(raw["output"]), judge) | {"variant": name, "overrides": overrides, "speed": speed}
        results.append(result)
    print(f"{'variant':<16} {'image-its / class':>17} {'full-size':>10} {'s / class':>10}  overrides")
    for r in results:
        s = r["speed"]
        print(f"{r['variant']:<16} {s.get('image_its_per_class', float('nan')):>17.0f} "
              f"{s.get('full_size_per_class', float('nan')):>10.0f} "
              f"{s.get('s_per_class', float('nan')):>10.1f}  {json.dumps(r['overrides'])}")
    print()
    print("\n".join(compare(results)))
    print(f"wrote {write_json('schedules', {'classes': classes, 'threads': args.threads, 'results': results})}")


if __name__ == "__main__":
    main()
