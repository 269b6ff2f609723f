"""Content-addressed artifact keys, atomic writes and the build lock (DESIGN.md "Incremental builds").

An artifact's key is the sha256 of everything that produced it: the method, its parameters and
code version, the model and a digest of its weights, the class entry, the list of image files,
the seed and the engine settings. Every input is reduced to a small JSON-able *component*
(`Inputs`), so the build can say which one changed, and the key is computable from the catalog
and file stats alone — a no-op rebuild never loads the model or decodes an image.

Every file goes to disk through `atomic_write` (generator/safefs.py: temp file in the same
folder, fsync, os.replace, never through a symlink), so a killed build leaves either the old
file or the new one, never half of one. Temp files are named `.<name>.tmp-<pid>-<random>` so a
later build can sweep the leftovers of a killed one.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import math
import os
import stat
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

from generator import safefs
from generator.errors import BuildLockedError, StoreError
from generator.safefs import TEMP_MARK, atomic_write, is_temp, temp_path, write_if_changed  # noqa: F401 (the atlas's one writer)
from generator.safefs import describe as _describe

LOCK_NAME = ".atlas.lock"
CACHE_DIR = ".atlas-cache"  # digests and feature caches, beside the site (hidden from static hosts' indexes)
MARKER = ".atlas-output"  # written by `atlas build` in the output root: `atlas clean` works only where it is
LEDGER = ".atlas-files"  # in each class folder: every file the build wrote there, one relative path a line
THUMB_SIZE = 160




# ---------------------------------------------------------------------------------------------
# Keys


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no spaces, tuples as lists, paths as strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if hasattr(value, "tolist"):  # tensors and arrays in a method's numbers
        return value.tolist()
    raise TypeError(f"cannot put {type(value).__name__} into an artifact key")


def digest(value: Any) -> str:
    """sha256 hex of the canonical JSON of `value`."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


@dataclass(frozen=True)
class Inputs:
    """What produced one (class, method) artifact, one short digest per input.

    The manifest stores these next to the key so `atlas build --dry-run` can name the input that
    changed ("params", "version", "model", "class", "images", "seed", "engine", "prior").
    `prior` is the digest of the class's patch database parameters for a method that uses it,
    "unused" for one that does not.
    """

    method: str
    params: str
    version: int
    model: str
    class_: str
    images: str
    seed: int
    engine: str
    prior: str = "unused"

    def key(self) -> str:
        return digest(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params, "version": self.version, "model": self.model,
                "class": self.class_, "images": self.images, "seed": self.seed, "engine": self.engine,
                "prior": self.prior}

    def changed(self, recorded: dict[str, Any] | None) -> list[str]:
        """Names of the inputs that differ from a manifest's record (all, if there is none)."""
        now = self.as_dict()
        if not recorded:
            return list(now)
        return [name for name, value in now.items() if recorded.get(name) != value]


class FileDigests:
    """sha256 of big files (weights are 27 MB-500 MB), cached by (path, size, mtime_ns).

    The cache lives in a JSON file so that a no-op rebuild only stats the weights file. It is a
    cache: a missing or unreadable file just means hashing again.
    """

    def __init__(self, cache_file: Path | None = None, root: Path | None = None) -> None:
        self.cache_file = cache_file
        self.root = root  # the cache is written only inside it
        self.entries: dict[str, dict[str, Any]] = {}
        if cache_file is not None:
            entries = read_json(cache_file)
            self.entries = entries if isinstance(entries, dict) else {}
        self.dirty = False

    def sha256(self, path: Path) -> str:
        path = Path(path).resolve()
        stat = path.stat()
        slot = hashlib.sha256(os.fsencode(path)).hexdigest()[:32]  # not the path: the cache sits beside the site
        entry = self.entries.get(slot)
        if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
            return entry["sha256"]
        hasher = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
        value = hasher.hexdigest()
        self.entries[slot] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": value}
        self.dirty = True
        return value

    def remembered(self, key: str, compute: Callable[[], Any]) -> Any:
        """A JSON value computed once per key and kept with the digests (a class's seeded choice of
        files, which needs torch: a no-op build then imports none)."""
        slot = f"memo:{key}"
        entry = self.entries.get(slot)
        if not isinstance(entry, dict) or "value" not in entry:
            entry = self.entries[slot] = {"value": compute()}
            self.dirty = True
        return entry["value"]

    def save(self) -> None:
        """Write the cache back (best effort: a cache that cannot be written costs only time)."""
        if self.cache_file is None or not self.dirty:
            return
        try:
            write_json(self.entries, self.cache_file, self.root)
            self.dirty = False
        except (OSError, StoreError):
            pass


