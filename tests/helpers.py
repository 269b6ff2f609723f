"""Builders shared by the tests: tiny nets, method contexts and a tiny build world.

conftest.py hands these to tests as fixtures; tests never import each other. The tiny build
world is also loaded by file path from the subprocess scripts of test_build.py.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import signal
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from generator import build as build_module
from generator.catalog import Catalog, ClassEntry, ImageSpec, ModelSpec
from generator.methods import ClassContext, MethodResult, MethodSpec, Picture, spec
from generator.nets.pathway import Pathway
from generator.units import UnitsParams

# ---------------------------------------------------------------------------------------------
# Tiny nets and images


def tiny_alexnet(size: int = 96, num_classes: int = 4, seed: int = 0, dropout: bool = True) -> Pathway:
    """Random AlexNet-layout net: conv/pool trunk to a 16 x (size/16)^2 pool5, fc6/fc7 of 32, fc8.

    At 96 px pool5 is 6x6 with 43 px receptive fields (the engine tests); at 64 px it is 4x4,
    stride 16 (the prior tests)."""
    torch.manual_seed(seed)
    grid = size // 16
    net = nn.Module()
    net.features = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    )
    drop = [nn.Dropout()] if dropout else []
    net.classifier = nn.Sequential(
        *drop, nn.Linear(16 * grid * grid, 32), nn.ReLU(), *drop, nn.Linear(32, 32), nn.ReLU(),
        nn.Linear(32, num_classes),
    )
    return Pathway(net, input_size=size)


def tiny_vit_model(num_classes: int = 4, image_size: int = 32, patch_size: int = 8, width: int = 32,
                   depth: int = 2) -> nn.Module:
    """A random torchvision VisionTransformer, tiny: 8 px patches of 32 px images (a 4x4 token
    grid), width 32, 2 blocks, with a random head (torchvision zero-inits it: every class score
    would be 0)."""
    from torchvision.models import VisionTransformer

    net = VisionTransformer(image_size=image_size, patch_size=patch_size, num_layers=depth, num_heads=2,
                            hidden_dim=width, mlp_dim=2 * width, num_classes=num_classes)
    nn.init.normal_(net.heads.head.weight, std=0.2)
    return net


def tiny_vit(size: int = 32, patch: int = 8, num_classes: int = 4, seed: int = 0) -> Pathway:
    """tiny_vit_model's pathway: pool5 = the 32 x (size/patch)^2 patch tokens entering block 2."""
    from generator.nets.transformers import pathway_for

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = tiny_vit_model(num_classes, size, patch)
    return pathway_for(net, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), size)


# A model file for builds: `tiny_vit.py:build` (tests/ is on sys.path while pytest runs).
TINY_VIT = """
from helpers import tiny_vit_model


def build(num_classes=3):
    return tiny_vit_model(num_classes)
"""


def smooth_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Natural-ish images: upsampled noise (smooth, correlated), in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=generator)
    return nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def shared_pathway(shared: Path) -> Pathway:
    """The trained alexnet-slim of ../shared (10 Imagenette classes) through the model loader."""
    models = shared / "models"
    spec = ModelSpec(f"{models / 'alexnet_slim.py'}:build", weights=str(models / "alexnet-slim-imagenette.pt"),
                     num_classes=10)
    from generator.nets.models import load_pathway

    return load_pathway(spec)


# ---------------------------------------------------------------------------------------------
# Method contexts (the intra-class method tests)

FAST_ENGINE = {"iterations": 6, "lr": 0.05, "prior_weight": 1.0, "rematch_every": 3}


def demo_net(size: int = 48, classes: int = 4, seed: int = 0) -> Pathway:
    """A random, narrow net of the demo architecture (pool5 = 8x6x6, fc = 32)."""
    from generator.demo import build

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = build(num_classes=classes, widths=(8, 8, 8, 8, 8), hidden=32)
    return Pathway(net, input_size=size)


def tiny_context(n: int = 8, size: int = 48, seed: int = 0, engine: dict | None = None,
                 pathway: Pathway | None = None) -> ClassContext:
    """A ClassContext on random images for `pathway` (default demo_net): exercises the plumbing in a second."""
    pathway = demo_net(size) if pathway is None else pathway
    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        features = pathway(images)
    return ClassContext(
        pathway=pathway, class_index=1, class_id="c1", class_name="thing", images=images,
        image_names=[f"img{i}.png" for i in range(n)], features=features,
        engine=dict(FAST_ENGINE if engine is None else engine), seed=seed,
    )


from generator.demo.cache import PAPER_ENGINE  # noqa: E402  (the demo world's engine: raw pixels)


def demo_context(world, class_id: str, n: int = 30, engine: dict | None = None, seed: int = 0) -> ClassContext:
    """The ClassContext `generator.build` would make for a demo class (first n images)."""
    from generator.catalog import ImageSpec
    from generator.images import class_images

    pathway = world.pathway()
    loaded = class_images(ImageSpec("folder", Path(world.image_root)), class_id, n, seed, world.input_size)
    with torch.no_grad():
        features = pathway(loaded.images)
    index = world.class_ids.index(class_id)
    return ClassContext(
        pathway=pathway, class_index=index, class_id=class_id, class_name=world.class_names[index],
        images=loaded.images, image_names=loaded.names, features=features,
        engine=dict(engine or {"iterations": 40, "prior_weight": 1.0, **PAPER_ENGINE}), seed=seed,
    )


# ---------------------------------------------------------------------------------------------
# The tiny build world (test_build.py, test_bad_inputs.py and test_build's subprocess scripts)

