"""Hostile or unlucky inputs get one `error: ...` line (exit 2), never a traceback or a
silent exit; nothing published holds a local path; `atlas serve` shows only the site.

Runs the CLI in-process (typer's CliRunner) on the tiny world of test_build.py.
"""
from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import socket
import struct
import threading
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from generator import store
from generator.build import build, clean
from generator.catalog import CatalogError, load_catalog
from generator.cli import _is_expected, app
from generator.errors import AtlasError
from generator.site import make_server, render, templates_dir

WNIDS = ("n01440764", "n02102040", "n02979186")  # the tiny world's classes (the `wnids` fixture)
runner = CliRunner()


@pytest.fixture
def world(tiny_world, wnids):
    assert wnids == WNIDS
    return tiny_world


def catalog_text(root: Path, **fields: str) -> str:
    values = {"model": f"{{name: '{root / 'tiny_net.py'}:build', weights: '{root / 'tiny.pt'}', num_classes: 3, "
                       f"labels: [{', '.join(WNIDS)}], input_size: 32}}",
              "images": f"{{root: '{root / 'images'}', per_class: 3}}",
              "classes": f"[{', '.join(WNIDS)}]", "output": "site", "engine": "{iterations: 2}",
              "units": "{iterations: 2, top_k: 3, per_class: 2}",
              "methods": "{location: {enabled: false}, ensemble: {enabled: false}, hierarchy: {enabled: false}, "
                         "inversion: {enabled: false}, preimages: {enabled: false}, caricatures: {enabled: false}, "
                         "neighbours: {enabled: false}, fc7map: {enabled: false}, saliency: {enabled: false}}"} | fields
    return "".join(f"{key}: {value}\n" for key, value in values.items())


def write_catalog(root: Path, **fields: str) -> Path:
    path = root / "catalog.yaml"
    path.write_text(catalog_text(root, **fields), encoding="utf-8")
    return path


def one_error_line(result) -> str:
    """The single `error:` line of a failed command (and no traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


# ---------------------------------------------------------------------------------------------
# The CLI knows expected errors by type


def test_expected_errors_are_atlas_errors_by_type_not_by_name():
    from generator.catalog import CatalogError as FromCatalog
    from generator.images import BadImage
    from generator.site import SiteError
    from generator.store import StoreError

    assert all(issubclass(cls, AtlasError) for cls in (BadImage, FromCatalog, SiteError, StoreError))
    assert _is_expected(BadImage("not an image"))  # its name does not end in "Error"
    assert issubclass(FromCatalog, ValueError)  # old `except ValueError` callers still work

    class LooksLikeOursError(ValueError):
        pass

    LooksLikeOursError.__module__ = "generator.somewhere"
    assert not _is_expected(LooksLikeOursError("a bug keeps its traceback"))


def test_every_error_class_of_the_package_is_an_atlas_error():
    """A new `FooError` that forgets AtlasError would print a traceback for a user's mistake."""
    import importlib
    import inspect
    import pkgutil

    import generator

    found = []
    for info in pkgutil.walk_packages(generator.__path__, "generator."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        found += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                  if issubclass(cls, Exception) and cls.__module__ == info.name]
    assert len(found) >= 10
    assert [cls.__qualname__ for cls in found if not issubclass(cls, AtlasError)] == []


# ---------------------------------------------------------------------------------------------
# atlas complete


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("photo", ["missing", "text", "empty", "bomb"])
def test_complete_with_a_bad_photo_is_one_error_line(world, tmp_path, photo):
    path = tmp_path / f"{photo}.png"
    if photo == "text":
        path.write_text("<html>not a picture</html>")
    elif photo == "empty":
        path.write_bytes(b"")
    elif photo == "bomb":
        path.write_bytes(png_header_only(40000, 40000))
    catalog = write_catalog(tmp_path / "world")
    result = runner.invoke(app, ["complete", str(path), "--box", "0,0,8,8", "--catalog", str(catalog),
                                 "--out", str(tmp_path / "out.png")])
    line = one_error_line(result)
    assert ("not found" in line or "No such file" in line) if photo == "missing" else ("image" in line or "large" in line)
    assert str(tmp_path) not in line or photo == "missing"


