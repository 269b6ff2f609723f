"""The pool5 patch retrieval of [7] (Long et al.), used by the inversion method: a database of
(pool5 1x1xC feature, centre patch of that cell's receptive field) pairs. For the paper's AlexNet at 227 px, pool5 cells have a 195 px
support and the centre 67 px are kept. `pool5_geometry` derives the same numbers for any
pathway from its conv/pool layers; for the AlexNet layout at 224 px: support 195, stride 32,
cell (i, j) centred at pixel (31 + 32 i, 31 + 32 j), centre patch 2 * 32 + 3 = 67 px, so the
36 centre patches tile the image with ~35 px overlaps (blended with tent weights).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import faiss
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generator.engine.patch_database import PatchDatabase, Whitening, as_faiss, faiss_threads, unfold_patches
from generator.engine.patch_prior import NORMALIZE_EPS as _EPS
from generator.nets.pathway import Pathway


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


def _first(value: Any) -> int:
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
    features = cast(nn.Module, pathway.features)
    # A chain of layers only for AlexNet/VGG: a residual trunk's parallel branches would be walked
    # as if in series (ResNet's downsample convs), so globally pooled nets get the uniform grid.
    walked = _walk_receptive_field(features) if pathway.family == "fc" else None
    with torch.no_grad():
        trunk_grid = features(torch.zeros(1, 3, size, size, device=pathway.mean.device)).shape[-2:]
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
        self.index.add(as_faiss(self._prepare(self.features)))

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
        with faiss_threads():
            _, indices = self.index.search(as_faiss(self._prepare(queries)), k)
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