WNIDS = ("n01440764", "n02102040", "n02979186")
TINY_NET = '''
from torch import nn

def build(num_classes=3):
    net = nn.Module()
    net.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4))
    net.avgpool = nn.AdaptiveAvgPool2d(2)
    net.classifier = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, num_classes))
    return net
'''


def make_world(root: Path, images_per_class: int = 3) -> Catalog:
    """A model file + weights, an ImageNet-layout image folder, and a catalog over them."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "tiny_net.py").write_text(TINY_NET)
    write_weights(root / "tiny.pt", seed=0)
    rng = np.random.default_rng(0)
    for c, wnid in enumerate(WNIDS):
        folder = root / "images" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(images_per_class):
            pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            pixels[..., c] = 200  # a class colour
            Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", quality=90)
    return world_catalog(root, images_per_class)


def world_catalog(root: Path, images_per_class: int = 3) -> Catalog:
    """The catalog of a world made by make_world (writes nothing: keys depend on file stats)."""
    classes = [ClassEntry(id=w, name=f"class {i}", index=i, slug=w,
                          methods={"classviz": {"enabled": True, "level": 0.5},
                                   "topics": {"enabled": True, "k": 2}})
               for i, w in enumerate(WNIDS)]
    return Catalog(path=None,
                   model=ModelSpec(name=f"{root / 'tiny_net.py'}:build", weights=str(root / "tiny.pt"),
                                   num_classes=3, labels=list(WNIDS), input_size=32),
                   images=ImageSpec(source="folder", root=root / "images", per_class=images_per_class),
                   classes=classes, methods={"classviz": {"enabled": True, "level": 0.5},
                                             "topics": {"enabled": True, "k": 2}},
                   engine={"iterations": 3}, output=root / "site", device="cpu", seed=0,
                   units=UnitsParams(enabled=False))  # the unit atlas's tests switch it on (units_world)


def write_weights(path: Path, seed: int) -> None:
    spec = importlib.util.spec_from_file_location("tiny_net", path.parent / "tiny_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(seed)
    torch.save(module.build().state_dict(), path)


def _fake_classviz(ctx, params) -> MethodResult:
    """Deterministic pictures that depend on the images, the features, the params and the seed."""
    g = torch.Generator().manual_seed(ctx.seed + ctx.class_index)
    mean = ctx.images.mean(0)
    noisy = (mean * params["level"] + torch.rand(mean.shape, generator=g) * (1 - params["level"])).clamp(0, 1)
    score = float(ctx.features.fc8[:, ctx.class_index].mean())
    return MethodResult("classviz", params, ctx.seed,
                        [Picture("baseline", noisy, "no prior", "noise"), Picture("prior", mean, "prior", "mean")],
                        {"score": score})


def _fake_topics(ctx, params) -> MethodResult:
    pictures = [Picture(f"topic-{k}", ctx.images[k % len(ctx.images)], f"topic {k}", "an image")
                for k in range(params["k"])]
    return MethodResult("topics", params, ctx.seed, pictures, {"nan": float("nan")})


FAKE_METHODS = {
    "classviz": types.SimpleNamespace(VERSION=1, DEFAULTS={"level": 0.5}, run=_fake_classviz),
    "topics": types.SimpleNamespace(VERSION=1, DEFAULTS={"k": 2}, run=_fake_topics),
}


def fake_method_module(name: str):
    return FAKE_METHODS[name]


def fake_method_spec(name: str) -> MethodSpec:
    """The registry's entry with the fake's VERSION (what a code change in the method bumps)."""
    return dataclasses.replace(spec(name), version=FAKE_METHODS[name].VERSION)


def install_fakes(monkeypatch=None) -> None:
    """Route the build's method lookup to the fakes (monkeypatch in tests, plain set in scripts)."""
    if monkeypatch is None:
        build_module._method_module = fake_method_module
        build_module._method_spec = fake_method_spec
    else:
        monkeypatch.setattr(build_module, "_method_module", fake_method_module)
        monkeypatch.setattr(build_module, "_method_spec", fake_method_spec)


def built_files(output: Path) -> dict[str, bytes]:
    """Every file of an atlas's built classes, manifests without their wall-clock seconds: what
    two builds of one catalog must agree on byte for byte."""
    import json

    files = {}
    for path in sorted((output / "classes").rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.name == "manifest.json":
            manifest = json.loads(data)
            for record in manifest["methods"].values():
                record.pop("seconds")
            data = json.dumps(manifest, sort_keys=True).encode()
        files[path.relative_to(output).as_posix()] = data
    return files


# ---------------------------------------------------------------------------------------------
# Hostile folders: what changed, and commands that must not hang


def tree_state(root: Path) -> dict[str, str]:
    """Every entry below `root` (symlinks not followed) -> what it is: a file's sha256, a
    symlink's target, a folder's or a FIFO's kind. Equal states: nothing below changed."""
    import hashlib
    import os
    import stat

    state = {}
    for folder, dirs, names in os.walk(root, followlinks=False):
        for name in [*dirs, *names]:
            path = Path(folder) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                kind = f"link -> {os.readlink(path)}"
            elif stat.S_ISREG(mode):
                kind = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                kind = "folder" if stat.S_ISDIR(mode) else f"mode {stat.S_IFMT(mode):o}"
            state[path.relative_to(root).as_posix()] = kind
    return state


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise TimeoutError in the block once it has run `seconds` (main thread only): a command
    blocked on a FIFO fails its test instead of hanging the run."""
    def expire(*_args):
        raise TimeoutError(f"still running after {seconds} s (blocked?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
