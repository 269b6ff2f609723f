"""Feature extraction: same numbers as the pathway, batched, and cached on disk by content."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from generator.nets.features import cache_key, extract
from generator.nets.pathway import Pathway


class TinyNet(nn.Module):
    """AlexNet layout in miniature (pool5 4x2x2, fc6/fc7 16, fc8 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 5))


@pytest.fixture
def pathway() -> Pathway:
    torch.manual_seed(0)
    return Pathway(TinyNet(), input_size=32)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_extract_matches_the_pathway_in_any_batch_size(pathway, images):
    expected = pathway(images)
    for batch_size in (2, 32):
        acts = extract(pathway, images, batch_size=batch_size, progress=False)
        for name in ("pool5", "fc6", "fc7", "fc8"):
            assert torch.allclose(getattr(acts, name), getattr(expected, name), atol=1e-6), name
    assert acts.fc7.device.type == "cpu" and not acts.fc8.requires_grad


def test_cache_hit_returns_equal_tensors_without_a_forward(pathway, images, tmp_path, monkeypatch):
    first = extract(pathway, images, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 1

    def no_forward(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(pathway, "forward", no_forward)
    second = extract(pathway, images, cache_dir=tmp_path, progress=False)
    for name in ("pool5", "fc6", "fc7", "fc8"):
        assert torch.equal(getattr(first, name), getattr(second, name))


def test_cache_key_follows_images_and_weights(pathway, images, tmp_path):
    key = cache_key(pathway, images)
    changed = images.clone()
    changed[0, 0, 0, 0] += 0.5
    assert cache_key(pathway, changed) != key
    other = Pathway(TinyNet(), input_size=32)  # different random weights
    assert cache_key(other, images) != key
    assert cache_key(pathway, images.clone()) == key


def test_corrupt_cache_file_is_recomputed(pathway, images, tmp_path):
    extract(pathway, images, cache_dir=tmp_path, progress=False)
    (cache_file,) = tmp_path.glob("*.pt")
    cache_file.write_bytes(b"garbage")
    acts = extract(pathway, images, cache_dir=tmp_path, progress=False)
    assert torch.allclose(acts.fc8, pathway(images).fc8, atol=1e-6)
    assert torch.load(cache_file, weights_only=True)["fc8"].shape == (5, 5)  # rewritten
