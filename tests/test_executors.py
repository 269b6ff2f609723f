"""`atlas build --executor ray`: a build through a Ray cluster equals the local build byte for byte.

The Ray tests start one local cluster on loopback for the module (2 CPUs, no dashboard) and
skip cleanly without Ray (`pip install -e '.[ray]'`; the dev extra installs it, so CI runs them).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from generator import build as build_module
from generator.build import build
from generator.build.executors import RayExecutor, task_resources
from generator.catalog import load_catalog
from generator.cli import app
from generator.methods import method_defaults

# ---------------------------------------------------------------------------------------------
# Without a cluster


def test_without_ray_the_ray_executor_is_one_error_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = CliRunner().invoke(app, ["build", "--executor", "ray", "--catalog", "no-such.yaml"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --executor ray needs Ray"), result.output


@pytest.mark.parametrize("args, expected", [
    (["--executor", "dask"], "error: --executor 'dask'"),
    (["--address", "10.0.0.1:6379"], "error: --address is for --executor ray"),
])
def test_bad_executor_options_are_one_error_line(args, expected):
    result = CliRunner().invoke(app, ["build", *args, "--catalog", "no-such.yaml"])
    assert result.exit_code == 2 and result.output.strip().startswith(expected), result.output


def test_a_class_task_asks_for_a_gpu_exactly_when_the_device_is_cuda():
    assert task_resources("cuda", 0) == {"num_cpus": 1, "num_gpus": 1}
    assert task_resources("cuda:1", 8) == {"num_cpus": 1, "num_gpus": 1}
    assert task_resources("auto", 4) == {"num_cpus": 1, "num_gpus": 1}
    assert task_resources("auto", 0) == {"num_cpus": 1, "num_gpus": 0}
    assert task_resources("cpu", 4) == {"num_cpus": 1, "num_gpus": 0}


# ---------------------------------------------------------------------------------------------
# Through a local cluster on loopback


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_the_demo_atlas_through_ray_equals_the_local_build(ray_cluster, demo_world, tmp_path, built_files):
    catalog = load_catalog(Path(demo_world.catalog_path), {"output": str(tmp_path / "local")})
    catalog.engine["iterations"] = 3
    catalog.classes = catalog.classes[:2]
    for entry in catalog.classes:
        entry.methods["inversion"]["iterations"] = 3
    local = build(catalog, progress=False)
    assert local.ok, local.summary()

    catalog.output = tmp_path / "ray"
    through_ray = build(catalog, progress=False, executor=RayExecutor())
    assert through_ray.ok, through_ray.summary()
    enabled = [name for name, params in catalog.classes[0].methods.items() if params["enabled"]]
    assert sorted(through_ray.ran) == sorted(local.ran) and len(local.ran) == 2 * len(enabled) > 2
    expected = built_files(tmp_path / "local")
    assert built_files(tmp_path / "ray") == expected and len(expected) > 50
    # nothing stale afterwards: the Ray build wrote the same manifests a local rebuild reads
    assert build(catalog, progress=False, executor=RayExecutor()).ran == []


# A model whose code the workers cannot import (a .py file) and whose forward pass kills the first
# Ray worker that runs it: the task must be retried, and the model must travel by value.
DYING_NET = '''
import os, sys
from pathlib import Path
from torch import nn

class DieOnceInARayWorker(nn.Module):
    def forward(self, x):
        marker = Path(__file__).with_name("died")
        if "default_worker" in sys.argv[0] and not marker.exists():
            marker.touch()
            os._exit(1)
        return x

def build(num_classes=3):
    net = nn.Module()
    net.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), DieOnceInARayWorker(), nn.MaxPool2d(4))
    net.avgpool = nn.AdaptiveAvgPool2d(2)
    net.classifier = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, num_classes))
    return net
'''


def test_a_task_whose_worker_dies_is_retried_and_builds_the_same_bytes(ray_cluster, tiny_world, tmp_path, monkeypatch, built_files):
    monkeypatch.setattr(build_module, "_method_module", build_module.method_module)  # real methods, in every process
    root = tmp_path / "world"
    (root / "tiny_net.py").write_text(DYING_NET)  # same layout and parameter names as the tiny net
    tiny_world.engine = {"iterations": 2}
    tiny_world.classes = tiny_world.classes[:2]
    for entry in tiny_world.classes:
        entry.methods = {"classviz": {**method_defaults("classviz"), "enabled": True}}
    local = build(tiny_world, progress=False)
    assert local.ok, local.summary()
    assert not (root / "died").exists()  # the local build never kills itself

    tiny_world.output = tmp_path / "ray"
    through_ray = build(tiny_world, progress=False, executor=RayExecutor(max_retries=2))
    assert (root / "died").exists(), "no Ray worker ran the model"
    assert through_ray.ok, through_ray.summary()
    assert built_files(tmp_path / "ray") == built_files(root / "site")
