"""Image sources: layout, deterministic choice, odd formats converted, bad files skipped."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generator.catalog import ImageSpec
from generator.images import ImageSourceError, class_images, count_images, load_image, source_root
from generator.store import to_pil

WNID = "n03028079"


def rgb(seed: int, size=(40, 30)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def folder(tmp_path) -> Path:
    """A class folder with 6 good images of mixed extensions and formats, plus junk."""
    cls = tmp_path / "root" / WNID
    cls.mkdir(parents=True)
    rgb(0).save(cls / "a.JPG")
    rgb(1).save(cls / "b.jpeg")
    rgb(2).save(cls / "c.PNG")
    rgb(3).convert("CMYK").save(cls / "d_cmyk.jpg")
    Image.fromarray((np.arange(30 * 40).reshape(30, 40) * 50).astype(np.uint16)).save(cls / "e_16bit.png")
    palette = rgb(5).convert("P")
    palette.info["transparency"] = 0
    palette.save(cls / "f_palette.png", transparency=0)
    (cls / "notes.txt").write_text("not an image, wrong extension: ignored")
    return cls


def add_bad_files(cls: Path) -> None:
    (cls / "html.jpg").write_text("<html>404 not found</html>")
    (cls / "empty.jpeg").write_bytes(b"")
    good = cls / "a.JPG"
    (cls / "truncated.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])


def spec(folder: Path) -> ImageSpec:
    return ImageSpec("folder", folder.parent, per_class=50)


def test_every_extension_case_and_format_loads(folder):
    loaded = class_images(spec(folder), WNID, n=50, seed=0, size=24)
    assert loaded.names == ["a.JPG", "b.jpeg", "c.PNG", "d_cmyk.jpg", "e_16bit.png", "f_palette.png"]
    assert loaded.images.shape == (6, 3, 24, 24) and loaded.images.dtype == torch.float32
    assert 0 <= loaded.images.min() and loaded.images.max() <= 1
    assert loaded.skipped == []
    grey = loaded.images[4]
    assert torch.allclose(grey[0], grey[1]) and grey.max() > 0.5  # 16-bit scaled, not clipped to white/black
    assert count_images(spec(folder), WNID) == 6


def test_choice_is_deterministic_and_seeded(folder):
    first = class_images(spec(folder), WNID, n=3, seed=0, size=16)
    again = class_images(spec(folder), WNID, n=3, seed=0, size=16)
    assert first.names == again.names and torch.equal(first.images, again.images)
    choices = {tuple(class_images(spec(folder), WNID, n=3, seed=s, size=16).names) for s in range(6)}
    assert len(choices) > 1
    assert all(list(c) == sorted(c) for c in choices)  # chosen by seed, shown in file order


def test_bad_files_are_skipped_and_counted(folder, monkeypatch):
    add_bad_files(folder)
    bomb = folder / "bomb.png"
    rgb(9, size=(200, 200)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # bomb.png (40k pixels) now counts as a bomb
    loaded = class_images(spec(folder), WNID, n=50, seed=0, size=16)
    skipped = {Path(path).name: reason for path, reason in loaded.skipped}
    assert set(skipped) == {"html.jpg", "empty.jpeg", "truncated.jpg", "bomb.png"}
    assert "not an image" in skipped["html.jpg"] and "decompression bomb" in skipped["bomb.png"]
    assert len(loaded.names) == 6  # every good file still used


def test_bad_files_are_replaced_to_reach_n(folder):
    add_bad_files(folder)
    for seed in range(4):
        loaded = class_images(spec(folder), WNID, n=5, seed=seed, size=16)
        assert len(loaded.names) == 5 and not {"html.jpg", "empty.jpeg", "truncated.jpg"} & set(loaded.names)


def test_resize_shorter_side_then_centre_crop(tmp_path):
    image = np.zeros((20, 60, 3), dtype=np.uint8)
    image[:, 20:40] = 255  # a white middle third: after the crop, the whole square is white
    Image.fromarray(image).save(tmp_path / "wide.png")
    tensor = load_image(tmp_path / "wide.png", 20)
    assert tensor.shape == (3, 20, 20) and tensor.min() > 0.99


def test_missing_or_empty_class_folder_is_a_clear_error(folder):
    with pytest.raises(ImageSourceError, match=r"class folder .*n01440764 not found"):
        class_images(spec(folder), "n01440764", n=1, seed=0, size=16)
    (folder.parent / "n01440764").mkdir()
    with pytest.raises(ImageSourceError, match=r"n01440764 has no .jpg/.jpeg/.png images"):
        class_images(spec(folder), "n01440764", n=1, seed=0, size=16)
    with pytest.raises(ImageSourceError, match="image folder .* not found"):
        source_root(ImageSpec("folder", folder / "nope"))


def test_imagenette_offline_is_one_clear_error(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    imagenette = ImageSpec("imagenette", tmp_path / "cache")
    assert count_images(imagenette, WNID) == 0  # counting never downloads
    with pytest.raises(ImageSourceError) as info:
        class_images(imagenette, WNID, n=1, seed=0, size=16)
    message = str(info.value)
    assert "downloading Imagenette" in message and "needs network access" in message and "--images" in message


def test_to_pil_round_trip():
    image = torch.rand(3, 32, 48)
    thumb = to_pil(image)
    thumb.thumbnail((24, 24))
    assert thumb.size == (24, 16) and thumb.mode == "RGB"
    full = np.asarray(to_pil(image), dtype=np.float32) / 255
    assert np.abs(full - image.permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6


def test_the_selection_key_reads_the_files_the_seeded_order_can_choose(tmp_path, monkeypatch):
    from generator import images
    from generator.images import SELECTION_MARGIN, seeded_order, selection_key
    from generator.store import FileDigests

    folder = tmp_path / "n0"
    folder.mkdir()
    files = [folder / f"{i:02d}.jpg" for i in range(30)]
    for i, path in enumerate(files):
        path.write_bytes(bytes([i]) * 100)
    digests = FileDigests(tmp_path / "digests.json")
    read: list[str] = []
    sha256 = digests.sha256
    monkeypatch.setattr(digests, "sha256", lambda path: read.append(path.name) or sha256(path))

    key = selection_key(folder, "n0", 2, 0, digests)
    reachable = {files[i].name for i in seeded_order(30, "n0", 0)[: 2 + SELECTION_MARGIN]}
    assert set(read) == reachable  # the first n of the order and the margin: no other file is read
    monkeypatch.setattr(images, "seeded_order", None)  # the order is remembered: no torch on the next build
    assert selection_key(folder, "n0", 2, 0, digests) == key
    unreachable = next(p for p in files if p.name not in reachable)
    unreachable.write_bytes(b"x" * 100)  # same size, another content, never chosen
    assert selection_key(folder, "n0", 2, 0, digests) == key
    first = next(p for p in files if p.name in reachable)
    first.write_bytes(b"y" * 100)  # a choosable file's content
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9))
    assert selection_key(folder, "n0", 2, 0, digests) != key
    assert selection_key(tmp_path / "missing", "n0", 2, 0, digests) != selection_key(tmp_path / "other", "n0", 2, 0, digests)
