"""Bad inputs give one clear message and cost only what they touch (DESIGN.md "Rules").

Each test breaks one thing in the tiny world of helpers.py and asserts both the message
and that the other classes were still built. Image files: broken ones are skipped and named,
odd-but-valid ones (CMYK, grey, 16-bit, palette with transparency) load like any other.
"""
from __future__ import annotations

import errno
import io
import json
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator import safefs, store
from generator.build import build


@pytest.fixture
def world(tiny_world):
    return tiny_world


def built(catalog, wnid: str) -> dict | None:
    path = catalog.output / "classes" / wnid / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def assert_others_built(catalog, report, broken: str) -> None:
    for wnid in (entry.id for entry in catalog.classes):
        if wnid != broken:
            manifest = built(catalog, wnid)
            assert manifest is not None and list(manifest["methods"]) == ["classviz", "topics"], report.summary()
            for record in manifest["methods"].values():
                for picture in record["pictures"]:
                    assert (catalog.output / "classes" / wnid / picture["file"]).is_file()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels but holds none: a decompression bomb's calling card."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


def jpeg_bytes(mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (40, 40), (10, 200, 30) if mode == "RGB" else (10, 20, 30, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


BROKEN_FILES = {
    "truncated.JPEG": (lambda: jpeg_bytes()[:200], "unreadable"),
    "page.jpg": (lambda: b"<html><body>404 not found</body></html>", "not an image"),
    "bomb.png": (lambda: png_header_only(30000, 30000), "decompression bomb"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_FILES))
def test_a_broken_image_is_skipped_and_named(wnids, world, name):
    make, reason = BROKEN_FILES[name]
    folder = world.images.root / wnids[1]
    (folder / name).write_bytes(make())
    world.images.per_class = 4  # ask for every file, so the broken one is always tried
    report = build(world, progress=False)
    assert report.ok, report.summary()
    skipped = [(Path(path).name, why) for c, path, why in report.images_skipped if c == wnids[1]]
    assert len(skipped) == 1 and skipped[0][0] == name and reason in skipped[0][1]
    assert f"{name}: " in report.summary()
    manifest = built(world, wnids[1])
    assert [s["path"] for s in manifest["skipped_images"]] == [f"{wnids[1]}/{name}"]  # relative to the images root: no local path published
    assert name not in [image["name"] for image in manifest["images"]] and len(manifest["images"]) == 3
    assert_others_built(world, report, wnids[1])


def _odd_but_valid(folder: Path) -> list[str]:
    Image.new("CMYK", (40, 40), (10, 20, 30, 40)).save(folder / "cmyk.jpg", format="JPEG")
    Image.new("L", (40, 40), 128).save(folder / "grey.png")
    Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16)).save(folder / "deep.png")
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.info["transparency"] = 0
    palette.save(folder / "palette.png", transparency=0)
    return ["cmyk.jpg", "deep.png", "grey.png", "palette.png"]


def test_cmyk_grey_16bit_and_palette_images_load(wnids, world):
    folder = world.images.root / wnids[0]
    names = _odd_but_valid(folder)
    for old in folder.glob("*.JPEG"):
        old.unlink()
    world.images.per_class = 4
    report = build(world, progress=False)
    assert report.ok and report.images_skipped == [], report.summary()
    manifest = built(world, wnids[0])
    assert sorted(image["name"] for image in manifest["images"]) == names
    for image in manifest["images"]:
        assert Image.open(world.output / "classes" / wnids[0] / image["thumb"]).mode == "RGB"
    with Image.open(world.output / "classes" / wnids[0] / manifest["images"][1]["thumb"]) as deep:  # 16-bit 40000
        assert abs(np.asarray(deep, dtype=float).mean() - 40000 / 65535 * 255) < 3
    assert_others_built(world, report, wnids[0])


def test_an_empty_class_folder_fails_that_class_only(wnids, world):
    for path in (world.images.root / wnids[2]).iterdir():
        path.unlink()
    report = build(world, progress=False)
    assert not report.ok
    assert [(c, m) for c, m, _ in report.failed] == [(wnids[2], None)]
    assert "has no .jpg/.jpeg/.png images" in report.failed[0][2]
    assert built(world, wnids[2]) is None
    assert_others_built(world, report, wnids[2])


def test_a_missing_class_folder_fails_that_class_only(wnids, world):
    folder = world.images.root / wnids[0]
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    report = build(world, progress=False)
    assert [(c, m) for c, m, _ in report.failed] == [(wnids[0], None)]
    assert f"class folder {folder} not found" in report.failed[0][2]
    assert_others_built(world, report, wnids[0])
    assert "failed:" in report.summary() and "not found" in report.summary()


def test_weights_of_another_architecture_are_named(wnids, world):
    torch.save({"features.0.weight": torch.zeros(8, 3, 5, 5)}, world.model.weights)
    report = build(world, progress=False)
    assert not report.ok and report.ran == []
    assert {c for c, _, _ in report.failed} == set(wnids)
    message = report.failed[0][2]
    assert "another architecture" in message and "features.0.weight (8, 3, 5, 5) vs (4, 3, 3, 3)" in message


class Payload:
    """An arbitrary object: torch.load(weights_only=True) must refuse to build it."""


def test_a_pickle_of_arbitrary_objects_is_refused(world):
    with open(world.model.weights, "wb") as handle:
        pickle.dump({"model": Payload(), "note": "not a state_dict"}, handle, protocol=2)
    report = build(world, progress=False)
    assert not report.ok and report.ran == []
    assert "weights_only=True" in report.failed[0][2] and "refused" in report.failed[0][2]


def test_an_output_folder_that_cannot_be_created_is_a_clear_error(world, tmp_path):
    (tmp_path / "a-file").write_text("")
    world.output = tmp_path / "a-file" / "site"
    with pytest.raises(store.StoreError, match="cannot write to the output folder .*a-file/site: a file is in the way"):
        build(world, progress=False)


def test_a_full_disk_fails_one_class_without_half_written_files(wnids, world, monkeypatch):
    real_open = open

    class FullDisk(io.BufferedWriter):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def open_on_a_full_disk(path, mode="r", *args, **kwargs):
        if f"/{wnids[1]}/" in str(path) and any(m in mode for m in "wx"):
            return FullDisk(io.FileIO(path, mode))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(safefs, "open", open_on_a_full_disk, raising=False)
    report = build(world, progress=False)
    assert [(c, m) for c, m, _ in report.failed] == [(wnids[1], None)]
    assert "no space left on device (disk full)" in report.failed[0][2]
    assert_others_built(world, report, wnids[1])
    folder = world.output / "classes" / wnids[1]
    assert not [p for p in folder.rglob("*") if p.is_file() and p.name != store.LEDGER]  # nothing half-written, no temp files
    monkeypatch.delattr(safefs, "open")  # the disk has room again
    assert build(world, progress=False).ran == [(wnids[1], "classviz"), (wnids[1], "topics")]
