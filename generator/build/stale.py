"""`atlas clean`: delete what the atlas wrote and no longer needs, and nothing else.

An output folder is shared with its user: a folder of lecture notes beside the classes, a
picture dropped into a class's `images/`, a symlink to a thesis. So `clean` deletes only what
the atlas's own records name: the files a class folder's ledger (`.atlas-files`, appended by
the build before each write) or its manifest lists, the build's temp files, and the feature
cache's `<hash>.pt` files. It works only in a folder that holds the marker `atlas build`
writes (`.atlas-output`), never deletes through a symlink, and removes a folder only when it
is empty.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from generator import store
from generator.catalog import Catalog

FEATURE_FILE = re.compile(r"[0-9a-f]{32}\.pt")


class CleanError(store.StoreError):
    """An output folder `clean` refuses to touch."""


def clean(catalog: Catalog, dry_run: bool = False) -> list[Path]:
    """Delete stale atlas files under `catalog.output`; returns the deleted (or, with dry_run,
    the to-be-deleted) files and folders."""
    output = Path(catalog.output)
    reason = store.unsafe_output(output)
    if reason:
        raise CleanError(f"refusing to clean {output}: {reason}")
    if not output.exists():
        return []
    if not store.is_atlas_output(output):
        raise CleanError(f"refusing to clean {output}: it holds no {store.MARKER} marker, so it is not "
                         "an atlas output folder (a build of this version writes one); nothing removed")
    if dry_run:
        return _stale(output, {entry.slug for entry in catalog.classes})
    with store.BuildLock(output):
        doomed = _stale(output, {entry.slug for entry in catalog.classes})
        removed = []
        for path in doomed:
            if path.is_dir() and not path.is_symlink():
                continue  # folders go below, once emptied
            path.unlink(missing_ok=True)
            removed.append(path)
        for path in sorted((p for p in doomed if p not in removed), key=lambda p: -len(p.parts)):
            try:
                path.rmdir()  # only if empty: a user's file inside keeps it
                removed.append(path)
            except OSError:
                pass
        for folder in [*_class_folders(output), output / "units"]:
            _compact_ledger(folder, output)
    return removed


def _stale(output: Path, slugs: set[str]) -> list[Path]:
    """Files (then folders that would be left empty) that clean deletes."""
    files: list[Path] = []
    folders: list[Path] = []
    features = output / store.CACHE_DIR / "features"
    files += [p for p in store.walk_files(features) if p.parent == features
              and (FEATURE_FILE.fullmatch(p.name) or store.is_temp(p))
              and store.own_file(output, p.relative_to(output).as_posix()) is not None]
    folders.append(features)
    for folder in _class_folders(output):
        manifest = store.read_json(folder / "manifest.json")
        keep = set(referenced(manifest))
        listed = set(store.ledger(folder))  # only what a build wrote: a manifest's names may be anyone's
        if folder.name in slugs:
            names = listed - keep
        else:  # a class no longer in the catalog: all of the atlas's files, the page render wrote too
            names = listed | {"manifest.json", store.LEDGER} | ({"index.html"} if manifest is not None else set())
        files += [p for p in (store.own_file(folder, name) for name in sorted(names)) if p is not None]
        files += store.sweep_temp_files(folder, dry_run=True)
        folders += [folder / Path(name).parent for name in names if "/" in name]
        if folder.name not in slugs:
            folders.append(folder)
    files += _stale_units(output)
    files = list(dict.fromkeys(files))
    folders = [f for f in dict.fromkeys(folders) if f.is_dir() and not f.is_symlink() and _only(f, set(files))]
    return files + folders


def _stale_units(output: Path) -> list[Path]:
    """Unit atlas files its ledger lists and its manifest no longer names (none when the
    manifest cannot be read: then its files are kept, as a class's are)."""
    from generator.units import folder as units_folder
    from generator.units import manifest_files, read_manifest

    base = units_folder(output)
    manifest = read_manifest(output)
    if manifest is None or base.is_symlink() or not base.is_dir():
        return []
    names = set(store.ledger(base)) - set(manifest_files(manifest))
    return [p for p in (store.own_file(base, name) for name in sorted(names)) if p is not None] + \
        store.sweep_temp_files(base, dry_run=True)


def _only(folder: Path, doomed: set[Path]) -> bool:
    """True when everything under `folder` is in `doomed` (so it would be left empty)."""
    for root, dirs, names in os.walk(folder, followlinks=False):
        if any(Path(root, d).is_symlink() for d in dirs):
            return False
        if any(Path(root, name) not in doomed for name in names):
            return False
    return True


def _class_folders(output: Path) -> list[Path]:
    classes = output / "classes"
    if classes.is_symlink() or not classes.is_dir():
        return []
    return sorted(p for p in classes.iterdir() if p.is_dir() and not p.is_symlink())


def referenced(manifest: object) -> list[str]:
    """Relative paths a manifest points at (tolerating any shape a damaged manifest has)."""
    if not isinstance(manifest, dict):
        return []
    names: list[str] = []
    images = manifest.get("images")
    for image in images if isinstance(images, list) else []:
        if isinstance(image, dict) and isinstance(image.get("thumb"), str):
            names.append(image["thumb"])
    methods = manifest.get("methods")
    for record in methods.values() if isinstance(methods, dict) else []:
        pictures = record.get("pictures") if isinstance(record, dict) else None
        for picture in pictures if isinstance(pictures, list) else []:
            if isinstance(picture, dict):
                names += [picture[k] for k in ("file", "thumb") if isinstance(picture.get(k), str)]
    return names


def _compact_ledger(folder: Path, output: Path) -> None:
    """Rewrite a ledger to the listed files that still exist (it only grows between cleans)."""
    if not (folder / store.LEDGER).is_file() or (folder / store.LEDGER).is_symlink():
        return
    alive = [name for name in store.ledger(folder) if store.own_file(folder, name) is not None]
    store.atomic_write(folder / store.LEDGER, "".join(f"{name}\n" for name in alive).encode(), root=output)
