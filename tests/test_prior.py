"""The patch prior (normalized patches, exact matching, whitening) and pool5 retrieval [7]."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from generator.engine.patch_database import PatchDatabase, Whitening, normalized_patches
from generator.methods.retrieval import Pool5Retrieval, pool5_geometry

NET64 = {"size": 64, "num_classes": 3, "dropout": False}  # pool5 (16, 4, 4), stride 16


def test_normalized_patches_shape_and_gradient():
    images = torch.rand(2, 3, 20, 20, requires_grad=True)
    patches = normalized_patches(images, patch=5, stride=3)
    assert patches.shape == (2, 6 * 6, 3 * 5 * 5)
    patches.pow(2).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    # each image is normalized on its own: every patch entry of image 0 comes from image 0
    flat = normalized_patches(images.detach(), patch=20, stride=20)
    assert torch.allclose(flat.mean(-1), torch.zeros(2, 1), atol=1e-5)
    assert torch.allclose(flat.std(-1), torch.ones(2, 1), atol=1e-3)


def test_match_returns_true_nearest_neighbours():
    generator = torch.Generator().manual_seed(1)
    database = torch.randn(500, 27, generator=generator)
    queries = torch.randn(200, 27, generator=generator)
    db = PatchDatabase.from_patches(database, patch=3, stride=1)
    matched = db.match(queries)
    expected = database[torch.cdist(queries, database).argmin(1)]
    assert matched.shape == (200, 27) and matched.dtype == torch.float32
    assert torch.allclose(matched, expected)


def test_matching_is_invariant_to_global_brightness_and_contrast():
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))  # no near-ties
    db = PatchDatabase.from_images(images[:5], patch=5, stride=2)
    query = images[5:]
    shifted = query * 0.4 + 0.3  # darker, low-contrast, washed-out version of the same image
    plain = db.nearest(normalized_patches(query, 5, 2)[0])[0]
    moved = db.nearest(normalized_patches(shifted, 5, 2)[0])[0]
    assert torch.equal(plain, moved)
    # without normalization the same shift does change the matches (the test can fail)
    raw = PatchDatabase.from_patches(
        nn.functional.unfold(images[:5], 5, stride=2).transpose(1, 2).reshape(-1, 75), 5, 2
    )
    raw_plain = raw.nearest(nn.functional.unfold(query, 5, stride=2).transpose(1, 2)[0])[0]
    raw_moved = raw.nearest(nn.functional.unfold(shifted, 5, stride=2).transpose(1, 2)[0])[0]
    assert not torch.equal(raw_plain, raw_moved)


def test_database_subsample_is_deterministic_and_bounded(smooth_images):
    images = smooth_images(4, seed=3)
    a = PatchDatabase.from_images(images, patch=5, stride=1, max_patches=300, seed=7)
    b = PatchDatabase.from_images(images, patch=5, stride=1, max_patches=300, seed=7)
    c = PatchDatabase.from_images(images, patch=5, stride=1, max_patches=300, seed=8)
    assert a.size == 300 and (a.patch, a.stride) == (5, 1)
    assert torch.equal(a.patches, b.patches)
    assert not torch.equal(a.patches, c.patches)
    full = PatchDatabase.from_images(images, patch=5, stride=1)
    assert full.size == 4 * 28 * 28


def test_whitening_decorrelates_and_search_still_finds_exact_copies(smooth_images):
    generator = torch.Generator().manual_seed(4)
    correlated = torch.randn(5000, 12, generator=generator) @ torch.randn(12, 12, generator=generator)
    white = Whitening.fit(correlated, eps=1e-6)(correlated)
    assert torch.allclose(torch.cov(white.T.double()), torch.eye(12, dtype=torch.float64), atol=1e-3)
    images = smooth_images(8, seed=4)
    patches = normalized_patches(images, 5, 2).reshape(-1, 75)
    db = PatchDatabase.from_images(images, patch=5, stride=2, whiten=True)
    assert db.whitening is not None
    assert torch.allclose(db.match(patches[:50]), patches[:50], atol=1e-5)


def test_pool5_geometry_of_alexnet_layout(tiny_alexnet):
    geometry = pool5_geometry(tiny_alexnet(**NET64))
    assert geometry.grid == (4, 4) and geometry.stride == 16 and geometry.centre == 35
    assert geometry.centre_of(0) == (7, 7) and geometry.centre_of(15) == (55, 55)


def test_pool5_geometry_of_the_shared_alexnet(shared_pathway):
    geometry = pool5_geometry(shared_pathway)
    # the paper's AlexNet numbers: 195 px support, stride 32, 67 px centre patches
    assert (geometry.grid, geometry.stride, geometry.support, geometry.centre) == ((6, 6), 32, 195, 67)
    assert geometry.centre_of(0) == (31, 31) and geometry.centre_of(35) == (191, 191)


def test_retrieving_own_pool5_recovers_the_image(smooth_images, tiny_alexnet):
    pathway = tiny_alexnet(**NET64)
    images = smooth_images(12, size=64, seed=5)
    retrieval = Pool5Retrieval.from_images(pathway, images[:10], batch_size=4, progress=False)
    assert retrieval.size == 10 * 16 and retrieval.features.shape == (160, 16)
    target = images[3]
    with torch.no_grad():
        own = pathway.trunk(target[None])[0]
        other = pathway.trunk(images[11:12])[0]
    exact, db = retrieval.retrieve(own, k=1, patch=5, stride=2)
    assert exact.shape == (3, 64, 64) and 0 <= exact.min() and exact.max() <= 1
    # the nearest feature of every cell is the image's own cell: its centre patches tile it
    assert (exact - target).norm() / target.norm() < 0.05
    assert db.patch == 5 and db.stride == 2 and db.patches.shape[1] == 75
    average, _ = retrieval.retrieve(own, k=3, patch=5, stride=2)
    unrelated, _ = retrieval.retrieve(other, k=3, patch=5, stride=2)
    assert (average - target).norm() < (unrelated - target).norm()


def test_retrieve_rejects_wrong_grid(smooth_images, tiny_alexnet):
    retrieval = Pool5Retrieval.from_images(tiny_alexnet(**NET64), smooth_images(2, size=64), progress=False)
    with pytest.raises(ValueError, match="pool5 must be"):
        retrieval.retrieve(torch.zeros(16, 6, 6))


def test_pca_search_finds_the_same_neighbours_for_database_patches():
    from generator.engine.patch_database import PatchDatabase

    coarse = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    images = torch.nn.functional.interpolate(coarse, size=32, mode="bilinear")
    database = PatchDatabase.from_images(images, patch=5, stride=3, search_dims=12)
    assert database.whitening.matrix.shape == (75, 12)
    indices, _ = database.nearest(database.patches[:50])
    assert (indices == torch.arange(50)).float().mean() > 0.9
    with pytest.raises(ValueError, match="whiten or search_dims"):
        PatchDatabase.from_images(images, patch=5, stride=3, whiten=True, search_dims=12)


def test_matching_leaves_torch_thread_count_alone():
    """faiss and torch share one OpenMP runtime: faiss's single search thread must not leave
    torch (the optimizer's forward/backward) on one core."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        database = PatchDatabase(torch.rand(50, 27), patch=3, stride=2)
        database.match(torch.rand(5, 27))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
