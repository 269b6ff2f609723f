"""Errors a user can fix: the CLI prints their message as one red `error: ...` line, exit 2.

Every such error subclasses AtlasError, so `atlas` recognises them by type, never by name, and
anything else (a bug) still shows its traceback. Each keeps a builtin base (ValueError,
RuntimeError) so older `except ValueError` callers keep working; the modules that raise them
re-export them (`from generator.catalog import CatalogError` still works).
"""
from __future__ import annotations


class AtlasError(Exception):
    """Something the user can fix; the message says what and where."""


class CatalogError(AtlasError, ValueError):
    """A catalog that cannot be used; the message names the file and the field."""


class UsageError(AtlasError, ValueError):
    """A command-line value that cannot be used."""


class StoreError(AtlasError, RuntimeError):
    """The output folder cannot be used (not writable, disk full, locked by another build)."""


class BuildLockedError(StoreError):
    """Another `atlas build` holds the lock on the output folder."""


class SiteError(AtlasError, RuntimeError):
    """The website cannot be rendered or served from this folder."""


class ImageSourceError(AtlasError, RuntimeError):
    """Images that cannot be found or fetched; the message names the folder or the download."""


class BadImage(AtlasError, ValueError):
    """One file that is not a readable image (reason in the message)."""


class ModelError(AtlasError, RuntimeError):
    """A model that cannot be built or loaded; the message says how to fix it."""


class PathwayError(AtlasError, ValueError):
    """The model does not have a layout we can split into a pathway."""
