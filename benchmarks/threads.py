"""Threads on a busy machine: the net's forward + backward with 1 and 2 threads, quiet and beside a
competing CPU-bound process, with OpenMP's default wait policy and with OMP_WAIT_POLICY=PASSIVE.

    python -m benchmarks.threads [--steps 4] [--batch 4] [--size 224] [--threads 1,2]
    python -m benchmarks.threads --build catalogs/shared-mobilenet-v2.yaml [--only classviz,topics]

Each setting runs in its own process (OpenMP reads its environment when torch loads): MobileNet-v2
at random init with its batch norms folded (as `load_pathway` gives it), `--steps` timed forward +
backward passes to the input after a warm-up, ms per image (median). "busy" starts
`python -c "while True: pass"` beside it for that run only. Prints, per setting, busy / quiet
(1.0: the competitor costs nothing). With `--build CATALOG`, the same for a whole `atlas build` of
the catalog's first class (`--only` its methods, `--threads` each, into a fresh folder): the seconds
per class the build reports, quiet and beside the competitor. `atlas build` runs with OMP_WAIT_POLICY=PASSIVE and every
core unless told otherwise (generator/threads.py). Writes
benchmarks/out/threads.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import print_table, write_json

COMPETITOR = [sys.executable, "-c", "while True: pass"]


def child(steps: int, batch: int, size: int) -> None:
    """Runs in the measured process: print the median ms per image as JSON."""
    import statistics

    import torch

    from benchmarks.net_speed import fwd_bwd, pathways

    _, folded = pathways("mobilenet_v2", size)
    step = fwd_bwd(folded, torch.rand(batch, 3, size, size).requires_grad_(True))
    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(json.dumps({"ms": 1000 * statistics.median(times) / batch, "threads": torch.get_num_threads()}))


def measure(threads: int, policy: str | None, busy: bool, args: argparse.Namespace) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.getcwd()}
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    competitor = subprocess.Popen(COMPETITOR) if busy else None
    try:
        # torch first: `import generator` would set the passive policy before libgomp reads its environment
        code = f"import torch; from benchmarks.threads import child; child({args.steps}, {args.batch}, {args.size})"
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    return float(json.loads(done.stdout.strip().splitlines()[-1])["ms"])


def build_seconds(catalog: str, only: str, threads: int, busy: bool) -> float:
    """Seconds per class of an `atlas build` of the catalog's first class into a fresh folder."""
    raw = yaml.safe_load(Path(catalog).read_text(encoding="utf-8"))
    first = raw["classes"][0]
    wnid = first if isinstance(first, str) else first["id"]
    competitor = subprocess.Popen(COMPETITOR) if busy else None
    try:
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, "-c", "from generator.cli import app; app()", "build", "--catalog", catalog,
                       "--classes", wnid, "--only", only, "--threads", str(threads), "--output", out + "/site"]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    found = re.findall(r"([\d.]+) s per class", done.stdout)
    if not found:
        raise SystemExit(f"error: the build printed no speed line:\n{done.stdout[-2000:]}")
    return float(found[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--build", default=None, help="time an atlas build of this catalog's first class instead")
    parser.add_argument("--only", default="classviz,topics", help="with --build: the methods built")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    if args.build:
        for threads in (int(t) for t in args.threads.split(",")):
            quiet = build_seconds(args.build, args.only, threads, False)
            busy = build_seconds(args.build, args.only, threads, True)
            rows.append({"threads": threads, "quiet s/class": quiet, "busy s/class": busy, "busy / quiet": busy / quiet})
        print(f"atlas build of {args.build}'s first class ({args.only}); busy = beside `{' '.join(COMPETITOR[1:])}`")
        print(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
        print_table(rows, list(rows[0]))
        print(f"wrote {write_json('threads_build', {'catalog': args.build, 'only': args.only, 'rows': rows})}")
        return
    for threads in (int(t) for t in args.threads.split(",")):
        for policy in (None, "PASSIVE"):
            quiet = measure(threads, policy, False, args)
            busy = measure(threads, policy, True, args)
            rows.append({"threads": threads, "OMP_WAIT_POLICY": policy or "(default)", "quiet ms/image": quiet,
                         "busy ms/image": busy, "busy / quiet": busy / quiet})
    print(f"MobileNet-v2 (folded) forward + backward to the input, batch {args.batch}, {args.size} px, "
          f"median of {args.steps} steps; busy = beside `{' '.join(COMPETITOR[1:])}`")
    print(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
    print_table(rows, list(rows[0]))
    path = write_json("threads", {"batch": args.batch, "size": args.size, "steps": args.steps, "rows": rows,
                                  "load": [load_before, os.getloadavg()[0]]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
