"""The natural-patch database of the data-driven patch prior (Sec. 3.2).

R_gamma sum_p ||I~_p - D~_p||^2 compares the dense patches of the current image with their
nearest natural patches. Both sides are *globally normalized*: an image is shifted and scaled
by its own mean and std over all pixels and all three channels together. Why one mean/std for
the whole image and not one per channel: the CNN data term barely constrains low frequencies,
so an inversion can come out with any overall brightness and contrast (the paper's Fig. 3);
one global affine map removes exactly that ambiguity, so patches can match natural ones while
the brightness is still wrong. Per-channel statistics would also hide colour casts (a blue
image would look like a grey one), and then the prior could not pull the colour balance back
to natural: we keep the channels' relative balance visible to the matching.

Matching is exact nearest-neighbour search with faiss (IndexFlatL2; the paper used
PatchMatch). Its cost is queries x database x D flops: 16 images of 224 px at stride 4 are
48k queries of D = 147, which against 100k database patches takes a few seconds on 2 cores.
Keep databases in the 10^4-10^5 range for class visualization (`max_patches`).

Optional whitening (the paper "found that whitening the image as pre-processing helps"):
`Whitening` is a ZCA transform fitted on natural normalized patches. When a database has one,
the *search* runs in the whitened space (distances weigh every spatial frequency equally,
so the match follows structure, not the dominant smooth shading), while `match` still returns
plain normalized patches, so the energy's ||I~_p - D~_p||^2 is unchanged. Measured on pool5
inversion (3 images, alexnet-slim) it did NOT help: image error 0.345 whitened vs 0.313 plain,
so it is off by default.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from generator.engine.patch_prior import global_normalize

# faiss threads (env ATLAS_FAISS_THREADS; default: as many as torch uses). faiss and torch
# share one OpenMP runtime, so the count is set only around a search and torch's restored
# after it: setting faiss to 1 thread once at import would leave torch on one core for the
# whole process (the engine runs 1.7x slower on 2 cores). Sharing the runtime, the two do not
# compete: the tests take the same time with 1 or 2 faiss threads, and 2 made the prior's exact search
# (a third of its per-step cost at re-match every 2 steps) twice as fast.
FAISS_THREADS = int(os.environ.get("ATLAS_FAISS_THREADS", "0"))


@contextmanager
def faiss_threads() -> Iterator[None]:
    torch_threads = torch.get_num_threads()
    faiss.omp_set_num_threads(max(1, min(FAISS_THREADS or torch_threads, os.cpu_count() or 1)))
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)


@contextmanager
def blas_search() -> Iterator[None]:
    """faiss's matrix-product search for any number of queries (docs/speed.md).

    IndexFlatL2 scans query by query below queries x dims = 128,000 (one image's 784 patches at
    32 dims, or Table 1's at 147) and by matrix product above it (a batch of 9 images): 2.5-4x
    faster per query. The two differ only in the rounding of a distance, so a patch whose
    match was a tie could get the other of two equally near patches, and did depend on how many
    images were batched with it; with one path for all, it does not."""
    before = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 1
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = before


def normalize_images(images: Tensor) -> Tensor:
    """Each image (B,3,S,S) shifted and scaled by its own mean and std over all pixels and
    channels (differentiable; see the module docstring for why not per channel)."""
    return global_normalize(images)[0]


def unfold_patches(images: Tensor, patch: int, stride: int) -> Tensor:
    """Dense patch x patch patches at `stride`: (B,3,S,S) -> (B, P, 3*patch*patch)."""
    return F.unfold(images, kernel_size=patch, stride=stride).transpose(1, 2)


def normalized_patches(images: Tensor, patch: int, stride: int) -> Tensor:
    """The I~_p of Eq. 3: dense patches of globally normalized images, (B, P, 3*patch*patch).

    Differentiable (through the image's own mean and std too), so the prior's gradient
    reaches every pixel."""
    return unfold_patches(normalize_images(images), patch, stride)


class Whitening:
    """ZCA whitening of patch vectors, fitted on natural normalized patches.

    x -> (x - mean) U diag(1/sqrt(s + eps)) U^T, with (U, s) the eigenvectors/values of the
    patches' covariance. `eps` (in units of normalized intensity squared; natural normalized
    patches have unit variance per entry) keeps the near-zero eigenvalues of the finest
    frequencies from amplifying noise."""

    def __init__(self, mean: Tensor, matrix: Tensor) -> None:
        self.mean = mean.float()
        self.matrix = matrix.float()

    @classmethod
    def fit(cls, patches: Tensor, eps: float = 0.1) -> "Whitening":
        data = patches.detach().reshape(-1, patches.shape[-1]).double()
        mean = data.mean(0)
        centred = data - mean
        cov = centred.T @ centred / max(data.shape[0] - 1, 1)
        values, vectors = torch.linalg.eigh(cov)
        scale = (values.clamp_min(0) + eps).rsqrt()
        return cls(mean, vectors @ torch.diag(scale) @ vectors.T)

    @classmethod
    def fit_pca(cls, patches: Tensor, dims: int) -> "Whitening":
        """Not whitening but the same kind of centred linear map: projection on the `dims`
        principal components of the patches. Distances there approximate the full ones
        (natural patches are smooth, so a few components hold most of their energy) at
        dims / D of the exact search's cost."""
        data = patches.detach().reshape(-1, patches.shape[-1]).double()
        mean = data.mean(0)
        centred = data - mean
        _, vectors = torch.linalg.eigh(centred.T @ centred)
        return cls(mean, vectors[:, -dims:].flip(1))

    def __call__(self, patches: Tensor) -> Tensor:
        return (patches - self.mean.to(patches)) @ self.matrix.to(patches)


def as_faiss(array: Tensor) -> np.ndarray:
    return np.ascontiguousarray(array.detach().cpu().numpy(), dtype=np.float32)


class PatchDatabase:
    """Normalized natural patches (M, D) and an exact L2 nearest-neighbour index over them.

    `patch` and `stride` say how to cut the query image (`normalized_patches(images,
    db.patch, db.stride)`); `size` is M."""

    def __init__(self, patches: Tensor, patch: int, stride: int, whitening: Whitening | None = None,
                 reference: tuple[float, float] | None = None, normalization: str = "image") -> None:
        patches = patches.detach().float().cpu().contiguous()
        if patches.dim() != 2 or patches.shape[1] != 3 * patch * patch:
            raise ValueError(f"patches must be (M, {3 * patch * patch}) for patch={patch}, got {tuple(patches.shape)}")
        if patches.shape[0] == 0:
            raise ValueError("a patch database needs at least one patch")
        self.patches = patches
        self.patch = patch
        self.stride = stride
        self.whitening = whitening
        # (mean, std) of the photos the patches come from: a fixed normalization for the image's
        # patches (Settings.prior_normalize = "photos"); None when they are unknown
        self.reference = reference
        # how the patches were normalized: "image" (each by its own image's mean and std, the
        # paper's) or "photos" (all by `reference`); the prior must cut the picture the same way
        self.normalization = normalization
        searched = patches if whitening is None else whitening(patches)
        self.index = faiss.IndexFlatL2(searched.shape[1])
        self.index.add(as_faiss(searched))

    @property
    def size(self) -> int:
        return self.patches.shape[0]

    @classmethod
    def from_patches(cls, patches: Tensor, patch: int, stride: int, whitening: Whitening | None = None) -> "PatchDatabase":
        return cls(patches, patch, stride, whitening)

    @classmethod
    def from_images(
        cls,
        images: Tensor,
        patch: int = 7,
        stride: int = 4,
        max_patches: int = 200_000,
        seed: int = 0,
        whiten: bool = False,
        search_dims: int | None = None,
        normalize: str = "image",
    ) -> "PatchDatabase":
        """All normalized patches of natural images (N,3,S,S) at `stride`; a deterministic
        random subset of `max_patches` (by `seed`) if there are more. `normalize`: each image by
        its own mean and std ("image", the paper's), or all by the photos' mean and mean std
        ("photos": a patch keeps its photo's brightness and contrast, as the picture's patches do
        under `Settings.prior_normalize = "photos"`). `whiten`: fit a `Whitening` on these
        patches and search in its space. `search_dims`: search on their first `search_dims`
        principal components instead (`Whitening.fit_pca`; cheaper)."""
        if whiten and search_dims:
            raise ValueError("choose whiten or search_dims, not both")
        if normalize not in ("image", "photos"):
            raise ValueError(f"normalize must be 'image' or 'photos', got {normalize!r}")
        flat = images.float().flatten(1)
        reference = (float(flat.mean()), float(flat.std(1).mean()))
        with torch.no_grad():
            if normalize == "image":
                normalized = normalize_images(images.float())
            else:
                normalized = (images.float() - reference[0]) / reference[1]
            patches = unfold_patches(normalized, patch, stride).reshape(-1, 3 * patch * patch)
        if patches.shape[0] > max_patches:
            generator = torch.Generator().manual_seed(seed)
            keep = torch.randperm(patches.shape[0], generator=generator)[:max_patches].sort().values
            patches = patches[keep]
        whitening = Whitening.fit(patches) if whiten else None
        if search_dims and search_dims < patches.shape[1]:
            whitening = Whitening.fit_pca(patches, search_dims)
        return cls(patches, patch, stride, whitening, reference, normalize)

    def nearest(self, patches: Tensor) -> tuple[Tensor, Tensor]:
        """Indices (P,) of the nearest database patches and their squared search distances (P,)."""
        queries = patches.detach().reshape(-1, self.patches.shape[1]).float().cpu()
        if self.whitening is not None:
            queries = self.whitening(queries)
        with faiss_threads(), blas_search():
            distances, indices = self.index.search(as_faiss(queries), 1)
        return torch.from_numpy(indices[:, 0]).long(), torch.from_numpy(distances[:, 0])

    def match(self, patches: Tensor) -> Tensor:
        """The nearest database patch of each query patch: (P, D) -> (P, D), same device and
        dtype as the queries, detached (the D~_p held fixed between re-matches)."""
        indices, _ = self.nearest(patches)
        return self.patches[indices].to(device=patches.device, dtype=patches.dtype)
