"""An image's width and height from the first bytes of its file: a class page lists hundreds of
thumbnails, and opening each with PIL cost more than rendering the page. Only regular files are
opened (a FIFO does not block), and a decompression bomb's header is not trusted."""
from __future__ import annotations

import struct
import warnings
from pathlib import Path

from PIL import Image

from generator import safefs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # SOFn markers
HEADER_BYTES = 4096  # holds the frame header of any JPEG without a big EXIF block; else PIL reads it


def header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a file's first bytes: a PNG's IHDR or a JPEG's frame header, else
    None. PIL's parsers read every table first: at 1000 classes (57 000 thumbnails) that was
    half the render's CPU."""
    if head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    if head[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 9 <= len(head) and head[at] == 0xFF:  # else fill bytes, a broken file or past `head`: PIL decides
        marker, length = head[at + 1], struct.unpack(">H", head[at + 2:at + 4])[0]
        if marker in JPEG_FRAMES:
            height, width = struct.unpack(">HH", head[at + 5:at + 9])
            return width, height
        at += 2 + length
    return None


def image_size(path: str | Path) -> tuple[int | None, int | None]:
    """Width and height from the file header (no decoding), for <img> width/height attributes.
    Only regular files are read (opened non-blocking: a FIFO must not block the render); a
    decompression bomb's header is not trusted."""
    try:
        with safefs.open_regular(path) as handle:
            size = header_size(handle.read(HEADER_BYTES))
            if size is not None:
                width, height = size
                limit = Image.MAX_IMAGE_PIXELS
                return (width, height) if limit is None or width * height <= limit else (None, None)
            handle.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(handle) as image:
                    return image.size
    except (OSError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        return None, None
