"""A class's own images: where they come from, how they become tensors, what we skip.

Three sources share one layout, an ImageNet-style folder `<root>/<class id>/*.{jpg,jpeg,png}`:
a user's folder, Imagenette (downloaded by torchvision on first use; its folders are already
wnids) and the offline demo world. Real photo collections hold CMYK JPEGs, 16-bit PNGs,
truncated downloads and HTML pages saved as .jpg; such a file is skipped and recorded with
its reason, never fatal, so one bad file does not cost a class.
"""
from __future__ import annotations

import os
import socket
import urllib.error
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps

from generator import safefs
from generator.catalog import ImageSpec
from generator.errors import BadImage, ImageSourceError
from generator.store import digest

if TYPE_CHECKING:  # torch is imported where a tensor is made: `atlas list` only counts files
    from torch import Tensor

    from generator.store import FileDigests

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
MAX_ASPECT = 50  # a longer side over 50x the shorter one is a strip, not a photo: its resize would be huge
MAX_RESIZED_PIXELS = 2**25  # 32 M pixels (~100 MB as RGB) for the resized image, before its centre crop
IMAGENETTE_SIZE = "320px"  # torchvision's smaller Imagenette archive (~330 MB): plenty for 224 crops
DOWNLOAD_TIMEOUT_S = 30



@dataclass
class LoadedImages:
    images: Tensor  # (N, 3, S, S) in [0, 1]
    names: list[str]  # file names, same order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (<class id>/<file name>, reason)


def source_root(spec: ImageSpec, download: bool = True) -> Path:
    """The ImageNet-layout folder of the source (downloading Imagenette if asked and needed)."""
    if spec.source == "folder":
        if spec.root is None or not spec.root.is_dir():
            raise ImageSourceError(f"image folder {spec.root} not found (images.root / --images)")
        return spec.root
    if spec.source == "demo":
        from generator.demo import ensure_demo

        return Path(ensure_demo().image_root)
    if spec.source == "imagenette":
        return _imagenette_root(spec, download)
    raise ImageSourceError(f"unknown image source {spec.source!r}")


def _imagenette_root(spec: ImageSpec, download: bool) -> Path:
    root = Path(spec.root or "~/.cache/atlas/imagenette").expanduser()
    folder = root / f"imagenette2-{IMAGENETTE_SIZE}" / spec.split
    if folder.is_dir() or not download:
        return folder
    import torchvision.datasets

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        root.mkdir(parents=True, exist_ok=True)
        torchvision.datasets.Imagenette(str(root), split=spec.split, size=IMAGENETTE_SIZE, download=True)
    except (urllib.error.URLError, ConnectionError, TimeoutError, socket.error, RuntimeError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ImageSourceError(
            f"downloading Imagenette into {root} failed ({reason}): the first use needs network access. "
            "Offline, point the catalog at a local ImageNet-layout folder (<root>/<wnid>/*.JPEG): "
            "images: {source: folder, root: /path/to/imagenette/train}, or --images /path/to/folder"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    if not folder.is_dir():
        raise ImageSourceError(f"Imagenette download finished but {folder} is missing; delete {root} and retry")
    return folder


def printable(name: str) -> str:
    """A file name as valid UTF-8 text (a Latin-1 `caf\xe9.jpg` keeps a U+FFFD for its byte)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def image_files(folder: Path) -> list[Path]:
    """Image files of one class folder, sorted by name (extensions in any case); a symlink loop
    or a FIFO is not one."""
    with os.scandir(folder) as entries:  # the file type from the listing: no stat a file (10,000 classes in `atlas list`)
        return sorted(Path(e.path) for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS) and _is_file(e))


def _is_file(entry: os.DirEntry[str]) -> bool:
    """Whether a listed name is a file (through a symlink); a symlink loop is not one."""
    try:
        return entry.is_file()
    except OSError:
        return False


def class_folder(spec: ImageSpec, class_id: str, download: bool = True) -> Path:
    return source_root(spec, download) / class_id


def count_images(spec: ImageSpec, class_id: str) -> int:
    """How many image files a class has (0 when its folder, or an undownloaded Imagenette, is
    missing or cannot be read: no permission, a name too long for the file system)."""
    folder = class_folder(spec, class_id, download=False)
    try:
        return len(image_files(folder)) if folder.is_dir() else 0
    except OSError:
        return 0


# Files past a class's first n in its seeded order that can still be chosen (each unreadable file
# among the first n hands its place to the next): their contents are part of a class's images key.
SELECTION_MARGIN = 8


def seeded_order(count: int, class_id: str, seed: int) -> list[int]:
    """The order in which a class's sorted files are tried: one permutation per (seed, class)."""
    import torch

    generator = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(class_id.encode())) % (2**63))
    return torch.randperm(count, generator=generator).tolist()


