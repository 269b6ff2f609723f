"""benchmarks/gpu.py: without CUDA it says so in one line and exits 0; its measurements run (on
the CPU here, at tiny sizes) and give positive numbers."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

from benchmarks import gpu


def test_without_a_gpu_it_prints_one_line_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().count("\n") == 0 and "no CUDA GPU" in done.stdout


def test_the_measurements_run_and_count(tiny_alexnet, tiny_world):
    cpu = torch.device("cpu")
    rows = gpu.bare_rows(["mobilenet_v2"], batch=2, size=32, steps=1, device=cpu)
    assert [r["variant"] for r in rows] == ["eager", "folded", "folded bf16"]
    assert all(r["ms/image"] > 0 and r["TFLOP/s"] > 0 for r in rows)
    assert gpu.engine_rate(tiny_alexnet(size=32), batch=2, steps=2) > 0
    suite = gpu.suite_rows(tiny_world, classes=1)
    assert len(suite) == 1 and suite[0]["methods"] == 2 and suite[0]["seconds"] > 0
