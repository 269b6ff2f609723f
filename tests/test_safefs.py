"""The safety primitives every read and write of an atlas folder goes through (generator/safefs.py)."""
from __future__ import annotations

import os

import pytest

from generator import safefs


@pytest.mark.parametrize("name", ["pool5", "fc7", "conv1-abc.png", "a_b.c-d", "0"])
def test_plain_names_pass(name):
    assert safefs.check_name(name) == name and safefs.is_safe_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "/abs", "a\\b", "nul\x00", "%2f..", "x" * 129,
                                  "caf\u00e9", 5, None])
def test_names_that_could_leave_a_folder_are_refused(name):
    assert not safefs.is_safe_name(name)
    with pytest.raises(safefs.UnsafePathError, match="layer"):
        safefs.check_name(name, "layer")


def test_inside_resolves_symlinks_and_dotdot(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "out").symlink_to(elsewhere, target_is_directory=True)
    (root / "in").symlink_to(root / "sub", target_is_directory=True)
    assert safefs.inside(root, root / "sub" / "new" / "file") == root / "sub" / "new" / "file"
    assert safefs.inside(root, root / "in" / "file")  # a link that stays inside is fine
    for path in (root / "out" / "file", root / ".." / "elsewhere" / "file", tmp_path / "rootless"):
        with pytest.raises(safefs.UnsafePathError, match="outside"):
            safefs.inside(root, path)


def test_atomic_write_never_follows_a_symlink(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    thesis = elsewhere / "thesis.txt"
    thesis.write_text("mine")
    (root / "page.html").symlink_to(thesis)
    (root / "static").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(safefs.UnsafePathError, match="symlink"):
        safefs.atomic_write(root / "page.html", b"new")
    with pytest.raises(safefs.UnsafePathError, match="outside"):
        safefs.atomic_write(root / "static" / "atlas.css", b"new", root=root)
    with pytest.raises(safefs.UnsafePathError, match="symlink"):
        safefs.write_if_changed(root / "page.html", b"new", root=root)
    assert thesis.read_text() == "mine" and sorted(p.name for p in elsewhere.iterdir()) == ["thesis.txt"]
    safefs.atomic_write(root / "a" / "b.txt", b"made", root=root)
    assert (root / "a" / "b.txt").read_bytes() == b"made"
    assert [p.name for p in (root / "a").iterdir()] == ["b.txt"]  # no temp left


def test_fifos_are_refused_at_once(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        safefs.read_regular(fifo)
    with pytest.raises(safefs.StoreError, match="not a regular file"):
        safefs.append(fifo, b"line\n")
    (tmp_path / "file").write_bytes(b"0123456789")
    assert safefs.read_regular(tmp_path / "file") == b"0123456789"
    with pytest.raises(OSError, match="larger than 4"):
        safefs.read_regular(tmp_path / "file", max_bytes=4)
    (tmp_path / "link").symlink_to(tmp_path / "file")
    with pytest.raises(OSError):
        safefs.read_regular(tmp_path / "link", follow=False)
