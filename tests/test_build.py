"""`atlas build`: staleness, resumability, locking, shards and workers.

Runs the real store, image loader, model loader and feature extractor on a tiny world (a
32-px AlexNet-layout net saved as a state_dict, three classes of PIL-drawn images) with two
small fake methods, so each test takes about a second and every "ran / did not run" claim is
read from the BuildReport, not from timings.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from PIL import Image

from generator import build as build_module
from generator import store
from generator.build import build, clean
from generator.catalog import Catalog
from generator.manifest import Manifest
from generator.methods import METHOD_NAMES, MethodResult, Picture, method_defaults


@pytest.fixture
def world(tiny_world) -> Catalog:
    return tiny_world


def all_pairs(catalog: Catalog, methods=("classviz", "topics")) -> list[tuple[str, str]]:
    return [(e.id, m) for e in catalog.classes for m in methods]


def _forbid(*_args, **_kwargs):
    raise AssertionError("a fresh build must not load the model or decode images")


# ---------------------------------------------------------------------------------------------
# Staleness


def test_first_build_writes_manifests_pictures_and_thumbnails(wnids, world):
    report = build(world, progress=False)
    assert report.ok, report.summary()
    assert sorted(report.ran) == sorted(all_pairs(world))
    manifest = json.loads((world.output / "classes" / wnids[0] / "manifest.json").read_text())
    assert manifest["class"] == {"id": wnids[0], "name": "class 0", "index": 0, "slug": wnids[0]}
    assert [m for m in manifest["methods"]] == ["classviz", "topics"]
    assert len(manifest["images"]) == 3
    assert manifest["methods"]["topics"]["numbers"]["nan"] is None  # strict JSON
    for record in manifest["methods"].values():
        assert isinstance(record["seconds"], float) and math.isfinite(record["seconds"])
        for picture in record["pictures"]:
            folder = world.output / "classes" / wnids[0]
            assert Image.open(folder / picture["file"]).size == (32, 32) == (picture["width"], picture["height"])
            assert (folder / picture["thumb"]).is_file()
    for image in manifest["images"]:
        assert Image.open(world.output / "classes" / wnids[0] / image["thumb"]).format == "JPEG"


def test_noop_rebuild_runs_nothing_and_loads_nothing(world, monkeypatch):
    build(world, progress=False)
    monkeypatch.setattr(build_module, "_PATHWAYS", {})
    monkeypatch.setattr(build_module, "_load_pathway", _forbid)
    monkeypatch.setattr(build_module, "_class_images", _forbid)
    report = build(world, progress=False)
    assert report.ok, report.summary()
    assert report.ran == []
    assert sorted(report.skipped) == sorted(all_pairs(world))


def test_changing_one_parameter_reruns_only_that_method(wnids, world):
    build(world, progress=False)
    for entry in world.classes:
        entry.methods["topics"]["k"] = 3
    report = build(world, progress=False)
    assert sorted(report.ran) == sorted(all_pairs(world, ("topics",)))
    assert sorted(report.skipped) == sorted(all_pairs(world, ("classviz",)))
    manifest = json.loads((world.output / "classes" / wnids[1] / "manifest.json").read_text())
    assert len(manifest["methods"]["topics"]["pictures"]) == 3


def test_retuned_engine_defaults_rerun_everything(world, monkeypatch):
    """A new default in generator.engine.settings.Settings (code, not catalog) makes pictures stale."""
    from generator.engine.settings import Settings

    build(world, progress=False)
    assert build(world, progress=False).ran == []
    monkeypatch.setattr(build_module, "settings_from", lambda engine: Settings(**{**engine, "prior_weight": 1.5}))
    report = build(world, progress=False, dry_run=True)
    assert sorted((c, m) for c, m, _ in report.planned) == sorted(all_pairs(world))
    assert all("engine" in why for _, _, why in report.planned)


def test_changing_the_weights_reruns_everything_but_touching_or_moving_them_does_not(write_weights, world):
    build(world, progress=False)
    weights = Path(world.model.weights)
    os.utime(weights, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))  # same bytes, new mtime
    assert build(world, progress=False).ran == []
    moved = weights.with_name("copy-of-tiny.pt")
    moved.write_bytes(weights.read_bytes())
    world.model.weights = str(moved)  # same bytes elsewhere: the same model
    assert build(world, progress=False).ran == []
    write_weights(moved, seed=1)
    report = build(world, progress=False)
    assert sorted(report.ran) == sorted(all_pairs(world))


def test_dry_run_names_the_changed_input_and_writes_nothing(wnids, world, monkeypatch, built_files):
    build(world, progress=False)
    before = built_files(world.output)
    world.classes[0].methods["classviz"]["level"] = 0.9
    world.engine["iterations"] = 4
    monkeypatch.setattr(build_module, "_load_pathway", _forbid)
    monkeypatch.setattr(build_module, "_class_images", _forbid)
    report = build(world, dry_run=True, progress=False)
    why = {(c, m): reason for c, m, reason in report.planned}
    assert why[(wnids[0], "classviz")] == "params changed; engine changed"
    assert why[(wnids[1], "topics")] == "engine changed"
    assert report.ran == [] and built_files(world.output) == before
    assert "would run" in report.summary() and "params changed" in report.summary()


def test_dry_run_names_new_images_code_version_and_missing_files(fake_methods, wnids, world, monkeypatch):
    build(world, progress=False)
    Image.new("RGB", (40, 40), "red").save(world.images.root / wnids[0] / "new.JPEG")
    monkeypatch.setitem(fake_methods, "topics", types.SimpleNamespace(VERSION=2, DEFAULTS={"k": 2}, run=fake_methods["topics"].run))
    manifest = json.loads((world.output / "classes" / wnids[2] / "manifest.json").read_text())
    (world.output / "classes" / wnids[2] / manifest["methods"]["classviz"]["pictures"][0]["file"]).unlink()
    why = {(c, m): reason for c, m, reason in build(world, dry_run=True, progress=False).planned}
    assert why[(wnids[0], "classviz")] == "images changed"
    assert why[(wnids[1], "topics")] == "version changed"
    assert why[(wnids[2], "classviz")].startswith("missing files (classviz/")
    assert (wnids[1], "classviz") not in why


def test_copied_images_with_new_mtimes_are_the_same_images_and_new_contents_are_not(wnids, world):
    build(world, progress=False)
    copy = world.images.root.parent / "copied-images"
    shutil.copytree(world.images.root, copy, copy_function=shutil.copyfile)  # new mtimes, same bytes
    later = time.time_ns() + 10**9
    for path in copy.rglob("*.JPEG"):
        os.utime(path, ns=(later, later))
    world.images.root = copy
    assert build(world, dry_run=True, progress=False).planned == []
    chosen = sorted((copy / wnids[1]).glob("*.JPEG"))[0]
    Image.new("RGB", (40, 40), "blue").save(chosen)  # another picture under the same name
    why = {(c, m): reason for c, m, reason in build(world, dry_run=True, progress=False).planned}
    assert set(why) == {(c, m) for c, m in all_pairs(world) if c == wnids[1]} and set(why.values()) == {"images changed"}


def test_a_parameter_added_unset_leaves_built_pictures_fresh(world, monkeypatch):
    build(world, progress=False)
    method_params = build_module.method_params
    monkeypatch.setattr(build_module, "method_params", lambda entry, method: {**method_params(entry, method), "added": None})
    assert build(world, dry_run=True, progress=False).planned == []
    monkeypatch.setattr(build_module, "method_params", lambda entry, method: {**method_params(entry, method), "added": 2})
    report = build(world, dry_run=True, progress=False)
    assert sorted((c, m) for c, m, _ in report.planned) == sorted(all_pairs(world))
    assert {why for _, _, why in report.planned} == {"params changed"}


def test_force_and_only_select_what_runs(wnids, world):
    build(world, progress=False)
    assert sorted(build(world, force=True, only=["topics"], progress=False).ran) == sorted(all_pairs(world, ("topics",)))
    assert build(world, force=True, only=[wnids[1], "classviz"], progress=False).ran == [(wnids[1], "classviz")]
    report = build(world, only=["no-such-class"], progress=False)
    assert not report.ok and report.failed == [("no-such-class", None, "not a class of the catalog nor a method name")]


def test_a_failing_method_is_reported_and_the_rest_is_built(fake_methods, wnids, world, monkeypatch):
    topics = fake_methods["topics"].run

    def broken(ctx, params):
        if ctx.class_id == wnids[1]:
            raise RuntimeError("the optimizer diverged")
        return topics(ctx, params)

    monkeypatch.setitem(fake_methods, "topics", types.SimpleNamespace(VERSION=1, DEFAULTS={}, run=broken))
    report = build(world, progress=False)
    assert not report.ok
    assert report.failed == [(wnids[1], "topics", "RuntimeError: the optimizer diverged")]
    assert len(report.ran) == 5
    manifest = json.loads((world.output / "classes" / wnids[1] / "manifest.json").read_text())
    assert list(manifest["methods"]) == ["classviz"]  # the good method is kept
    assert "the optimizer diverged" in report.summary()
    monkeypatch.setitem(fake_methods, "topics", types.SimpleNamespace(VERSION=1, DEFAULTS={}, run=topics))
    assert build(world, progress=False).ran == [(wnids[1], "topics")]  # only the failed one is retried


def test_clean_removes_orphans_and_keeps_the_site(wnids, world):
    build(world, progress=False)
    folder = world.output / "classes" / wnids[0]
    (folder / "index.html").write_text("<html></html>")
    old = {p.name for p in (folder / "topics").iterdir()}
    for entry in world.classes:
        entry.methods["topics"]["k"] = 1
    build(world, progress=False)
    world.classes.pop()  # a class leaves the catalog
    removed = clean(world)
    assert world.output / "classes" / wnids[2] in removed
    assert not (world.output / "classes" / wnids[2]).exists()
    left = {p.name for p in (folder / "topics").iterdir()}
    assert len(left) == 2 and not (left & old)  # one picture + its thumbnail, all from the new key
    assert (folder / "index.html").is_file()
    assert world.output / store.CACHE_DIR / "features" in removed  # a cache: one forward pass to redo
    assert build(world, progress=False).ran == []


@pytest.mark.parametrize("content", ["[]", "null", '{"schema": 1, "class": {"id": 3}}', '{"schema": 1, "methods": []}'])
def test_a_manifest_of_the_wrong_shape_is_healed_by_build(wnids, world, content):
    build(world, progress=False)
    folder = world.output / "classes" / wnids[0]
    (folder / "manifest.json").write_text(content)
    report = build(world, progress=False)
    assert report.ok and sorted(report.ran) == [(wnids[0], "classviz"), (wnids[0], "topics")], report.summary()
    assert set(Manifest.read(folder / "manifest.json").methods) == {"classviz", "topics"}
    assert build(world, progress=False).ran == []


def test_a_lost_image_thumbnail_is_rewritten_without_running_methods(wnids, world):
    build(world, progress=False)
    thumb = world.output / "classes" / wnids[2] / "images" / "001.jpg"
    original = thumb.read_bytes()
    thumb.unlink()
    dry = build(world, dry_run=True, progress=False)
    assert dry.planned == [(wnids[2], "(images)", "image thumbnails or manifest out of date")]
    report = build(world, progress=False)
    assert report.ok and report.ran == [] and thumb.read_bytes() == original


# ---------------------------------------------------------------------------------------------
# Locking, shards, workers


def test_the_lock_refuses_a_second_build(world):
    with store.BuildLock(world.output):
        with pytest.raises(store.BuildLockedError) as err:
            build(world, progress=False)
    assert str(err.value) == f"another atlas build is writing to {world.output} (pid {os.getpid()})"
    assert build(world, progress=False).ok  # released


def test_shards_share_the_lock_but_not_with_a_whole_build(world):
    with store.BuildLock(world.output, shard=(0, 2)):
        assert build(world, shard=(1, 2), progress=False).ok
        with pytest.raises(store.BuildLockedError):
            build(world, shard=(0, 2), progress=False)
        with pytest.raises(store.BuildLockedError):
            build(world, progress=False)


def test_two_shards_equal_one_unsharded_build(wnids, world, tmp_path, built_files):
    whole = build(world, progress=False)
    expected = built_files(world.output)
    world.output = tmp_path / "sharded"
    first = build(world, shard=(0, 2), progress=False)
    second = build(world, shard=(1, 2), progress=False)
    assert {c for c, _ in first.ran} == {wnids[0], wnids[2]} and {c for c, _ in second.ran} == {wnids[1]}
    assert sorted(first.ran + second.ran) == sorted(whole.ran)
    assert built_files(world.output) == expected


SCRIPT = """
import importlib.util, os, sys, time
from generator import build as build_module, store