def selection_key(folder: Path, class_id: str, n: int, seed: int, digests: FileDigests) -> dict[str, Any]:
    """What decides a class's images without decoding any: its image files' names and sizes, and the
    contents of the ones its seeded order can choose (sha256, cached by size and mtime in `digests`,
    which also keeps the order, so a no-op build needs no torch). Not the files' mtimes: a copied
    dataset is the same images."""
    try:
        files = image_files(folder)
    except FileNotFoundError:
        return {"missing": str(folder)}
    except NotADirectoryError:
        return {"not a folder": str(folder)}
    sizes = []
    for path in files:
        try:
            sizes.append([printable(path.name), path.stat().st_size])
        except OSError:
            sizes.append([printable(path.name), None])
    order_key = digest([sizes, class_id, seed, n])[:32]
    reachable = digests.remembered(order_key, lambda: seeded_order(len(files), class_id, seed)[: n + SELECTION_MARGIN])
    contents = {}
    for i in sorted(reachable):
        try:
            contents[printable(files[i].name)] = digests.sha256(files[i])
        except OSError as exc:  # unreadable: the build will say so; its key says what it met
            contents[printable(files[i].name)] = f"unreadable: {exc.strerror}"
    return {"files": sizes, "contents": contents}


def class_images(spec: ImageSpec, class_id: str, n: int, seed: int, size: int) -> LoadedImages:
    """n images of a class, chosen deterministically by `seed` from its sorted files.

    Bad files are skipped (and recorded) and the next files of the seeded order take their
    place, so a class still gets n images when it has n good ones. The result keeps file order.
    """
    folder = class_folder(spec, class_id)
    if not folder.is_dir():
        raise ImageSourceError(f"class folder {folder} not found (expected <images.root>/{class_id}/*.JPEG)")
    files = image_files(folder)
    if not files:
        raise ImageSourceError(f"class folder {folder} has no .jpg/.jpeg/.png images")
    import torch

    order = seeded_order(len(files), class_id, seed)
    chosen: dict[int, Tensor] = {}
    skipped: list[tuple[str, str]] = []
    for i in order:
        if len(chosen) == n:
            break
        try:
            chosen[i] = load_image(files[i], size)
        except BadImage as exc:  # recorded relative to the images root: no local path is published
            skipped.append((f"{class_id}/{printable(files[i].name)}", str(exc)))
    if not chosen:
        raise ImageSourceError(f"class folder {folder}: none of its {len(files)} files could be read "
                               f"(first problem: {skipped[0][1]})")
    keep = sorted(chosen)
    return LoadedImages(images=torch.stack([chosen[i] for i in keep]), names=[printable(files[i].name) for i in keep],
                        skipped=skipped)



def load_image(path: Path, size: int) -> Tensor:
    """(3, size, size) in [0, 1]: decode, convert to RGB, resize the shorter side, centre-crop."""
    try:
        with warnings.catch_warnings(), safefs.open_regular(path) as handle:  # a FIFO fails at once
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(handle) as image:
                check_size(image.size, size)  # before decoding: a 200000 x 1 strip is small on disk
                image.load()
                image = ImageOps.exif_transpose(image)
                square = resize_crop(to_rgb(image), size)
    except BadImage:
        raise
    except MemoryError:
        raise BadImage("too large to decode in the memory available") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"too large, refused as a possible decompression bomb ({exc})") from None
    except Image.UnidentifiedImageError:
        raise BadImage("not an image (unidentified format)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadImage(f"unreadable: {str(exc).replace(str(path), Path(path).name)}") from None
    return to_tensor(square)


def check_size(image_size: tuple[int, int], size: int) -> None:
    """BadImage for an image whose shape would make resize_crop ask for huge memory: a strip
    (aspect ratio over MAX_ASPECT) or a resized image over MAX_RESIZED_PIXELS."""
    width, height = image_size
    if min(width, height) < 1:
        raise BadImage(f"empty image ({width} x {height} pixels)")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise BadImage(f"a strip of {width} x {height} pixels, not a photo (aspect ratio over {MAX_ASPECT}:1)")
    scale = size / min(width, height)
    if max(size, round(width * scale)) * max(size, round(height * scale)) > MAX_RESIZED_PIXELS:
        raise BadImage(f"{width} x {height} pixels resized to {size} on the short side is too large")


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB for any mode: transparency on white, 16/32-bit integers scaled, CMYK/grey/palette converted."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I") and values.max(initial=0) > 255 else 255.0
        if image.mode == "F":
            top = max(float(values.max(initial=0)), 1e-12)
        grey = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return image.convert("RGB")


def resize_crop(image: Image.Image, size: int) -> Image.Image:
    """Scale the shorter side to `size`, then take the centre size x size square."""
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def to_tensor(image: Image.Image) -> Tensor:
    import torch

    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
