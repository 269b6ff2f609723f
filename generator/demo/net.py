"""The demo CNN: a narrow AlexNet for the 96x96 demo images, and its deterministic training.

The same inputs and config give the same weights, bit for bit, on one thread, in well under a
minute. Training adds an auxiliary style head on fc7 (see `train_model`): it is what makes fc7
topics follow the planted styles.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from generator.demo.world import CLASSES, GRID, draw_split


class DemoNet(nn.Module):
    """A narrow AlexNet for 96x96 images: torchvision's layout (features / avgpool / classifier
    with Dropout, Linear, ReLU at the same indices), pool5 = 64x6x6, fc6 = fc7 = 256.

    Strides: conv1 /2 and three 2x2 max-pools /8, so 96 / 16 = 6 and pool5 cell (r, c) sits over
    pixels [16r, 16r+16) x [16c, 16c+16). About 25 M multiply-adds per image.
    """

    def __init__(self, num_classes: int = 6, widths: tuple[int, ...] = (24, 48, 64, 64, 64),
                 hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=5, stride=2, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((GRID, GRID))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(c5 * GRID * GRID, hidden), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def build(num_classes: int = len(CLASSES), **kwargs) -> DemoNet:
    """Factory for catalogs: model name `generator.demo:build`."""
    return DemoNet(num_classes=num_classes, **kwargs)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 4e-3
    weight_decay: float = 1e-4
    max_steps: int | None = None  # stop early (tests train a few steps only)
    style_weight: float = 2.0  # weight of the auxiliary (class, style) head on fc7, see train_model
    seed: int = 0


def to_tensor(images: np.ndarray) -> Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of [0,1] images, rounded (they go into the catalog)."""
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3))
    return tuple(round(float(m), 3) for m in mean), tuple(round(float(s), 3) for s in std)


def fc7_and_logits(model: DemoNet, x: Tensor) -> tuple[Tensor, Tensor]:
    """fc7 (post-ReLU, after the classifier's own dropouts) and the class scores."""
    fc7 = model.classifier[:6](torch.flatten(model.avgpool(model.features(x)), 1))
    return fc7, model.classifier[6](fc7)


def train_model(images: Tensor, labels: Tensor, mean: tuple, std: tuple,
                config: TrainConfig = TrainConfig(), progress: bool = False,
                substyles: Tensor | None = None) -> DemoNet:
    """Train a fresh DemoNet; the same inputs and config give the same weights, bit for bit.

    `substyles` (one label per (class, style) pair) switches on an auxiliary head on the
    *direction* of fc7 during training (weight `config.style_weight`; dropped afterwards). A CNN
    trained on 1000 ImageNet classes ends up with fc7 units for sub-modes of a class, which is
    what the paper's NMF topics find; a six-class toy network gets away with class units that
    are blind to style. The head plants the styles into fc7 the way the world plants them into
    the pixels, so the atlas has something true to recover.

    Runs on one thread: float sums then add up in one fixed order, so the weights do not depend
    on the machine's core count, and on a busy shared CPU one thread is several times faster
    than two (OpenMP threads wait on each other whenever one is descheduled).
    """
    previous = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():  # dropout draws from the global generator: seed it, then restore it
            torch.manual_seed(config.seed)
            return _train(images, labels, mean, std, config, progress, substyles)
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])


def _train(images: Tensor, labels: Tensor, mean: tuple, std: tuple, config: TrainConfig,
           progress: bool, substyles: Tensor | None) -> DemoNet:
    model = build(num_classes=int(labels.max()) + 1)
    style_head = None
    if config.style_weight > 0 and substyles is not None:
        style_head = nn.Linear(model.classifier[4].out_features, int(substyles.max()) + 1)
    params = list(model.parameters()) + (list(style_head.parameters()) if style_head else [])
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = (len(images) + config.batch_size - 1) // config.batch_size
    total = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total)
    shuffle = torch.Generator().manual_seed(config.seed)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    model.train()
    step = 0
    for epoch in range(config.epochs):
        order = torch.randperm(len(images), generator=shuffle)
        running = 0.0
        for batch in order.split(config.batch_size):
            if step == total:
                return model.eval()
            fc7, logits = fc7_and_logits(model, (images[batch] - mean_t) / std_t)
            loss = nn.functional.cross_entropy(logits, labels[batch])
            if style_head is not None:
                # on the direction of fc7 only: styles must differ in *which* units fire, not in
                # how strongly the same units fire, which is what NMF topics can separate
                direction = nn.functional.normalize(fc7, dim=1) * 10.0
                # non-negative read-out: a style can only be told by units of its own, the
                # parts-based structure NMF looks for (shared units raise every style alike)
                style_logits = nn.functional.linear(direction, style_head.weight.clamp(min=0), style_head.bias)
                loss = loss + config.style_weight * nn.functional.cross_entropy(style_logits, substyles[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += float(loss.detach())
            step += 1
        if progress:
            print(f"  epoch {epoch + 1}/{config.epochs}: loss {running / steps_per_epoch:.3f}", flush=True)
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, mean: tuple, std: tuple) -> float:
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    model.eval()
    predictions = torch.cat([model((chunk - mean_t) / std_t).argmax(1) for chunk in images.split(128)])
    return float((predictions == labels).float().mean())


def substyle_labels(labels: Tensor, styles: list[int]) -> Tensor:
    """One label per (class, style) pair, for the auxiliary style head."""
    offsets = np.cumsum([0] + [len(c.styles) for c in CLASSES])
    return torch.tensor([int(offsets[int(y)]) + s for y, s in zip(labels, styles)])


def split_tensors(split: str, per_class: int, seed: int = 0) -> tuple[Tensor, Tensor, list[int]]:
    """A whole split in memory: images (N,3,S,S) in [0,1], labels (N,), styles."""
    drawn = list(draw_split(split, per_class, seed))
    images = to_tensor(np.stack([d[3] for d in drawn]))
    labels = torch.tensor([d[0] for d in drawn])
    return images, labels, [d[2] for d in drawn]
