"""The data-driven patch prior of Sec. 3.2 and the pool5 patch retrieval of [7].

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

Pool5 retrieval ([7], Long et al.): a database of (pool5 1x1xC feature, centre patch of that
cell's receptive field) pairs. For the paper's AlexNet at 227 px, pool5 cells have a 195 px
support and the centre 67 px are kept. `pool5_geometry` derives the same numbers for any
pathway from its conv/pool layers; for the AlexNet layout at 224 px: support 195, stride 32,
cell (i, j) centred at pixel (31 + 32 i, 31 + 32 j), centre patch 2 * 32 + 3 = 67 px, so the
36 centre patches tile the image with ~35 px overlaps (blended with tent weights).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generator.pathway import Pathway

from generator.energy import NORMALIZE_EPS as _EPS
from generator.energy import global_normalize


# faiss threads (env ATLAS_FAISS_THREADS; default: as many as torch uses). faiss and torch
# share one OpenMP runtime, so the count is set only around a search and torch's restored
# after it: setting faiss to 1 thread once at import (as we first did, against spin-waiting
# faiss threads competing with torch's) silently left torch on one core for the whole process,
# and the engine ran 1.7x slower on 2 cores. Sharing the runtime, the two no longer compete:
# the tests take the same time with 1 or 2 faiss threads, and 2 made the prior's exact search
# (a third of its per-step cost at re-match every 2 steps) twice as fast.
FAISS_THREADS = int(os.environ.get("ATLAS_FAISS_THREADS", "0"))


@contextmanager
def _faiss_threads() -> Iterator[None]:
    torch_threads = torch.get_num_threads()
    faiss.omp_set_num_threads(max(1, min(FAISS_THREADS or torch_threads, os.cpu_count() or 1)))
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)


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


def _as_faiss(array: Tensor) -> np.ndarray:
    return np.ascontiguousarray(array.detach().cpu().numpy(), dtype=np.float32)


class PatchDatabase:
    """Normalized natural patches (M, D) and an exact L2 nearest-neighbour index over them.

    `patch` and `stride` say how to cut the query image (`normalized_patches(images,
    db.patch, db.stride)`); `size` is M."""

    def __init__(self, patches: Tensor, patch: int, stride: int, whitening: Whitening | None = None) -> None:
        patches = patches.detach().float().cpu().contiguous()
        if patches.dim() != 2 or patches.shape[1] != 3 * patch * patch:
            raise ValueError(f"patches must be (M, {3 * patch * patch}) for patch={patch}, got {tuple(patches.shape)}")
        if patches.shape[0] == 0:
            raise ValueError("a patch database needs at least one patch")
        self.patches = patches
        self.patch = patch
        self.stride = stride
        self.whitening = whitening
        searched = patches if whitening is None else whitening(patches)
        self.index = faiss.IndexFlatL2(searched.shape[1])
        self.index.add(_as_faiss(searched))

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
    ) -> "PatchDatabase":
        """All normalized patches of natural images (N,3,S,S) at `stride`; a deterministic
        random subset of `max_patches` (by `seed`) if there are more. `whiten`: fit a
        `Whitening` on these patches and search in its space. `search_dims`: search on their
        first `search_dims` principal components instead (`Whitening.fit_pca`; cheaper)."""
        if whiten and search_dims:
            raise ValueError("choose whiten or search_dims, not both")
        with torch.no_grad():
            patches = normalized_patches(images.float(), patch, stride).reshape(-1, 3 * patch * patch)
        if patches.shape[0] > max_patches:
            generator = torch.Generator().manual_seed(seed)
            keep = torch.randperm(patches.shape[0], generator=generator)[:max_patches].sort().values
            patches = patches[keep]
        whitening = Whitening.fit(patches) if whiten else None
        if search_dims and search_dims < patches.shape[1]:
            whitening = Whitening.fit_pca(patches, search_dims)
        return cls(patches, patch, stride, whitening)

    def nearest(self, patches: Tensor) -> tuple[Tensor, Tensor]:
        """Indices (P,) of the nearest database patches and their squared search distances (P,)."""
        queries = patches.detach().reshape(-1, self.patches.shape[1]).float().cpu()
        if self.whitening is not None:
            queries = self.whitening(queries)
        with _faiss_threads():
            distances, indices = self.index.search(_as_faiss(queries), 1)
        return torch.from_numpy(indices[:, 0]).long(), torch.from_numpy(distances[:, 0])

    def match(self, patches: Tensor) -> Tensor:
        """The nearest database patch of each query patch: (P, D) -> (P, D), same device and
        dtype as the queries, detached (the D~_p held fixed between re-matches)."""
        indices, _ = self.nearest(patches)
        return self.patches[indices].to(device=patches.device, dtype=patches.dtype)


@dataclass(frozen=True)
class Pool5Geometry:
    """Where pool5 cells look: cell (i, j) is centred at pixel (offset + stride*i, offset + stride*j)
    and sees a `support` x `support` window; `centre` is the side of the kept centre patch."""

    grid: tuple[int, int]
    stride: float
    offset: float
    support: int
    centre: int

    def centre_of(self, cell: int) -> tuple[int, int]:
        """Pixel (y, x) of the centre of cell number `cell` (row-major, as pool5.flatten(1).T)."""
        i, j = divmod(cell, self.grid[1])
        return round(self.offset + self.stride * i), round(self.offset + self.stride * j)

    def centres(self) -> list[tuple[int, int]]:
        """(y, x) of every cell, row-major."""
        return [self.centre_of(cell) for cell in range(self.grid[0] * self.grid[1])]


def _first(value) -> int:
    return int(value[0] if isinstance(value, (tuple, list)) else value)


def _walk_receptive_field(features: nn.Module) -> tuple[float, float, int] | None:
    """(stride, offset, support) from Conv2d / MaxPool2d / AvgPool2d layers, or None if an
    unknown spatial layer shows up. Pointwise layers (ReLU, BN, dropout, LRN) pass through."""
    stride, offset, support = 1.0, 0.0, 1.0
    for layer in features.modules():
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            kernel, step, pad = _first(layer.kernel_size), _first(layer.stride), _first(layer.padding)
            dilation = _first(getattr(layer, "dilation", 1))
            kernel = dilation * (kernel - 1) + 1
            offset += ((kernel - 1) / 2 - pad) * stride
            support += (kernel - 1) * stride
            stride *= step
        elif isinstance(layer, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Upsample)):
            return None
    return stride, offset, int(support)


def pool5_geometry(pathway: Pathway, centre: int | None = None) -> Pool5Geometry:
    """The receptive-field geometry of pathway's pool5 at its input size.

    Computed from the conv/pool layers when they alone make the pool5 grid (AlexNet at 224:
    stride 32, offset 31, support 195); otherwise (e.g. an adaptive pool that resizes) a
    uniform grid: stride S/H, cells centred in their tiles, support S. The centre patch is
    2*stride + 3 px (67 for stride 32, the paper's size), at most the image size."""
    size = pathway.input_size
    _, rows, cols = pathway.pool5_shape
    walked = _walk_receptive_field(pathway.features)
    with torch.no_grad():
        trunk_grid = pathway.features(torch.zeros(1, 3, size, size, device=pathway.mean.device)).shape[-2:]
    if walked is not None and tuple(trunk_grid) == (rows, cols):
        stride, offset, support = walked
    else:
        stride, offset, support = size / rows, size / rows / 2 - 0.5, size
    if centre is None:
        centre = 2 * round(stride) + 3
    return Pool5Geometry((rows, cols), float(stride), float(offset), int(min(support, size)), int(min(centre, size)))


def _tent(size: int) -> Tensor:
    """A separable tent window (size, size), positive everywhere: blends overlapping pastes."""
    ramp = 1.0 - (torch.arange(size, dtype=torch.float32) - (size - 1) / 2).abs() / (size / 2 + 1)
    return ramp[:, None] * ramp[None, :]


class Pool5Retrieval:
    """The "[7]" database: (pool5 1x1xC feature, centre patch of its support) pairs.

    Stores the source images (uint8) and, per entry, its image and cell; centre patches are cut
    on demand. Features are searched with faiss, exact L2, on the raw pool5 vectors by default:
    L2-normalizing them (`normalize_features=True`) made no difference we could measure (image
    error of the 10-NN average on 20 imagenet-samples, 1000-image Imagenette database: 0.4385
    raw vs 0.4391 normalized; the target's own flat mean colour scores 0.459)."""

    def __init__(
        self,
        features: Tensor,
        images: Tensor,
        image_mean: Tensor,
        image_std: Tensor,
        geometry: Pool5Geometry,
        normalize_features: bool = False,
    ) -> None:
        self.features = features.float().contiguous()  # (N*H*W, C), row = image * H*W + cell
        self.images = images  # (N, 3, S, S) uint8
        self.image_mean = image_mean  # (N,) global mean of each source image in [0, 1]
        self.image_std = image_std  # (N,) its global std
        self.geometry = geometry
        self.normalize_features = normalize_features
        self.index = faiss.IndexFlatL2(self.features.shape[1])
        self.index.add(_as_faiss(self._prepare(self.features)))

    @property
    def size(self) -> int:
        return self.features.shape[0]

    def _prepare(self, features: Tensor) -> Tensor:
        return F.normalize(features, dim=1) if self.normalize_features else features

    @classmethod
    def from_images(
        cls,
        pathway: Pathway,
        images: Tensor,
        batch_size: int = 32,
        progress: bool = True,
        normalize_features: bool = False,
        centre: int | None = None,
    ) -> "Pool5Retrieval":
        """Pool5 of every cell of every image (N,3,S,S in [0, 1]) paired with its centre patch."""
        from tqdm.auto import tqdm

        device = pathway.mean.device
        chunks = []
        with torch.no_grad():
            for batch in tqdm(images.split(batch_size), desc="pool5 database", disable=not progress):
                pool5 = pathway.trunk(batch.float().to(device)).cpu()
                chunks.append(pool5.flatten(2).transpose(1, 2).reshape(-1, pool5.shape[1]))
        flat = images.float().flatten(1)
        return cls(
            torch.cat(chunks),
            (images.clamp(0, 1) * 255).round().to(torch.uint8),
            flat.mean(1),
            flat.std(1),
            pool5_geometry(pathway, centre),
            normalize_features,
        )

    def _crop(self, entry: int, normalized: bool) -> Tensor:
        """The centre patch (3, c, c) of database entry `entry` (edge-replicated at the border)."""
        rows, cols = self.geometry.grid
        image_index, cell = divmod(entry, rows * cols)
        y, x = self.geometry.centre_of(cell)
        c = self.geometry.centre
        size = self.images.shape[-1]
        top, left = y - c // 2, x - c // 2
        inside = self.images[image_index, :, max(top, 0) : top + c, max(left, 0) : left + c].float() / 255
        pads = (max(-left, 0), max(left + c - size, 0), max(-top, 0), max(top + c - size, 0))
        crop = F.pad(inside[None], pads, mode="replicate")[0] if any(pads) else inside
        if normalized:
            crop = (crop - self.image_mean[image_index]) / (self.image_std[image_index] + _EPS)
        return crop

    def neighbours(self, pool5: Tensor, k: int = 10) -> Tensor:
        """Entry indices (H*W, k) of the k nearest database features of each pool5 cell."""
        queries = pool5.detach().float().cpu().flatten(1).T.contiguous()
        with _faiss_threads():
            _, indices = self.index.search(_as_faiss(self._prepare(queries)), k)
        return torch.from_numpy(indices).long()

    def retrieve(
        self,
        pool5: Tensor,
        k: int = 10,
        patch: int = 7,
        stride: int = 4,
        cut_stride: int = 4,
        whiten: bool = False,
    ) -> tuple[Tensor, PatchDatabase]:
        """Average image and patch database for inverting `pool5` (C, H, W).

        Average: each cell's k nearest centre patches averaged and pasted at the cell's centre,
        overlaps blended with tent weights, pixels no patch covers set to the mean colour.
        Database: the distinct retrieved centre patches, normalized by their *source image's*
        mean/std (like the query image's patches), cut into patch x patch pieces at
        `cut_stride`; queries are cut at `stride`. `whiten`: search in a ZCA space fitted on them."""
        if pool5.dim() != 3 or tuple(pool5.shape[1:]) != self.geometry.grid:
            raise ValueError(f"pool5 must be (C, {self.geometry.grid[0]}, {self.geometry.grid[1]}), got {tuple(pool5.shape)}")
        neighbours = self.neighbours(pool5, k)
        size, c = self.images.shape[-1], self.geometry.centre
        canvas = torch.zeros(3, size + 2 * c, size + 2 * c)
        weight = torch.zeros(1, size + 2 * c, size + 2 * c)
        window = _tent(c)
        for (y, x), entries in zip(self.geometry.centres(), neighbours):
            mean_patch = torch.stack([self._crop(int(e), normalized=False) for e in entries]).mean(0)
            top, left = y - c // 2 + c, x - c // 2 + c
            canvas[:, top : top + c, left : left + c] += mean_patch * window
            weight[:, top : top + c, left : left + c] += window
        canvas, weight = canvas[:, c : c + size, c : c + size], weight[:, c : c + size, c : c + size]
        covered = weight > 0
        average = canvas / weight.clamp_min(_EPS)
        fill = (canvas.flatten(1).sum(1) / weight.sum().clamp_min(_EPS)).view(3, 1, 1)
        average = torch.where(covered, average, fill).clamp(0, 1)

        distinct = torch.unique(neighbours.flatten())
        crops = torch.stack([self._crop(int(e), normalized=True) for e in distinct])
        pieces = unfold_patches(crops, patch, cut_stride).reshape(-1, 3 * patch * patch)
        whitening = Whitening.fit(pieces) if whiten else None
        return average, PatchDatabase(pieces, patch, stride, whitening)
