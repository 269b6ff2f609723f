"""`atlas clean` deletes what the atlas wrote and no longer needs, and never a user's file.

An output folder is shared with its user: these tests put a folder of notes, a picture in a
class's images/ and a symlink to a folder outside into a built atlas, run clean, and check
every one of those files is still there while the atlas's own stale files are gone.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from generator import store
from generator.build import build, clean
from generator.catalog import CatalogError, load_catalog
from generator.cli import app

WNIDS = ("n01440764", "n02102040", "n02979186")  # the tiny world's classes (the `wnids` fixture)


@pytest.fixture
def world(tiny_world, wnids):
    assert wnids == WNIDS
    return tiny_world


def user_files(world, outside: Path) -> list[Path]:
    """A user's folder, a user's file in a class's images/ and a symlinked folder outside."""
    classes = world.output / "classes"
    notes = classes / "lecture-notes" / "week1.md"
    notes.parent.mkdir(parents=True)
    notes.write_text("my notes")
    mine = classes / WNIDS[0] / "images" / "my-photo.jpg"
    mine.write_bytes(b"not the atlas's")
    outside.mkdir()
    thesis = outside / "chapter1.tex"
    thesis.write_text("\\chapter{One}")
    (outside / "results.png").write_bytes(b"png")
    # A symlink where the atlas once wrote its own pictures: the ledger names files "inside" it.
    topics = classes / WNIDS[1] / "topics"
    manifest = json.loads((classes / WNIDS[1] / "manifest.json").read_text())
    for picture in manifest["methods"]["topics"]["pictures"]:
        (outside / Path(picture["file"]).name).write_bytes(b"the user's, not the atlas's")
    topics.rename(classes / WNIDS[1] / "topics-old")
    topics.symlink_to(outside, target_is_directory=True)
    (classes / WNIDS[2] / "inversion").symlink_to(outside, target_is_directory=True)
    return [notes, mine, thesis, outside / "results.png", *sorted(outside.iterdir())]


def test_clean_keeps_every_user_file_and_removes_the_atlas_stale_ones(world, tmp_path):
    build(world, progress=False)
    folder = world.output / "classes" / WNIDS[0]
    old = {p.name for p in (folder / "topics").iterdir()}
    for entry in world.classes:
        entry.methods["topics"]["k"] = 1
    build(world, progress=False)
    keep = user_files(world, tmp_path / "thesis")
    contents = {path: path.read_bytes() for path in keep}
    world.classes.pop()  # a class leaves the catalog: its atlas files go, its user files stay

    removed = clean(world)

    for path, data in contents.items():
        assert path.is_file() and path.read_bytes() == data, path
    assert (world.output / "classes" / WNIDS[2] / "inversion").is_symlink()
    assert not (world.output / "classes" / WNIDS[2] / "manifest.json").exists()
    assert not (world.output / "classes" / WNIDS[2] / "classviz").exists()
    left = {p.name for p in (folder / "topics").iterdir()}
    assert len(left) == 2 and not (left & old)  # one picture + its thumbnail, all from the new key
    assert set(removed) >= {folder / "topics" / name for name in old}
    assert all(path.resolve().is_relative_to(world.output.resolve()) for path in removed)
    assert (folder / "images" / "my-photo.jpg").is_file()


def test_clean_refuses_a_folder_the_atlas_did_not_mark(world, tmp_path):
    world.output = tmp_path / "not-an-atlas"
    (world.output / "classes" / WNIDS[0] / "topics").mkdir(parents=True)
    precious = world.output / "classes" / WNIDS[0] / "topics" / "essay.txt"
    precious.write_text("mine")
    with pytest.raises(store.StoreError, match="marker"):
        clean(world)
    assert precious.read_text() == "mine"


def test_clean_dry_run_lists_and_deletes_nothing(world):
    build(world, progress=False)
    for entry in world.classes:
        entry.methods["topics"]["k"] = 1
    build(world, progress=False)
    before = sorted(p for p in world.output.rglob("*"))
    planned = clean(world, dry_run=True)
    assert planned and sorted(p for p in world.output.rglob("*")) == before
    assert sorted(clean(world)) == sorted(planned)


def write_catalog(root: Path, output: str) -> Path:
    path = root / "catalog.yaml"
    path.write_text(f"model: {{name: '{root / 'tiny_net.py'}:build', num_classes: 3, "
                    f"labels: [{', '.join(WNIDS)}], input_size: 32}}\n"
                    f"images: {{root: '{root / 'images'}'}}\n"
                    f"classes: [{WNIDS[0]}]\n"
                    f"output: {output}\n")
    return path


@pytest.mark.parametrize("output", ["/", "'~'", "'~/'", "''", "/.."])
def test_root_and_home_are_refused_as_output(world, output):
    path = write_catalog(world.output.parent, output)
    with pytest.raises(CatalogError, match="output"):
        load_catalog(path)


def test_home_given_by_path_is_refused(world):
    path = write_catalog(world.output.parent, f"'{Path.home()}'")
    with pytest.raises(CatalogError, match="home"):
        load_catalog(path)


def test_cli_clean_without_marker_is_one_error_line_and_dry_run_says_would(world):
    path = write_catalog(world.output.parent, "site")
    (world.output / "classes" / WNIDS[0]).mkdir(parents=True)
    runner = CliRunner()
    result = runner.invoke(app, ["clean", "--catalog", str(path)])
    assert result.exit_code == 2
    assert result.output.count("error:") == 1 and "marker" in result.output and "Traceback" not in result.output
    build(world, progress=False)
    for entry in world.classes:
        entry.methods["topics"]["k"] = 1
    build(world, progress=False)
    result = runner.invoke(app, ["clean", "--catalog", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would remove" in result.output
    result = runner.invoke(app, ["clean", "--catalog", str(path), "--output", "/"])
    assert result.exit_code == 2 and "filesystem root" in result.output
