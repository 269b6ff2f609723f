"""A build on a shared machine: OpenMP's idle threads sleep (generator/threads.py), `--threads`
sets torch's count, and the build reports the image-iterations per second it reached and its
seconds per class (BuildReport.iterations, .class_seconds)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from generator import build as build_module
from generator.build import build
from generator.threads import use_threads


def _spin_count(env: dict[str, str]) -> int:
    """How long libgomp's idle threads spin when torch loads after `import generator`, as libgomp
    reports it (OMP_DISPLAY_ENV; 0 under PASSIVE, 300000 by default)."""
    done = subprocess.run([sys.executable, "-c", "import generator, torch; torch.ones(2) + 1"],
                          env={**env, "OMP_DISPLAY_ENV": "VERBOSE"}, capture_output=True, text=True, check=True)
    line = next(line for line in done.stderr.splitlines() if "GOMP_SPINCOUNT" in line)
    return int(line.split("=")[1].strip().strip("'"))


def test_importing_generator_before_torch_makes_idle_threads_sleep_unless_the_user_chose():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = os.getcwd()
    assert _spin_count(env) == 0
    assert _spin_count({**env, "OMP_WAIT_POLICY": "ACTIVE"}) > 0


def test_use_threads_sets_torchs_count_or_keeps_it():
    before = torch.get_num_threads()
    try:
        assert use_threads(1) == 1 == torch.get_num_threads()
        assert use_threads(None) == 1  # no request: torch's count stays as it is
        with pytest.raises(ValueError):
            use_threads(0)
    finally:
        torch.set_num_threads(before)


def test_a_build_reports_image_iterations_and_seconds_per_class(tiny_world, monkeypatch):
    from generator.methods import method_defaults, method_module, spec

    monkeypatch.setattr(build_module, "_method_module", method_module)
    monkeypatch.setattr(build_module, "_method_spec", spec)
    tiny_world.engine = {"iterations": 3}
    entry = tiny_world.classes[0]
    entry.methods = {"classviz": {**method_defaults("classviz"), "enabled": True}}
    report = build(tiny_world, only=[entry.id], progress=False)
    assert report.ok, report.summary()
    assert report.iterations == 2 * 3  # classviz: baseline and prior in one batch, 3 steps
    assert len(report.class_seconds) == 1 and report.class_seconds[0] > 0
    assert "image-iterations per second" in report.summary() and "s per class" in report.summary()
    fresh = build(tiny_world, only=[entry.id], progress=False)  # nothing ran: no speed to report
    assert fresh.iterations == 0 and fresh.class_seconds == [] and "per second" not in fresh.summary()