# tests/helpers.py by its path (no sys.path edits); at import: spawn workers re-import this script too
spec = importlib.util.spec_from_file_location("atlas_test_helpers", {helpers!r})
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
helpers.install_fakes()
real_replace = os.replace

def replace_then_hang(src, dst):
    # The kill point: a temp file fully written, the build stopped before renaming it.
    if os.environ.get("HANG_ON") and os.environ["HANG_ON"] in str(dst):
        with open(os.environ["MARKER"], "w") as marker:
            marker.write(str(os.getpid()))
        time.sleep(600)
    real_replace(src, dst)

os.replace = replace_then_hang

if __name__ == "__main__":
    catalog = helpers.world_catalog(__import__("pathlib").Path(sys.argv[1]))
    catalog.output = __import__("pathlib").Path(sys.argv[2])
    report = build_module.build(catalog, workers=int(sys.argv[3]), progress=False)
    print(sorted(report.ran))
    sys.exit(0 if report.ok else 1)
"""


def _script(tmp_path: Path) -> Path:
    script = tmp_path / "run_build.py"
    script.write_text(SCRIPT.format(helpers=str(Path(__file__).with_name("helpers.py"))))
    return script


@pytest.mark.slow
def test_a_build_killed_mid_class_resumes_to_the_same_bytes(wnids, world, tmp_path, built_files):
    build(world, progress=False)
    expected = built_files(world.output)
    script, output, marker = _script(tmp_path), tmp_path / "killed", tmp_path / "marker"
    env = {**os.environ, "HANG_ON": f"{wnids[1]}/topics/", "MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "world"), str(output), "1"], env=env)
    try:
        deadline = time.time() + 60
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the build never reached the kill point"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = output / "classes" / wnids[1]
    assert (output / "classes" / wnids[0] / "manifest.json").is_file()  # class 0 was done
    assert not (killed / "manifest.json").exists() and list(killed.glob("classviz/*.png"))
    assert [p for p in killed.rglob("*") if store.is_temp(p)]  # the kill left a temp file

    done = subprocess.run([sys.executable, str(script), str(tmp_path / "world"), str(output), "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([(w, m) for w in wnids[1:] for m in ("classviz", "topics")])
    assert built_files(output) == expected  # same seed, same bytes; no temp files, every JSON parses


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie left for a container's init to reap does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_killed_builds_workers_stop_instead_of_writing_on(wnids, world, tmp_path):
    """Killing the build (SIGKILL: no cleanup runs) ends its class workers too: left running, a
    worker would finish its class and write it after the build is gone."""
    script, output, marker = _script(tmp_path), tmp_path / "killed", tmp_path / "marker"
    env = {**os.environ, "HANG_ON": f"{wnids[1]}/topics/", "MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "world"), str(output), "2"], env=env)
    try:
        deadline = time.time() + 120
        while not (marker.exists() and marker.read_text()) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        worker = int(marker.read_text())
        assert worker != proc.pid and _alive(worker)  # a worker process reached the kill point
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 10
        while _alive(worker) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(worker)
    finally:
        if proc.poll() is None:
            proc.kill()
        if marker.exists() and marker.read_text() and _alive(int(marker.read_text())):
            os.kill(int(marker.read_text()), signal.SIGKILL)


@pytest.mark.slow
def test_workers_build_the_same_atlas(world, tmp_path, built_files):
    build(world, progress=False)
    expected = built_files(world.output)
    output = tmp_path / "workers"
    done = subprocess.run([sys.executable, str(_script(tmp_path)), str(tmp_path / "world"), str(output), "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert built_files(output) == expected


def test_model_is_loaded_once_per_process(world, monkeypatch):
    calls = []
    real = build_module._load_pathway
    monkeypatch.setattr(build_module, "_load_pathway", lambda spec, device: calls.append(1) or real(spec, device))
    assert build(world, progress=False).ok
    assert len(calls) == 1


def test_real_methods_build_and_rebuild_incrementally(world, monkeypatch):
    """The real classviz and location modules through the build (2 engine iterations)."""
    from generator.methods import method_defaults, method_module, spec

    monkeypatch.setattr(build_module, "_method_module", method_module)
    monkeypatch.setattr(build_module, "_method_spec", spec)
    world.engine = {"iterations": 2}
    entry = world.classes[0]
    entry.methods = {name: {**method_defaults(name), "enabled": True} for name in ("classviz", "location")}
    report = build(world, only=[entry.id], progress=False)
    assert report.ok and report.ran == [(entry.id, "classviz"), (entry.id, "location")], report.summary()
    manifest = json.loads((world.output / "classes" / entry.id / "manifest.json").read_text())
    for record in manifest["methods"].values():
        assert record["pictures"] and all((world.output / "classes" / entry.id / p["file"]).is_file()
                                          for p in record["pictures"])
    entry.methods["location"]["prior"] = False
    assert build(world, only=[entry.id], progress=False).ran == [(entry.id, "location")]


def _recording_method(name: str, seen: list):
    """A fake method that records the patch database parameters it was given."""
    def run(ctx, params) -> MethodResult:
        seen.append((name, ctx.prior))
        return MethodResult(name, params, ctx.seed, [Picture("only", ctx.images[0], name, "an image")])
    return types.SimpleNamespace(VERSION=1, run=run)


@pytest.mark.parametrize("field, value", [("images", 2), ("patch", 5), ("stride", 3), ("max_patches", 100),
                                          ("search_dims", 8)])
def test_patch_database_parameters_rerun_exactly_the_methods_that_use_them(fake_methods, world, monkeypatch,
                                                                           field, value):
    """The class's patch database (catalog `prior:`) is an input of every method that uses it:
    changing any of its parameters re-runs those methods and only those, and they get it."""
    seen: list = []
    for name in METHOD_NAMES:
        monkeypatch.setitem(fake_methods, name, _recording_method(name, seen))
    params = {name: {**method_defaults(name), "enabled": True} for name in METHOD_NAMES}
    params["location"]["prior"] = False  # location without the prior does not depend on the database
    world.methods = params
    for entry in world.classes:
        entry.methods = copy.deepcopy(params)
    assert build(world, progress=False).ok
    world.prior = dataclasses.replace(world.prior, **{field: value})
    planned = build(world, dry_run=True, progress=False).planned
    users = {"classviz", "topics", "ensemble", "hierarchy"}
    assert {(c, m) for c, m, _ in planned} == {(e.id, m) for e in world.classes for m in users}
    assert {why for _, _, why in planned} == {"prior changed"}
    seen.clear()
    report = build(world, progress=False)
    assert {m for _, m in report.ran} == users
    assert {prior for _, prior in seen} == {world.prior}


def test_a_new_database_format_reruns_the_methods_that_use_the_database(fake_methods, world, monkeypatch):
    """PRIOR_FORMAT says how the same `prior:` section cuts its patches: bumping it (as the change
    to normalize databases like the prior did) makes exactly the database's users stale."""
    for name in METHOD_NAMES:
        monkeypatch.setitem(fake_methods, name, _recording_method(name, []))
    params = {name: {**method_defaults(name), "enabled": True} for name in METHOD_NAMES}
    world.methods = params
    for entry in world.classes:
        entry.methods = copy.deepcopy(params)
    assert build(world, progress=False).ok
    monkeypatch.setattr(build_module, "PRIOR_FORMAT", build_module.PRIOR_FORMAT + 1)
    planned = build(world, dry_run=True, progress=False).planned
    users = {"classviz", "location", "topics", "ensemble", "hierarchy"}
    assert {(c, m) for c, m, _ in planned} == {(e.id, m) for e in world.classes for m in users}
    assert {why for _, _, why in planned} == {"prior changed"}
