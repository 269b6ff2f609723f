"""pool5 / fc6 (None for nets without one) / fc7 / fc8 of a class's images (and the context a
class-token transformer's head needs beside pool5), computed once and cached on disk.

Topics (NMF on fc7), hierarchy codes and retrieval all start from the same activations of the
same images, so a rebuild that only changes a method parameter should not pay for the forward
passes again. The cache key hashes the model's parameters and the images' bytes: anything
that could change the numbers changes the key.
"""
from __future__ import annotations

import hashlib
import io
import weakref
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from generator import store
from generator.nets.pathway import Activations, Pathway

_FIELDS = ("pool5", "fc6", "fc7", "fc8", "context")
_digests: "weakref.WeakKeyDictionary[Pathway, str]" = weakref.WeakKeyDictionary()


def pathway_digest(pathway: Pathway) -> str:
    """Hash of the pathway's parameters, buffers and input size (memoized per pathway object)."""
    if pathway not in _digests:
        h = hashlib.sha256(str(pathway.input_size).encode())
        for name, tensor in pathway.state_dict().items():
            h.update(name.encode())
            h.update(str(tuple(tensor.shape)).encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        _digests[pathway] = h.hexdigest()
    return _digests[pathway]


def images_digest(images: Tensor) -> str:
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    h.update(images.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_key(pathway: Pathway, images: Tensor) -> str:
    return hashlib.sha256((pathway_digest(pathway) + images_digest(images)).encode()).hexdigest()[:32]


@torch.no_grad()
def extract(pathway: Pathway, images: Tensor, batch_size: int = 32, cache_dir: str | Path | None = None,
            progress: bool = True) -> Activations:
    """Unmasked activations of `images` (N, 3, S, S) in [0, 1], as CPU tensors."""
    cache_file = Path(cache_dir) / f"{cache_key(pathway, images)}.pt" if cache_dir is not None else None
    if cache_file is not None and cache_file.is_file():
        cached = _read_cache(cache_file)
        if cached is not None:
            return cached
    device = pathway.mean.device
    parts: dict[str, list[Tensor | None]] = {name: [] for name in _FIELDS}
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="features", unit="batch", disable=not progress, leave=False):
        acts = pathway(images[start : start + batch_size].to(device))
        for name in _FIELDS:
            value = getattr(acts, name)
            parts[name].append(None if value is None else value.cpu())  # fc6 / context: None for nets without one
    result = Activations(**{name: None if parts[name][0] is None else torch.cat(parts[name]) for name in _FIELDS})
    if cache_file is not None:
        _write_cache(cache_file, result)
    return result


def _read_cache(path: Path) -> Activations | None:
    """The cached activations, or None when the file is unreadable (then it is recomputed)."""
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
        return Activations(**{name: data.get(name) for name in _FIELDS})
    except Exception:
        return None


def _write_cache(path: Path, acts: Activations) -> None:
    """Atomic (store.atomic_write), so an interrupted build never leaves half a file."""
    buffer = io.BytesIO()
    torch.save({name: getattr(acts, name) for name in _FIELDS}, buffer)
    store.atomic_write(path, buffer.getvalue())