# ---------------------------------------------------------------------------------------------
# Atomic writes


def copy_tree(source: Path, target: Path, root: Path | None = None) -> None:
    """Copy a folder file by file with atomic_write (inside `root`): a full disk leaves each file
    whole (old or new), never a truncated one; errors are StoreError."""
    for path in walk_files(source):
        atomic_write(target / path.relative_to(source), path.read_bytes(), root)


def sweep_temp_files(folder: Path, dry_run: bool = False) -> list[Path]:
    """Remove temp files a killed build left under `folder` (never behind a symlink); returns them."""
    found = [path for path in walk_files(folder) if is_temp(path)]
    if not dry_run:
        for path in found:
            path.unlink(missing_ok=True)
    return found


def walk_files(folder: Path) -> list[Path]:
    """Regular files under `folder`, not following symlinks (a link to ~/thesis is not ours)."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return []
    files = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in names:
            path = Path(root) / name
            if stat.S_ISREG(path.lstat().st_mode):
                files.append(path)
    return sorted(files)


# ---------------------------------------------------------------------------------------------
# What the atlas wrote: the output marker and each class folder's ledger


def mark_output(output: Path) -> None:
    """Write the marker that says "atlas owns what its records list here" (once)."""
    marker = Path(output) / MARKER
    if not marker.is_file():
        atomic_write(marker, b'{"written_by": "atlas build", "version": 1}\n')


def is_atlas_output(output: Path) -> bool:
    marker = Path(output) / MARKER
    return not marker.is_symlink() and marker.is_file()


def foreign_output(output: Path) -> str | None:
    """Why a build must not write into `output` (a folder that holds files but no atlas marker:
    the user's docs/, a repository, /usr), or None when it may."""
    output = Path(output)
    if not output.is_dir() or is_atlas_output(output):
        return None
    found = _first_file(output)
    if found is None:
        return None
    return (f"it holds files ({found}) but no {MARKER} marker, so it is not an atlas output folder; "
            "pick an empty or new folder")


def _first_file(folder: Path) -> str | None:
    """The first file or symlink found under `folder` (relative), not counting the `.atlas*`
    files a build makes first (a shard's lock); None when it holds only empty folders."""
    def failed(exc: OSError) -> None:
        raise exc

    try:
        for root, dirs, names in os.walk(folder, onerror=failed):
            top = Path(root) == folder
            links = [d for d in dirs if Path(root, d).is_symlink()]
            found = [n for n in [*names, *links] if not (top and n.startswith(".atlas"))]
            if found:
                return (Path(root) / sorted(found)[0]).relative_to(folder).as_posix()
    except OSError as exc:
        return f"it cannot be listed: {_describe(exc)}"
    return None


def unsafe_output(path: Path | str) -> str | None:
    """Why `path` must not be an output folder (the filesystem root, the home folder or one
    above it, an empty path), or None when it may be one."""
    if str(path).strip() == "":
        return "an empty path is not an output folder"
    resolved = Path(path).expanduser().resolve()
    home = Path.home().resolve()
    if resolved == Path(resolved.anchor):
        return f"{resolved} is the filesystem root"
    if resolved == home or resolved in home.parents:
        return f"{resolved} is your home folder{' or above it' if resolved != home else ''}"
    return None


def remember(folder: Path, files: list[str]) -> None:
    """Append paths (relative to the class folder) to its ledger, before they are written, so
    that `atlas clean` may later delete them and nothing else."""
    listed = set(ledger(folder))
    new = [name for name in dict.fromkeys(files) if name not in listed]
    if new:
        safefs.append(Path(folder) / LEDGER, "".join(f"{name}\n" for name in new).encode("utf-8", "surrogateescape"))


def ledger(folder: Path) -> list[str]:
    """The relative paths a class folder's ledger lists (empty when it has none)."""
    try:
        lines = safefs.read_regular(Path(folder) / LEDGER, follow=False).decode("utf-8", "replace").splitlines()
    except OSError:  # none, a symlink, a FIFO
        return []
    return list(dict.fromkeys(line for line in lines if line.strip()))


def own_file(folder: Path, relative: str) -> Path | None:
    """`folder/relative` if it is a regular file reached without leaving `folder` through a
    symlink or `..`; else None. What `clean` checks before deleting anything."""
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or any(part in ("..", ".", "") for part in parts):
        return None
    path = Path(folder)
    try:
        for part in parts[:-1]:
            path = path / part
            if not stat.S_ISDIR(path.lstat().st_mode):  # lstat: a symlink is not a folder here
                return None
        path = path / parts[-1]
        return path if stat.S_ISREG(path.lstat().st_mode) else None
    except (OSError, ValueError):
        return None


def to_pil(image: Any) -> Image.Image:
    """A (3, H, W) float tensor/array in [0, 1] (or a PIL image) as an 8-bit RGB PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(array.shape)}")
    array = np.nan_to_num(array.astype(np.float32), nan=0.0)
    pixels = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return Image.fromarray(pixels, mode="RGB")


def write_png(image: Any, path: Path, root: Path | None = None) -> tuple[int, int]:
    """Full-size lossless PNG (inside `root`); returns (width, height)."""
    pil = to_pil(image)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue(), root)
    return pil.size


def write_jpeg(image: Any, path: Path, size: int = THUMB_SIZE, quality: int = 85,
               root: Path | None = None) -> tuple[int, int]:
    """A JPEG thumbnail whose longer side is at most `size` px (inside `root`); returns (width, height)."""
    pil = to_pil(image)
    pil.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=quality)
    atomic_write(path, buffer.getvalue(), root)
    return pil.size


def write_json(value: Any, path: Path, root: Path | None = None) -> None:
    """Strict JSON (NaN/inf become null, so browsers' JSON.parse reads our manifests too)."""
    text = json.dumps(_finite(json.loads(json.dumps(value, default=_jsonable))), indent=1, sort_keys=True,
                      allow_nan=False)
    atomic_write(path, (text + "\n").encode(), root)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing, not a regular file (a FIFO never blocks) or
    not valid JSON (treated as never written)."""
    try:
        return json.loads(safefs.read_regular(path))
    except (OSError, ValueError, RecursionError):
        return None


# ---------------------------------------------------------------------------------------------
# The build lock


class BuildLock:
    """An exclusive, non-blocking lock on an output folder (fcntl.flock on <output>/.atlas.lock).

    A whole build takes it exclusively. Shards of one array job (`--shard i/n`) write disjoint
    class folders, so they take it *shared* plus an exclusive lock of their own shard: shards
    run side by side, but a shard and a whole build (or two copies of one shard) do not.
    The kernel drops flock locks when a process dies, so a killed build never leaves it stuck.
    """

    def __init__(self, output: Path, shard: tuple[int, int] | None = None) -> None:
        self.output = Path(output)
        self.shard = shard
        self.handles: list[Any] = []

    def _paths(self) -> list[tuple[Path, int]]:
        main = self.output / LOCK_NAME
        if self.shard is None:
            return [(main, fcntl.LOCK_EX)]
        i, n = self.shard
        return [(main, fcntl.LOCK_SH), (self.output / f".atlas-shard-{i}-of-{n}.lock", fcntl.LOCK_EX)]

    def acquire(self) -> "BuildLock":
        ensure_writable(self.output)
        try:
            for path, mode in self._paths():
                handle = _open_lock(path)
                try:
                    fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    handle.close()
                    raise BuildLockedError(f"another atlas build is writing to {self.output} (pid {holder})") from None
                self.handles.append(handle)
                handle.seek(0)
                handle.truncate()
                handle.write(str(os.getpid()))
                handle.flush()
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        for handle in reversed(self.handles):
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            finally:
                handle.close()
        self.handles = []

    def __enter__(self) -> "BuildLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _open_lock(path: Path) -> Any:
    """The lock file, opened for reading and appending: never through a symlink, never a FIFO."""
    try:
        handle = open(path, "a+", opener=safefs.no_follow)
    except OSError as exc:
        raise StoreError(f"cannot open the lock {path}: {_describe(exc)} (a symlink or a FIFO is not a lock file)") from exc
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise StoreError(f"cannot open the lock {path}: not a regular file")
    return handle


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes that waits its turn (the demo world's one-time set-up);
    BuildLock is the non-blocking, shard-aware one for output folders."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_writable(folder: Path) -> None:
    """Create `folder` and prove we can write into it, or raise StoreError saying why."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temp_path(folder / "write-probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason = "a file is in the way of the folder"
        else:
            reason = _describe(exc)
        raise StoreError(f"cannot write to the output folder {folder}: {reason}") from exc