def test_complete_checks_the_out_extension_before_optimizing(world, tmp_path, monkeypatch):
    import generator.methods.completion as completion

    def no_optimization(*_args, **_kwargs):
        raise AssertionError("the optimization ran before --out was checked")

    monkeypatch.setattr(completion, "complete", no_optimization)
    photo = tmp_path / "scene.jpg"
    Image.new("RGB", (40, 40), (20, 120, 200)).save(photo)
    catalog = write_catalog(tmp_path / "world")
    result = runner.invoke(app, ["complete", str(photo), "--box", "0,0,8,8", "--catalog", str(catalog),
                                 "--out", str(tmp_path / "result.xyz")])
    assert ".xyz" in one_error_line(result)


# ---------------------------------------------------------------------------------------------
# atlas render on a full or read-only disk; non-UTF-8 file names


def failing_writes(monkeypatch, under: Path, code: int) -> None:
    """Every file opened for writing under `under` takes half the bytes, then fails with `code`."""
    real_open = builtins.open

    class HalfThenFail:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            raise OSError(code, os.strerror(code))

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def open_(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and Path(os.fsdecode(file)).resolve().is_relative_to(under.resolve()) \
                and any(m in mode for m in "wxa"):
            return HalfThenFail(handle)
        return handle

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(shutil, "_USE_CP_SENDFILE", False)  # copy through write(), like any other disk


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_render_on_a_full_or_read_only_disk_is_one_error_line_and_leaves_files_whole(world, monkeypatch, code):
    build(world, progress=False)
    render(world.output)
    css = world.output / "static" / "atlas.css"
    (world.output / "static" / "atlas.css").write_text("/* an older stylesheet */\n" * 20)
    before = css.read_bytes()
    failing_writes(monkeypatch, world.output, code)
    result = runner.invoke(app, ["render", "--output", str(world.output)])
    monkeypatch.undo()
    line = one_error_line(result)
    assert ("disk full" in line) if code == errno.ENOSPC else ("writable" in line or "read-only" in line)
    assert css.read_bytes() == before  # the old file, whole: never half a new one
    assert not [p for p in world.output.rglob("*") if store.is_temp(p) or p.suffix == ".tmp"]


def test_a_file_name_that_is_not_utf8_renders(world):
    folder = world.images.root / WNIDS[0]
    first = sorted(folder.iterdir())[0]
    os.rename(os.fsencode(first), os.fsencode(folder) + b"/caf\xe9.jpg")
    report = build(world, progress=False)
    assert report.ok, report.summary()
    render(world.output)
    render(world.output)  # and every later render too
    page = (world.output / "classes" / WNIDS[0] / "index.html").read_text(encoding="utf-8")
    assert "<html" in page.lower()
    assert not [p for p in world.output.rglob("*") if p.suffix == ".tmp" or store.is_temp(p)]
    manifest = json.loads((world.output / "classes" / WNIDS[0] / "manifest.json").read_text(encoding="utf-8"))
    assert "caf\ufffd.jpg" in [image["name"] for image in manifest["images"]]


def test_static_files_are_copied_whole(world):
    build(world, progress=False)
    render(world.output)
    for path in (templates_dir() / "static").rglob("*"):
        if path.is_file():
            assert (world.output / "static" / path.relative_to(templates_dir() / "static")).read_bytes() == path.read_bytes()


# ---------------------------------------------------------------------------------------------
# Catalog files: encodings, alias bombs, model code that exits


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_a_catalog_with_a_byte_order_mark_is_read(world, encoding):
    root = world.output.parent
    path = root / "catalog.yaml"
    path.write_text(catalog_text(root, classes=f"[{{id: {WNIDS[0]}, name: 'Café'}}]"), encoding=encoding)
    assert load_catalog(path).classes[0].name == "Café"


def test_a_latin1_catalog_is_a_clear_error(world):
    root = world.output.parent
    path = root / "catalog.yaml"
    path.write_bytes(catalog_text(root, classes=f"[{{id: {WNIDS[0]}, name: 'Café'}}]").encode("latin-1"))
    with pytest.raises(CatalogError, match="UTF-8"):
        load_catalog(path)
    result = runner.invoke(app, ["list", "--catalog", str(path)])
    assert "UTF-8" in one_error_line(result)


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_labels_files_in_other_encodings(world, encoding):
    root = world.output.parent
    (root / "labels.txt").write_bytes(("\n".join(WNIDS[:2]) + "\ncafé\n").encode(encoding))
    path = write_catalog(root, model=f"{{name: '{root / 'tiny_net.py'}:build', labels: labels.txt, input_size: 32}}",
                         classes=f"[{WNIDS[0]}]")
    if encoding == "utf-16":  # a BOM says what it is: read it
        assert load_catalog(path).model.labels[:2] == list(WNIDS[:2])
    else:
        with pytest.raises(CatalogError, match="model.labels.*UTF-8"):
            load_catalog(path)


def alias_bomb(levels: int = 9) -> str:
    """A YAML flow list whose aliases expand to 9**levels strings ("billion laughs")."""
    items = ["&a0 [" + ", ".join(["lol"] * 9) + "]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


@pytest.mark.parametrize("where", ["labels", "name"])
def test_yaml_alias_bombs_are_refused(world, where):
    root = world.output.parent
    if where == "labels":
        text = catalog_text(root, model=f"{{name: '{root / 'tiny_net.py'}:build', labels: {alias_bomb()}, input_size: 32}}")
    else:
        text = catalog_text(root, classes=f"[{{id: {WNIDS[0]}, name: {alias_bomb()}}}]")
    path = root / "catalog.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError, match="alias|too large"):
        load_catalog(path)


def test_model_code_that_calls_sys_exit_is_a_clear_error(world):
    root = world.output.parent
    (root / "exiting_net.py").write_text("import sys\nsys.exit(3)\n")
    path = write_catalog(root, model=f"{{name: '{root / 'exiting_net.py'}:build', num_classes: 3, "
                                     f"labels: [{', '.join(WNIDS)}], input_size: 32}}")
    result = runner.invoke(app, ["build", "--catalog", str(path)])
    assert result.exit_code in (1, 2), (result.exit_code, result.output)
    assert "sys.exit(3)" in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------
# atlas serve


def test_serve_on_a_port_in_use_or_out_of_range_is_one_error_line(tmp_path):
    (tmp_path / "index.html").write_text("<html></html>")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert "in use" in one_error_line(runner.invoke(app, ["serve", "--output", str(tmp_path), "--port", str(port)]))
    for port in ("70000", "-1"):
        assert "out of range" in one_error_line(runner.invoke(app, ["serve", "--output", str(tmp_path), "--port", port]))


def test_serve_hides_dotfiles_and_lists_no_folders(world):
    build(world, progress=False)
    render(world.output)
    server = make_server(world.output, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(base + path, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        assert status("/index.html") == 200 and status("/") == 200
        assert status(f"/classes/{WNIDS[0]}/manifest.json") == 200
        for hidden in ("/.atlas.lock", "/.atlas-output", f"/{store.CACHE_DIR}/digests.json", "/%2Eatlas.lock",
                       f"/classes/{WNIDS[0]}/{store.LEDGER}", "/classes/", f"/classes/{WNIDS[0]}/classviz/",
                       "/static/"):
            assert status(hidden) == 404, hidden
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------
# Privacy: nothing beside the site names a local path


def test_no_local_path_in_manifests_or_the_digest_cache(world):
    bad = world.images.root / WNIDS[1] / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    world.images.per_class = 4
    build(world, progress=False)
    cache = (world.output / store.CACHE_DIR / "digests.json").read_text()
    assert json.loads(cache) and str(world.output.parent) not in cache
    manifest = (world.output / "classes" / WNIDS[1] / "manifest.json").read_text()
    assert "broken.jpg" in manifest and str(world.output.parent) not in manifest


# ---------------------------------------------------------------------------------------------
# A received atlas folder never makes a command write outside it


@pytest.fixture
def outside(tmp_path) -> Path:
    """A user's folder beside the atlas: nothing in it may change."""
    folder = tmp_path / "outside"
    (folder / "victim").mkdir(parents=True)
    (folder / "thesis.txt").write_text("four years of work")
    (folder / "index.html").write_text("<p>my homepage</p>")
    (folder / "victim" / "index.html").write_text("<p>not the atlas's</p>")
    return folder


@pytest.fixture
def rendered(world) -> Path:
    build(world, progress=False)
    render(world.output)
    return world.output


@pytest.mark.parametrize("layer", ["absolute", "dotdot", "..", "a/b", "pool5\x00", ".hidden", "index.html", "x" * 300])
def test_render_leaves_out_unit_layers_whose_names_would_leave_the_output(rendered, write_fake_units, outside,
                                                                          tree_state, layer):
    manifest = write_fake_units(rendered, pool5=2, fc=4, per_class=1, top_k=1)
    name = {"absolute": str(outside / "victim"),
            "dotdot": os.path.relpath(outside / "victim", rendered / "units")}.get(layer, layer)
    manifest["layers"] = {name: manifest["layers"]["pool5"]}
    (rendered / "units" / "manifest.json").write_text(json.dumps(manifest))
    before, listing = tree_state(outside), sorted(outside.parent.iterdir())
    result = runner.invoke(app, ["render", "--output", str(rendered)])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "units/manifest.json" in warnings[0] and "safe" in warnings[0], result.output
    assert tree_state(outside) == before and sorted(outside.parent.iterdir()) == listing
    assert (rendered / "index.html").is_file() and not (rendered / "units" / "index.html").exists()


@pytest.mark.parametrize("link", ["class-index.tmp", "class-index.js", "index.html", "claims.json", "static",
                                  "static/atlas.css", "class page", "units", "units/pool5"])
def test_render_never_writes_through_a_symlink(rendered, write_fake_units, outside, tree_state, link):
    write_fake_units(rendered, pool5=2, fc=4, per_class=1, top_k=1)
    render(rendered)
    path = rendered / ("classes/" + WNIDS[0] + "/index.html" if link == "class page" else link)
    if path.is_dir():  # a folder of the atlas moved outside, a symlink left in its place, the user's files in it
        shutil.move(path, outside / path.name)
        path.symlink_to(outside / path.name, target_is_directory=True)
        for file in (outside / path.name).rglob("*.*"):
            if file.suffix in (".html", ".css", ".js"):
                file.write_text("the user's own")
    else:
        path.unlink(missing_ok=True)
        path.symlink_to(outside / "thesis.txt")
    before = tree_state(outside)
    result = runner.invoke(app, ["render", "--output", str(rendered)])
    if result.exit_code != 0:
        assert "symlink" in one_error_line(result)
    assert tree_state(outside) == before


@pytest.mark.parametrize("dry_run", [False, True])
def test_build_refuses_a_folder_that_holds_someone_elses_files(world, tree_state, dry_run):
    root = world.output.parent
    docs = root / "docs"
    (docs / "static").mkdir(parents=True)
    for name in ("index.html", "methods.html", "static/atlas.css"):
        (docs / name).write_text(f"the user's {name}")
    before = tree_state(docs)
    result = runner.invoke(app, ["build", "--catalog", str(write_catalog(root, output="docs")),
                                 *(["--dry-run"] if dry_run else [])])
    assert "marker" in one_error_line(result)
    assert tree_state(docs) == before
    world.output = root / "empty"
    world.output.mkdir()
    assert build(world, progress=False).ok  # an empty folder is fine


# ---------------------------------------------------------------------------------------------
# Images that are small on disk and huge in memory, under a 2 GB memory limit

MEMORY_SCRIPT = r'''
import json, resource, sys
from pathlib import Path

import torch  # noqa: F401 (before the limit: its libraries map much address space they never touch)
from typer.testing import CliRunner

from generator.catalog import ImageSpec
from generator.cli import app
from generator.errors import BadImage
from generator.images import class_images, load_image

root = Path(sys.argv[1])
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
limit = int(status["VmSize"].split()[0]) * 1024 + 2 * 2**30  # 2 GB beyond what the imports mapped
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
out = {}
for name in ("wide.png", "tall.png"):
    try:
        out[name] = "loaded %s" % (tuple(load_image(root / name, 224).shape),)
    except BadImage as exc:
        out[name] = "refused: %s" % exc
loaded = class_images(ImageSpec("folder", root / "images"), "strips", 4, 0, 224)
out["class"] = sorted(path for path, _ in loaded.skipped)
out["loaded"] = loaded.names
runner = CliRunner()
for key, args in (("complete", ["complete", str(root / "wide.png"), "--box", "0,0,8,8", "--out", str(root / "out.png"),
                                "--catalog", sys.argv[2]]),
                  ("input_size", ["list", "--catalog", sys.argv[3]])):
    result = runner.invoke(app, args)
    out[key] = [result.exit_code, result.output, repr(result.exception)]
print(json.dumps(out))
'''


def test_strips_and_a_huge_input_size_are_refused_within_2_gb(world):
    import subprocess
    import sys

    root = world.output.parent
    strips = {"wide.png": (200_000, 1), "tall.png": (1, 200_000)}
    (root / "images" / "strips").mkdir()
    for name, size in strips.items():
        Image.new("RGB", size, (200, 30, 30)).save(root / name)  # 661 bytes; resized to 224 on its short side: ~30 GB
        shutil.copy(root / name, root / "images" / "strips" / name)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (60, 40), (20, 120, 200)).save(root / "images" / "strips" / name)
    catalog = write_catalog(root)
    huge = root / "huge.yaml"
    huge.write_text(catalog_text(root, model=f"{{name: '{root / 'tiny_net.py'}:build', num_classes: 3, "
                                             f"labels: [{', '.join(WNIDS)}], input_size: 60000}}"))
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(root), str(catalog), str(huge)],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["wide.png"].startswith("refused: a strip") and out["tall.png"].startswith("refused: a strip"), out
    assert out["class"] == ["strips/tall.png", "strips/wide.png"] and out["loaded"] == ["a.jpg", "b.jpg"]
    for key, word in (("complete", "strip"), ("input_size", "input_size")):
        code, output, exception = out[key]
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and word in errors[0], (key, code, output, exception)


# ---------------------------------------------------------------------------------------------
# Misshapen files in the output: a warning line and the rest of the site, never a traceback

UNITS_MANIFESTS = {
    "layer not a mapping": {"key": "k", "layers": {"pool5": 5}},
    "units not a list": {"key": "k", "layers": {"pool5": {"count": 2, "units": 5}}},
    "a patch not a mapping": {"key": "k", "layers": {"pool5": {"count": 2, "units": [
        {"index": 0, "selectivity": 0.5, "patches": [5]}]}}},
    "selectivity a string": {"key": "k", "layers": {"pool5": {"count": 2, "units": [{"index": 0, "selectivity": "high"}]}}},
    "no count": {"key": "k", "layers": {"pool5": {"units": [{"index": 0, "selectivity": 0.5}]}}},
    "a class not a mapping": {"key": "k", "layers": {}, "classes": [5]},
    "class units not lists": {"key": "k", "layers": {}, "classes": [{"slug": "a", "units": {"pool5": 5}}]},
    "a rank not a number": {"key": "k", "layers": {"pool5": {"count": 1, "units": [
        {"index": 0, "selectivity": 0.5, "patches": [{"rank": "first"}]}]}}},
    "not a mapping": [1, 2],
}


@pytest.mark.parametrize("shape", sorted(UNITS_MANIFESTS))
def test_a_misshapen_units_manifest_is_one_warning(rendered, shape):
    (rendered / "units").mkdir(exist_ok=True)
    (rendered / "units" / "manifest.json").write_text(json.dumps(UNITS_MANIFESTS[shape]))
    result = runner.invoke(app, ["render", "--output", str(rendered)])
    assert result.exit_code == 0 and "Traceback" not in result.output, (result.output, result.exception)
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "units/manifest.json" in warnings[0], result.output
    assert (rendered / "classes" / WNIDS[0] / "index.html").is_file()
    assert "Traceback" not in runner.invoke(app, ["clean", "--catalog", str(write_catalog(rendered.parent))]).output


TRUTHS = {"a list": b"[]", "null": b"null", "styles a number": b'{"styles": 5}', "not JSON": b"{not json",
          "a bad cell": b'{"layouts": {"n01440764": [[1]]}}', "Latin-1": '{"styles": {"caf\xe9": 1}}'.encode("latin-1"),
          "UTF-16": '{"styles": {"a.jpg": 1}}'.encode("utf-16")}


@pytest.mark.parametrize("truth", sorted(TRUTHS))
def test_a_misshapen_truth_file_is_one_warning_in_render_and_one_error_in_the_catalog(rendered, truth):
    (rendered / "truth.json").write_bytes(TRUTHS[truth])
    result = runner.invoke(app, ["render", "--output", str(rendered)])
    assert result.exit_code == 0 and "Traceback" not in result.output, (result.output, result.exception)
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) <= 1 and all("truth.json" in line for line in warnings), result.output
    assert (rendered / "claims.html").is_file()
    root = rendered.parent
    result = runner.invoke(app, ["list", "--catalog", str(write_catalog(root, images=f"{{root: '{root / 'images'}', "
                                                                                      f"truth: '{rendered / 'truth.json'}'}}"))])
    if warnings:
        assert "images.truth" in one_error_line(result)
    else:
        assert result.exit_code == 0, result.output


def test_render_on_a_full_disk_writes_even_the_class_list_atomically(rendered, monkeypatch):
    """The disk fills up just as the class list (the biggest file) is written, through builtins.open
    or io.open (pathlib's)."""
    import io

    real_open = io.open

    def open_(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and "class-index" in os.fsdecode(file) and any(m in mode for m in "wxa"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(file, mode, *args, **kwargs)

    index = rendered / "class-index.js"
    index.write_text("window.ATLAS_INDEX = {};  // an older list\n")
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    result = runner.invoke(app, ["render", "--output", str(rendered)])
    monkeypatch.setattr(builtins, "open", real_open)
    monkeypatch.setattr(io, "open", real_open)
    assert "disk full" in one_error_line(result)
    assert index.read_text() == "window.ATLAS_INDEX = {};  // an older list\n"  # the old list, whole
    assert not [p for p in rendered.rglob("*") if store.is_temp(p) or p.suffix == ".tmp"]


def test_a_folder_named_like_a_temp_file_does_not_break_render(rendered):
    (rendered / "class-index.tmp").mkdir()
    result = runner.invoke(app, ["render", "--output", str(rendered)])
    assert result.exit_code == 0, (result.output, result.exception)


# ---------------------------------------------------------------------------------------------
# Arguments checked before anything is loaded


def nothing_loads(monkeypatch) -> None:
    """Loading a photo or the model fails the test: the arguments must be refused first."""
    import generator.images
    import generator.nets.models

    def refuse(*_args, **_kwargs):
        raise AssertionError("loaded before the arguments were checked")

    monkeypatch.setattr(generator.nets.models, "load_pathway", refuse)
    monkeypatch.setattr(generator.images, "load_image", refuse)


@pytest.mark.parametrize("topic", ["0", "99"])
def test_complete_refuses_a_topic_out_of_range_before_loading_anything(world, tmp_path, monkeypatch, topic):
    nothing_loads(monkeypatch)
    result = runner.invoke(app, ["complete", str(tmp_path / "scene.jpg"), "--box", "0,0,8,8", "--class", WNIDS[0],
                                 "--topic", topic, "--catalog", str(write_catalog(tmp_path / "world")),
                                 "--out", str(tmp_path / "out.png")])
    assert "--topic" in one_error_line(result)


def test_complete_with_fewer_class_images_than_topics_is_one_error_line(world, tmp_path, monkeypatch):
    import generator.methods.completion as completion

    monkeypatch.setattr(completion, "complete", lambda *_a, **_k: pytest.fail("optimized without its topic"))
    photo = tmp_path / "scene.jpg"
    Image.new("RGB", (40, 40), (20, 120, 200)).save(photo)
    catalog = write_catalog(tmp_path / "world", methods="{topics: {k: 5}}")  # the class has 3 images
    result = runner.invoke(app, ["complete", str(photo), "--box", "0,0,8,8", "--class", WNIDS[0], "--topic", "1",
                                 "--catalog", str(catalog), "--out", str(tmp_path / "out.png")])
    assert "need at least 5 images" in one_error_line(result)


@pytest.mark.parametrize("seed", ["--seed -1", "--seed 4294967296", "catalog 1.0e+23", "catalog -5"])
def test_a_seed_out_of_range_is_refused_before_the_model_loads(world, monkeypatch, seed):
    nothing_loads(monkeypatch)
    where, value = seed.split(" ")
    root = world.output.parent
    catalog = write_catalog(root, seed=value) if where == "catalog" else write_catalog(root)
    result = runner.invoke(app, ["build", "--catalog", str(catalog), *([where, value] if where == "--seed" else [])])
    assert "seed" in one_error_line(result)


def test_a_symlink_loop_in_a_class_folder_is_not_an_image(world):
    os.symlink("loop.jpg", world.images.root / WNIDS[0] / "loop.jpg")
    report = build(world, progress=False)
    assert report.ok, report.summary()


def test_list_counts_an_unreadable_folder_and_a_name_too_long_as_no_images(world, monkeypatch):
    locked = world.images.root / WNIDS[1]
    locked.chmod(0)
    real_scandir = os.scandir

    def scandir(path="."):  # root reads a folder of mode 000 anyway: refuse it here as the kernel would
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    root = world.output.parent
    long = "x" * 300
    catalog = write_catalog(root, model=f"{{name: '{root / 'tiny_net.py'}:build', num_classes: 4, "
                                       f"labels: [{', '.join(WNIDS)}, {long}], input_size: 32}}",
                            classes=f"[{WNIDS[0]}, {WNIDS[1]}, {long}]")
    result = runner.invoke(app, ["list", "--catalog", str(catalog)])
    locked.chmod(0o755)
    assert result.exit_code == 0, (result.output, result.exception)
    counts = {line.split()[0]: line.split()[-1] for line in result.output.splitlines()[1:4]}
    assert counts == {WNIDS[0]: "3", WNIDS[1]: "0", long: "0"}


# ---------------------------------------------------------------------------------------------
# Nothing blocks on a FIFO; nothing is silent


def test_fifos_fail_or_are_skipped_instead_of_blocking(rendered, world, tmp_path, deadline):
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    with deadline(60):
        result = runner.invoke(app, ["complete", str(fifo), "--box", "0,0,8,8", "--out", str(tmp_path / "out.png"),
                                     "--catalog", str(write_catalog(tmp_path / "world"))])
        assert "regular file" in one_error_line(result)
        (rendered / "units").mkdir(exist_ok=True)
        os.mkfifo(rendered / "units" / "manifest.json")
        result = runner.invoke(app, ["render", "--output", str(rendered)])
        assert result.exit_code == 0 and "units/manifest.json" in result.output, (result.output, result.exception)
        digests = rendered / store.CACHE_DIR / "digests.json"
        digests.unlink()
        os.mkfifo(digests)
        assert build(world, dry_run=True, progress=False).ok
        assert build(world, force=True, progress=False).ok
        ledger = rendered / "classes" / WNIDS[0] / store.LEDGER
        ledger.unlink()
        os.mkfifo(ledger)
        clean(world)
        report = build(world, force=True, progress=False)
    assert [(c, m) for c, m, _ in report.failed] == [(WNIDS[0], None)] and "regular file" in report.failed[0][2]


def test_a_model_with_nan_outputs_fails_its_classes_by_name(world):
    import torch

    weights = Path(world.model.weights)
    torch.save({name: torch.full_like(value, float("nan")) for name, value in torch.load(weights).items()}, weights)
    report = build(world, progress=False)
    assert sorted(c for c, _, _ in report.failed) == sorted(WNIDS), report.summary()
    assert all("NaN" in message for _, _, message in report.failed)
    assert not list((world.output / "classes").glob("*/classviz/*.png"))  # no grey pictures


def test_the_ledger_lists_only_files_a_build_wrote(world):
    build(world, progress=False)
    notes = {}
    for wnid in (WNIDS[0], WNIDS[2]):  # one rebuilt with --force, one left out of the catalog
        folder = world.output / "classes" / wnid
        notes[wnid] = folder / "lecture_notes.md"
        notes[wnid].write_text("mine")
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["methods"]["topics"]["pictures"][0]["file"] = "lecture_notes.md"
        (folder / "manifest.json").write_text(json.dumps(manifest))
    world.classes = [entry for entry in world.classes if entry.id != WNIDS[2]]
    build(world, force=True, progress=False)
    assert "lecture_notes.md" not in store.ledger(world.output / "classes" / WNIDS[0])
    clean(world)
    assert all(path.read_text() == "mine" for path in notes.values())


def test_ray_with_an_address_nobody_answers_fails_in_seconds(world, monkeypatch):
    import generator.build.executors as executors

    monkeypatch.setattr(executors, "import_ray", lambda: pytest.fail("Ray was started before the address was checked"))
    timeouts = []
    real_connect = socket.create_connection

    def connect(address, timeout=None, *args, **kwargs):
        timeouts.append(timeout)
        return real_connect(address, timeout, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", connect)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = runner.invoke(app, ["build", "--catalog", str(write_catalog(world.output.parent)), "--executor", "ray",
                                 "--address", f"127.0.0.1:{port}"])
    assert "cannot reach a Ray cluster" in one_error_line(result)
    assert timeouts and all(t is not None and t <= 10 for t in timeouts)


def test_ray_giving_up_is_one_error_line_that_names_ray(world, monkeypatch):
    import sys
    import types

    import generator.build.executors as executors

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=lambda **_: sys.exit(15), shutdown=lambda: None)
    monkeypatch.setattr(executors, "import_ray", lambda: fake)
    result = runner.invoke(app, ["build", "--catalog", str(write_catalog(world.output.parent)), "--executor", "ray"])
    assert "cannot start or join a Ray cluster" in one_error_line(result)
