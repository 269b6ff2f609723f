"""The diagnostics are methods like the paper's: adding them to an existing atlas runs only
them, a second build runs nothing, and the rendered class page shows their sections."""
from __future__ import annotations

import json

from generator import build as build_module
from generator import site
from generator.build import build
from generator.methods import METHODS, method_defaults, method_module, spec

DIAGNOSTICS = tuple(spec.name for spec in METHODS if spec.diagnostic)
FAST = {"preimages": {"iterations": 2}, "caricatures": {"iterations": 2, "layers": "conv1,fc7"}}


def test_adding_the_diagnostics_reruns_only_them(tiny_world, fake_methods, monkeypatch):
    world = tiny_world
    assert build(world, progress=False).ok
    fake_spec = build_module._method_spec  # the tiny world's fakes keep classviz and topics
    monkeypatch.setattr(build_module, "_method_module",
                        lambda name: method_module(name) if name in DIAGNOSTICS else fake_methods[name])
    monkeypatch.setattr(build_module, "_method_spec", lambda name: spec(name) if name in DIAGNOSTICS else fake_spec(name))
    for entry in world.classes:
        for name in DIAGNOSTICS:
            entry.methods[name] = {**method_defaults(name), **FAST.get(name, {}), "enabled": True}
    report = build(world, progress=False)
    assert report.ok, report.summary()
    assert sorted(report.ran) == sorted((e.id, m) for e in world.classes for m in DIAGNOSTICS)
    assert {m for _, m in report.skipped} == {"classviz", "topics"}
    again = build(world, progress=False)
    assert again.ran == [] and again.ok
    entry = world.classes[0]
    entry.methods["saliency"]["images"] = 1
    assert build(world, progress=False).ran == [(e.id, "saliency") for e in world.classes[:1]]

    manifest = json.loads((world.output / "classes" / entry.slug / "manifest.json").read_text())
    assert set(manifest["methods"]) == {"classviz", "topics", *DIAGNOSTICS}
    assert manifest["methods"]["preimages"]["numbers"]["layers"] == ["conv1", "pool5", "fc6", "fc7", "fc8"]
    site.render(world.output)
    html = (world.output / "classes" / entry.slug / "index.html").read_text()
    for name in DIAGNOSTICS:
        assert f'<section id="{name}"' in html
    assert html.count('<tr><th scope="row">') >= 5  # the pre-images' per-layer rows

