"""The `atlas` command: help texts, `atlas list`, and one-line errors with exit code 2."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from generator.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.mark.parametrize("command", ["build", "render", "demo", "list", "clean", "serve", "complete"])
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and f"atlas {command}" in result.output


def test_list_on_shared_imagenette(shared):
    result = runner.invoke(app, [
        "list", "--catalog", str(REPO / "catalog.yaml"),
        "--model", f"{shared}/models/alexnet_slim.py:build",
        "--weights", f"{shared}/models/alexnet-slim-imagenette.pt",
        "--labels", "imagenette", "--images", f"{shared}/data/imagenette/val",
    ])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["id", "name", "index", "images"]
    rows = [line.split() for line in lines[1:11]]
    assert [row[0] for row in rows][:2] == ["n01440764", "n02102040"]
    assert [row[-2] for row in rows] == [str(i) for i in range(10)]  # indices into the 10 outputs
    assert all(row[-1] == "50" for row in rows)
    assert lines[11].startswith("10 classes")


def test_list_reports_missing_images_as_zero(tmp_path):
    (tmp_path / "n01440764").mkdir()
    result = runner.invoke(app, ["list", "--catalog", str(REPO / "catalog.yaml"), "--images", str(tmp_path),
                                 "--classes", "tench,Golf_Ball"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()[1:3]]
    assert rows == [["n01440764", "tench", "0", "0"], ["n03445777", "golf", "ball", "574", "0"]]
    assert "fewer than per_class=50" in result.output


def test_default_catalog_offline_build_stops_quickly_with_a_clear_message(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))  # nothing cached
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text((REPO / "catalog.yaml").read_text().replace("~/.cache/atlas/imagenette", str(tmp_path / "empty")))
    start = time.monotonic()
    result = runner.invoke(app, ["build", "--catalog", str(catalog), "--output", str(tmp_path / "site")])
    elapsed = time.monotonic() - start
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: downloading alexnet weights IMAGENET1K_V1")
    assert "needs network access" in lines[0] and "--weights" in lines[0]
    assert elapsed < 15, elapsed
    assert not (tmp_path / "site").exists()


@pytest.mark.parametrize("args, expected", [
    (["list", "--classes", "chruch"], "classes[0]: unknown ImageNet class 'chruch' (did you mean 'church'?) (set by --classes)"),
    (["list", "--device", "gpu"], "device: unknown device 'gpu'"),
    (["list", "--model", "googlenet"], "model.name: torchvision's googlenet cannot be split"),
    (["list", "--catalog", "/nonexistent/catalog.yaml"], "catalog file not found"),
    (["build", "--shard", "2/2"], "--shard '2/2': need 0 <= i < n"),
    (["build", "--only", "classviz,topcis"], "--only: unknown method 'topcis'"),
    (["complete", "x.jpg", "--box", "1,2,3"], "--box '1,2,3': expected x,y,w,h"),
    (["serve", "--output", "/nonexistent/site"], "index.html not found"),
])
def test_user_errors_are_one_red_line_and_exit_2(args, expected):
    if "--catalog" not in args and args[0] in ("list", "build"):
        args = args + ["--catalog", str(REPO / "catalog.yaml")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert expected in lines[0], lines[0]


def test_complete_paints_inside_the_mask_only(shared, tmp_path):
    """`atlas complete` on a real photo with the shared model: pixels outside --mask are kept."""
    import numpy as np
    from PIL import Image

    from generator.images import load_image

    photo = sorted((shared / "data" / "imagenette" / "val" / "n03028079").iterdir())[0]
    out = tmp_path / "completed.png"
    result = runner.invoke(app, ["complete", str(photo), "--mask", "60,60,64,64", "--class", "church",
                                 "--catalog", str(REPO / "catalogs" / "shared-alexnet-slim.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    painted = np.asarray(Image.open(out).convert("RGB")).astype(int)
    original = (load_image(photo, 224).permute(1, 2, 0).numpy() * 255).round().astype(int)
    outside = np.ones(painted.shape[:2], bool)
    outside[60:124, 60:124] = False
    assert np.abs(painted[outside] - original[outside]).max() <= 1
    assert np.abs(painted[~outside] - original[~outside]).mean() > 2


def test_complete_topic_is_numbered_from_one_like_the_site(monkeypatch):
    """`--topic 1` is the site's "Topic 1" (meta topic 0); 0 and k + 1 are refused with the range."""
    import types

    from generator import images
    from generator.catalog import load_catalog
    from generator.methods import topics
    from generator.methods.completion import topic_mask
    from generator.nets import features

    masks = torch.eye(3)
    monkeypatch.setattr(images, "class_images", lambda *a, **k: types.SimpleNamespace(images=torch.zeros(5, 3, 8, 8)))
    monkeypatch.setattr(features, "extract", lambda *a, **k: types.SimpleNamespace(fc7=torch.zeros(3, 3)))
    monkeypatch.setattr(topics, "topic_masks_for", lambda *a, **k: types.SimpleNamespace(masks=masks))
    cat = load_catalog(REPO / "catalog.yaml")
    pathway = types.SimpleNamespace(input_size=8)
    assert torch.equal(topic_mask(cat, pathway, 0, 1), masks[0])
    assert torch.equal(topic_mask(cat, pathway, 0, 3), masks[2])
    for wrong in (0, 4):
        with pytest.raises(ValueError, match=r"topics 1\.\.3"):
            topic_mask(cat, pathway, 0, wrong)
