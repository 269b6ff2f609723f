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
from generator.build import build
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
