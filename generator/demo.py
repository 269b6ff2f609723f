"""The offline demo world: a procedurally drawn image world with planted truth, and its CNN.

`atlas demo` must build a whole atlas with no network and no real data, and the tests must be
able to check that the methods find what is really there. So the world *plants* it:

* every class has one object with three clearly distinct **styles** (colour scheme + texture,
  for the ladybugs also the silhouette: a red/white striped lighthouse vs a navy one with lit
  windows), which fc7 topics should recover (Sec. 4.2 of the paper);
* every class keeps its object at a fixed **layout** (the lighthouse in the centre column, the
  boat's hull in the bottom third, the balloon top-left, ...; the ladybugs crawl everywhere,
  like the paper's terrier), which location grids on pool5 should recover (Sec. 4.1).

Backgrounds (gradients, waves, tiles, speckle), clutter shapes, position jitter and scale
noise keep the task from being trivial. Everything is drawn with numpy from explicit seeds, so
a seed gives byte-identical PNGs, and the small AlexNet-layout CNN (`build`) trains on them
deterministically, on one thread, in well under a minute. Training adds an auxiliary style
head on fc7 (see `train_model`): it is what makes fc7 topics follow the planted styles.
`ensure_demo()` makes both once and caches them under `$ATLAS_CACHE/demo/v<DEMO_VERSION>`
(or `~/.cache/atlas/demo/v<DEMO_VERSION>`), behind a file lock, renamed into place when whole.

Geometry: images are 96x96, pool5 is 6x6, so pool5 cell (r, c) sits over pixels
[16r, 16r+16) x [16c, 16c+16). Layouts are given in those cells.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

DEMO_VERSION = 5
IMAGE_SIZE = 96
GRID = 6  # pool5 is GRID x GRID
CELL = IMAGE_SIZE // GRID  # pixels per pool5 cell
WORLD_PER_CLASS = 60  # images per class in world/ (what the atlas reads)
HELDOUT_PER_CLASS = 40  # images per class in heldout/ (accuracy only)
TRAIN_PER_CLASS = 150  # images per class drawn in memory for training only
SPLIT_CODES = {"world": 1, "heldout": 2, "train": 3}

Canvas = np.ndarray  # (S, S, 3) float32 in [0, 1]
Texture = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (u, v) object coords -> (S, S, 3)


# --------------------------------------------------------------------------- drawing primitives

_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5


def _coverage(sdf: np.ndarray) -> np.ndarray:
    """Anti-aliased alpha from a signed distance in pixels (negative inside)."""
    return np.clip(0.5 - sdf, 0.0, 1.0)


def ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    d = np.sqrt(((_XX - cx) / rx) ** 2 + ((_YY - cy) / ry) ** 2)
    return _coverage((d - 1.0) * min(rx, ry))


def box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    sdf = np.maximum(np.maximum(x0 - _XX, _XX - x1), np.maximum(y0 - _YY, _YY - y1))
    return _coverage(sdf)


def polygon(points: list[tuple[float, float]]) -> np.ndarray:
    """A convex polygon (either winding): the max of the signed distances to its edges."""
    area2 = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]))
    if area2 < 0:
        points = points[::-1]
    sdf = np.full(_XX.shape, -np.inf, dtype=np.float32)
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        ex, ey = x1 - x0, y1 - y0
        sdf = np.maximum(sdf, ((_XX - x0) * ey - (_YY - y0) * ex) / float(np.hypot(ex, ey)))
    return _coverage(sdf)


def paint(canvas: Canvas, alpha: np.ndarray, colour: np.ndarray | tuple) -> None:
    """Alpha-blend a colour (3,) or a texture (S, S, 3) onto the canvas in place."""
    a = alpha[..., None]
    canvas *= 1.0 - a
    canvas += a * np.asarray(colour, dtype=np.float32)


# --------------------------------------------------------------------------- textures (styles)

def _mix(a: tuple, b: tuple, t: np.ndarray) -> np.ndarray:
    a_, b_ = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a_ + (b_ - a_) * t[..., None]


def stripes(a: tuple, b: tuple, period: float, angle: float = 0.0) -> Texture:
    """Bands of two colours; angle 0 = horizontal bands."""
    def texture(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        t = v * np.cos(angle) + u * np.sin(angle)
        return _mix(a, b, (np.sin(2 * np.pi * t / period) > 0).astype(np.float32))
    return texture


def dots(base: tuple, dot: tuple, period: float, radius: float) -> Texture:
    """A base colour with a lattice of round dots."""
    def texture(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du = (u % period) - period / 2
        dv = (v % period) - period / 2
        return _mix(base, dot, _coverage(np.sqrt(du**2 + dv**2) - radius))
    return texture


def checks(a: tuple, b: tuple, period: float) -> Texture:
    def texture(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
        return _mix(a, b, t)
    return texture


def scales(base: tuple, edge: tuple, period: float) -> Texture:
    """Overlapping arcs like fish scales."""
    def texture(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        row = np.floor(v / period)
        du = ((u + row * period / 2) % period) - period / 2
        dv = (v % period)
        ring = np.abs(np.sqrt(du**2 + dv**2) - period * 0.55)
        return _mix(base, edge, _coverage(ring - 0.9))
    return texture


def solid(colour: tuple) -> Texture:
    return lambda u, v: np.broadcast_to(np.asarray(colour, np.float32), u.shape + (3,)).copy()


# --------------------------------------------------------------------------- the classes

@dataclass(frozen=True)
class Style:
    name: str
    body: Texture  # the object's main surface
    accent: tuple  # a second colour used by the object's details (sail, flower, basket...)
    aspect: float = 1.0  # height / width of the silhouette, for styles that also change the shape


@dataclass(frozen=True)
class DemoClass:
    id: str
    name: str
    styles: tuple[Style, ...]
    layout: frozenset[tuple[int, int]]  # pool5 cells (row, col) where the planted parts sit
    layout_note: str
    draw: Callable[[Canvas, np.random.Generator, Style], np.ndarray]  # returns the planted parts' alpha


def _cells(rows: range, cols: range) -> frozenset[tuple[int, int]]:
    return frozenset((r, c) for r in rows for c in cols)


def _jitter(rng: np.random.Generator, pixels: float) -> float:
    return float(rng.uniform(-pixels, pixels))


def _object_coords(rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Texture coordinates that move with the object (random phase, scaled with it)."""
    return (_XX + rng.uniform(0, 40)) / scale, (_YY + rng.uniform(0, 40)) / scale


def draw_lighthouse(canvas: Canvas, rng: np.random.Generator, style: Style) -> np.ndarray:
    s = rng.uniform(0.88, 1.12)
    cx, base = 48 + _jitter(rng, 3), 78 + _jitter(rng, 2)
    top = base - 58 * s
    tower = polygon([(cx - 7 * s, top), (cx + 7 * s, top), (cx + 12 * s, base), (cx - 12 * s, base)])
    paint(canvas, tower, style.body(*_object_coords(rng, s)))
    gallery = box(cx - 10 * s, top - 3 * s, cx + 10 * s, top)
    lamp = box(cx - 6 * s, top - 12 * s, cx + 6 * s, top - 3 * s)
    dome = ellipse(cx, top - 12 * s, 8 * s, 6 * s) * (_YY < top - 12 * s)
    paint(canvas, gallery, (0.1, 0.1, 0.12))
    paint(canvas, lamp, (1.0, 0.93, 0.35))
    paint(canvas, dome, style.accent)
    return np.maximum.reduce([tower, gallery, lamp, dome])


def draw_sailboat(canvas: Canvas, rng: np.random.Generator, style: Style) -> np.ndarray:
    s = rng.uniform(0.9, 1.1)
    cx, deck = 48 + _jitter(rng, 4), 70 + _jitter(rng, 2)
    hull = polygon([(cx - 40 * s, deck), (cx + 40 * s, deck), (cx + 30 * s, deck + 16 * s), (cx - 30 * s, deck + 16 * s)])
    mast = box(cx - 1.2, deck - 40 * s, cx + 1.2, deck)
    sail = polygon([(cx + 2, deck - 38 * s), (cx + 26 * s, deck - 4 * s), (cx + 2, deck - 4 * s)])
    jib = polygon([(cx - 2, deck - 34 * s), (cx - 2, deck - 4 * s), (cx - 18 * s, deck - 4 * s)])
    paint(canvas, mast, (0.25, 0.18, 0.1))
    paint(canvas, sail, style.accent)
    paint(canvas, jib, style.accent)
    paint(canvas, hull, style.body(*_object_coords(rng, s)))
    return hull  # the planted part: sails vary in height, the hull is always at the bottom


def draw_ladybugs(canvas: Canvas, rng: np.random.Generator, style: Style) -> np.ndarray:
    """A swarm all over the image: the class has no preferred place (the paper's terrier)."""
    alpha = np.zeros(_XX.shape, np.float32)
    count = int(rng.integers(9, 14))
    # one bug per cell of a jittered 4x4 lattice (random subset), so the swarm covers everything
    slots = rng.permutation(16)[:count]
    for slot in slots:
        r = rng.uniform(7.0, 9.5)
        cx = (slot % 4) * 24 + 12 + _jitter(rng, 5)
        cy = (slot // 4) * 24 + 12 + _jitter(rng, 5)
        body = ellipse(cx, cy, r, r * style.aspect)
        head = ellipse(cx, cy - r * style.aspect, r * 0.45, r * 0.35)
        paint(canvas, head, (0.05, 0.05, 0.05))
        paint(canvas, body, style.body(*_object_coords(rng, r / 8)))
        paint(canvas, box(cx - 0.6, cy - r * style.aspect, cx + 0.6, cy + r * style.aspect) * body, style.accent)
        alpha = np.maximum.reduce([alpha, body, head])
    return alpha


def draw_balloon(canvas: Canvas, rng: np.random.Generator, style: Style) -> np.ndarray:
    s = rng.uniform(0.88, 1.1)
    cx, cy = 24 + _jitter(rng, 3), 23 + _jitter(rng, 2)
    envelope = ellipse(cx, cy, 19 * s, 20 * s)
    skirt = polygon([(cx - 9 * s, cy + 16 * s), (cx + 9 * s, cy + 16 * s), (cx + 4 * s, cy + 24 * s), (cx - 4 * s, cy + 24 * s)])
    basket = box(cx - 4 * s, cy + 27 * s, cx + 4 * s, cy + 33 * s)
    ropes = (box(cx - 4 * s, cy + 23 * s, cx - 3 * s, cy + 27 * s)
             + box(cx + 3 * s, cy + 23 * s, cx + 4 * s, cy + 27 * s))
    _, v = _object_coords(rng, s)
    # gores follow the envelope's curvature: texture in a squeezed horizontal coordinate
    squeeze = (_XX - cx) / np.sqrt(np.maximum(1e-3, 1 - ((_YY - cy) / (20 * s)) ** 2).clip(0.15))
    paint(canvas, skirt, style.accent)
    paint(canvas, envelope, style.body(squeeze + 40, v))
    paint(canvas, ropes.clip(0, 1), (0.2, 0.15, 0.1))
    paint(canvas, basket, (0.55, 0.35, 0.15))
    return envelope  # the planted part


def draw_fish(canvas: Canvas, rng: np.random.Generator, style: Style) -> np.ndarray:
    s = rng.uniform(0.88, 1.1)
    cx, cy = 52 + _jitter(rng, 4), 48 + _jitter(rng, 3)
    body = ellipse(cx, cy, 27 * s, 13 * s)
    tail = polygon([(cx - 24 * s, cy), (cx - 38 * s, cy - 11 * s), (cx - 38 * s, cy + 11 * s)])
    fin = polygon([(cx - 6 * s, cy - 11 * s), (cx + 6 * s, cy - 20 * s), (cx + 10 * s, cy - 11 * s)])
    eye = ellipse(cx + 17 * s, cy - 3 * s, 3 * s, 3 * s)
    pupil = ellipse(cx + 18 * s, cy - 3 * s, 1.5 * s, 1.5 * s)
    paint(canvas, tail, style.accent)
    paint(canvas, fin, style.accent)
    paint(canvas, body, style.body(*_object_coords(rng, s)))
    paint(canvas, eye, (1.0, 1.0, 1.0))
    paint(canvas, pupil, (0.0, 0.0, 0.0))
    return np.maximum.reduce([body, tail, fin])


def draw_cactus(canvas: Canvas, rng: np.random.Generator, style: Style) -> np.ndarray:
    s = rng.uniform(0.9, 1.1)
    cx, ground = 78 + _jitter(rng, 2.5), 92 + _jitter(rng, 2)
    top = ground - 58 * s
    trunk = box(cx - 7 * s, top, cx + 7 * s, ground) + ellipse(cx, top, 7 * s, 6 * s)
    arm_y = ground - 34 * s - _jitter(rng, 3)
    left_arm = box(cx - 14 * s, arm_y, cx - 6 * s, arm_y + 5 * s) + box(cx - 14 * s, arm_y - 14 * s, cx - 9 * s, arm_y + 5 * s)
    right_arm = box(cx + 6 * s, arm_y + 8 * s, cx + 15 * s, arm_y + 13 * s)
    shape = np.clip(trunk + left_arm + right_arm, 0, 1)
    pot = polygon([(cx - 12 * s, ground - 2), (cx + 12 * s, ground - 2), (cx + 9 * s, 96.0), (cx - 9 * s, 96.0)])
    flower = ellipse(cx, top - 5 * s, 5 * s, 4 * s)
    paint(canvas, shape, style.body(*_object_coords(rng, s)))
    paint(canvas, pot, (0.72, 0.38, 0.2))
    paint(canvas, flower, style.accent)
    return np.maximum.reduce([shape, pot, flower])


CLASSES: tuple[DemoClass, ...] = (
    DemoClass(
        "lighthouse", "lighthouse",
        (Style("red and white bands", stripes((0.85, 0.1, 0.1), (0.97, 0.97, 0.95), 9.0), (0.7, 0.05, 0.05)),
         Style("navy with lit windows", dots((0.08, 0.12, 0.35), (1.0, 0.85, 0.2), 8.0, 2.0), (0.1, 0.1, 0.3)),
         Style("black and white spiral", stripes((0.05, 0.05, 0.05), (0.95, 0.95, 0.95), 10.0, 0.8), (0.0, 0.0, 0.0))),
        _cells(range(0, 5), range(2, 4)), "a tall tower in the centre column, lamp at the top",
        draw_lighthouse,
    ),
    DemoClass(
        "sailboat", "sailboat",
        (Style("wooden hull, white sails", stripes((0.45, 0.26, 0.1), (0.3, 0.16, 0.05), 4.0), (0.98, 0.98, 0.98)),
         Style("blue hull with portholes, orange sails", dots((0.1, 0.35, 0.85), (0.95, 0.95, 0.95), 9.0, 2.6), (1.0, 0.55, 0.1)),
         Style("red and yellow racing hull, black sails", stripes((0.9, 0.1, 0.15), (1.0, 0.85, 0.1), 8.0, np.pi / 2), (0.1, 0.1, 0.1))),
        _cells(range(4, 6), range(0, 6)), "the hull along the bottom third",
        draw_sailboat,
    ),
    DemoClass(
        "ladybug", "ladybug swarm",
        (Style("round, red with black spots", dots((0.9, 0.08, 0.05), (0.05, 0.05, 0.05), 6.0, 1.8), (0.05, 0.05, 0.05), 0.9),
         Style("long, yellow with brown bands", stripes((1.0, 0.85, 0.1), (0.5, 0.3, 0.1), 5.0), (0.5, 0.3, 0.1), 1.45),
         Style("flat, teal with white spots", dots((0.0, 0.55, 0.6), (1.0, 1.0, 1.0), 6.0, 1.6), (1.0, 1.0, 1.0), 0.6)),
        _cells(range(0, 6), range(0, 6)), "everywhere: bugs crawl over the whole image",
        draw_ladybugs,
    ),
    DemoClass(
        "balloon", "hot-air balloon",
        (Style("rainbow gores", lambda u, v: _rainbow(u, 7.0), (0.85, 0.2, 0.2)),
         Style("purple and white checks", checks((0.5, 0.1, 0.65), (0.97, 0.97, 0.97), 7.0), (0.5, 0.1, 0.65)),
         Style("yellow and blue bands", stripes((1.0, 0.85, 0.1), (0.1, 0.3, 0.85), 8.0), (0.1, 0.3, 0.85))),
        _cells(range(0, 3), range(0, 3)), "top-left corner",
        draw_balloon,
    ),
    DemoClass(
        "fish", "tropical fish",
        (Style("orange with white bands", stripes((1.0, 0.45, 0.0), (1.0, 1.0, 1.0), 14.0, np.pi / 2), (0.1, 0.05, 0.0)),
         Style("blue with yellow spots", dots((0.05, 0.2, 0.75), (1.0, 0.9, 0.1), 7.0, 2.0), (1.0, 0.9, 0.1)),
         Style("green scales", scales((0.15, 0.65, 0.25), (0.02, 0.25, 0.05), 6.0), (0.1, 0.4, 0.1))),
        _cells(range(2, 4), range(1, 5)), "the middle band",
        draw_fish,
    ),
    DemoClass(
        "cactus", "potted cactus",
        (Style("green with white spines", dots((0.1, 0.55, 0.15), (0.97, 0.97, 0.9), 5.0, 1.0), (1.0, 0.3, 0.6)),
         Style("blue-grey ribbed", stripes((0.35, 0.5, 0.6), (0.15, 0.25, 0.35), 4.0, np.pi / 2), (1.0, 0.9, 0.1)),
         Style("purple with yellow spots", dots((0.45, 0.15, 0.55), (1.0, 0.9, 0.2), 6.0, 1.3), (1.0, 0.5, 0.1))),
        _cells(range(1, 6), range(4, 6)), "the right-hand third",
        draw_cactus,
    ),
)


def _rainbow(u: np.ndarray, width: float) -> np.ndarray:
    """Vertical gores cycling through six saturated hues."""
    palette = np.array([(0.9, 0.1, 0.1), (1.0, 0.55, 0.0), (1.0, 0.9, 0.1), (0.1, 0.7, 0.2),
                        (0.1, 0.35, 0.9), (0.55, 0.15, 0.75)], np.float32)
    return palette[np.floor(u / width).astype(np.int64) % len(palette)]


# --------------------------------------------------------------------------- backgrounds, clutter

def _random_colour(rng: np.random.Generator, saturation: float, value: float) -> np.ndarray:
    """A colour of random hue (HSV with the given saturation and value)."""
    h = rng.uniform(0, 6)
    c = value * saturation
    x = c * (1 - abs(h % 2 - 1))
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return np.asarray(rgb, np.float32) + (value - c)


def background(rng: np.random.Generator) -> Canvas:
    """A varied, softly textured backdrop: gradient, waves, tiles or speckle, in a random hue."""
    top = _random_colour(rng, rng.uniform(0.05, 0.4), rng.uniform(0.45, 0.95))
    bottom = _random_colour(rng, rng.uniform(0.05, 0.4), rng.uniform(0.3, 0.9))
    t = (_YY / IMAGE_SIZE)[..., None]
    canvas = top * (1 - t) + bottom * t
    kind = rng.integers(4)
    if kind == 1:  # waves
        phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(8, 20)
        canvas += 0.07 * np.sin(2 * np.pi * _YY / period + 3 * np.sin(_XX / 11 + phase))[..., None]
    elif kind == 2:  # tiles
        period = rng.uniform(10, 24)
        canvas += 0.06 * (((_XX // period) + (_YY // period)) % 2 - 0.5)[..., None]
    elif kind == 3:  # speckle (grass, sand)
        canvas += rng.normal(0, 0.05, (IMAGE_SIZE, IMAGE_SIZE, 1)).astype(np.float32)
    canvas += rng.normal(0, 0.015, canvas.shape).astype(np.float32)
    return canvas.astype(np.float32)


def clutter(canvas: Canvas, rng: np.random.Generator) -> None:
    """A few plain shapes of random colour: rocks, leaves, clouds the classifier must ignore."""
    for _ in range(int(rng.integers(2, 6))):
        colour = _random_colour(rng, rng.uniform(0.0, 0.7), rng.uniform(0.3, 1.0))
        x, y, r = rng.uniform(0, IMAGE_SIZE), rng.uniform(0, IMAGE_SIZE), rng.uniform(3, 10)
        shape = rng.integers(3)
        if shape == 0:
            alpha = ellipse(x, y, r, r * rng.uniform(0.5, 1.2))
        elif shape == 1:
            alpha = box(x - r, y - r * 0.6, x + r, y + r * 0.6)
        else:
            alpha = polygon([(x, y - r), (x + r, y + r), (x - r, y + r)])
        paint(canvas, alpha, colour)


def render(demo_class: DemoClass, style_index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image (S, S, 3) uint8 and the alpha (S, S) in [0, 1] of the planted parts."""
    canvas = background(rng)
    clutter(canvas, rng)
    style = demo_class.styles[style_index]
    alpha = demo_class.draw(canvas, rng, style)
    # global photometric noise: the same style is never exactly the same colour twice
    canvas *= rng.uniform(0.85, 1.1)
    canvas += rng.uniform(-0.05, 0.05, 3).astype(np.float32)
    image = (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)
    return image, np.clip(alpha, 0, 1)


def image_rng(seed: int, split: str, class_index: int, i: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], class_index, i]))


def style_for(i: int, demo_class: DemoClass) -> int:
    """Styles take turns, so every split has them in (nearly) equal numbers."""
    return i % len(demo_class.styles)


def draw_split(split: str, per_class: int, seed: int = 0) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """(class index, image index, style, uint8 image) for every image of a split, in order."""
    for class_index, demo_class in enumerate(CLASSES):
        for i in range(per_class):
            style = style_for(i, demo_class)
            image, _ = render(demo_class, style, image_rng(seed, split, class_index, i))
            yield class_index, i, style, image


def write_split(root: Path, split: str, per_class: int, seed: int = 0) -> dict[str, int]:
    """Write a split as an ImageNet-layout folder <root>/<class_id>/<class_id>_<i>.png."""
    styles = {}
    for class_index, i, style, image in draw_split(split, per_class, seed):
        class_id = CLASSES[class_index].id
        name = f"{class_id}_{i:03d}.png"
        (root / class_id).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / class_id / name, optimize=False)
        styles[name] = style
    return styles


# --------------------------------------------------------------------------- the CNN

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


# --------------------------------------------------------------------------- the cached world

def layout_windows_of(cells: set[tuple[int, int]] | frozenset, size: int = 2, stride: int = 2) -> set[tuple[int, int]]:
    """Windows (r, c) of the default grid (size x size at `stride`) at least half inside `cells`."""
    n = (GRID - size) // stride + 1
    windows = set()
    for r in range(n):
        for c in range(n):
            covered = [(r * stride + i, c * stride + j) in cells for i in range(size) for j in range(size)]
            if 2 * sum(covered) >= len(covered):
                windows.add((r, c))
    return windows


@dataclass
class DemoWorld:
    """The cached demo: images on disk (ImageNet layout), trained weights, planted truth."""

    root: Path
    image_root: Path  # <root>/world/<class_id>/<class_id>_<i>.png
    heldout_root: Path
    weights: Path  # state_dict of build(num_classes)
    class_ids: list[str]  # in model output order
    class_names: list[str]
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    accuracy: float  # held-out top-1
    train_seconds: float
    catalog_path: Path
    styles: dict[str, int] = field(repr=False, default_factory=dict)  # image file name -> style
    style_names: dict[str, list[str]] = field(repr=False, default_factory=dict)
    layouts: dict[str, set[tuple[int, int]]] = field(repr=False, default_factory=dict)

    def style_of(self, image_name: str) -> int:
        """Planted style index of an image (file name, with or without folder)."""
        return self.styles[Path(image_name).name]

    def n_styles(self, class_id: str) -> int:
        return len(self.style_names[class_id])

    def layout(self, class_id: str) -> set[tuple[int, int]]:
        """Planted part positions as pool5 cells (row, col), each in 0..5."""
        return set(self.layouts[class_id])

    def layout_windows(self, class_id: str) -> set[tuple[int, int]]:
        """Windows (row, col) in 0..2 of the 3x3 grid of 2x2 pool5 windows at stride 2 that lie
        at least half on the planted parts (window (r, c) opens cells 2r..2r+1 x 2c..2c+1)."""
        return layout_windows_of(self.layouts[class_id])

    def load_model(self) -> DemoNet:
        model = build(num_classes=len(self.class_ids))
        model.load_state_dict(torch.load(self.weights, weights_only=True))
        return model.eval()

    def pathway(self):
        from generator.pathway import Pathway

        return Pathway(self.load_model(), self.mean, self.std, self.input_size)

    def write_catalog(self, path: Path, output: str | Path = "site") -> Path:
        """Write a catalog.yaml for an atlas of the demo world (what `atlas demo` builds)."""
        import yaml

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(catalog_dict(self, output), sort_keys=False)
        _atomic_write_text(path, text)
        return path


def catalog_dict(world: DemoWorld, output: str | Path = "site") -> dict:
    """The demo catalog: every class, topics k = its number of planted styles, a small engine.

    Relative `output` paths resolve against the catalog's folder (catalog.py); `atlas demo`
    passes its --output (default ./site) as an override.
    """
    counts = [world.n_styles(class_id) for class_id in world.class_ids]
    usual_k = max(set(counts), key=counts.count)
    classes = []
    for class_id, name, k in zip(world.class_ids, world.class_names, counts):
        entry: dict = {"id": class_id, "name": name}
        if k != usual_k:
            entry["methods"] = {"topics": {"k": k}}
        classes.append(entry)
    return {
        "model": {
            "name": "generator.demo:build",
            "weights": str(world.weights.resolve()),
            "num_classes": len(world.class_ids),
            "labels": list(world.class_ids),
            "input_size": world.input_size,
            "mean": list(world.mean),
            "std": list(world.std),
        },
        "images": {"source": "folder", "root": str(world.image_root.resolve()), "per_class": 50,
                   "truth": str((world.root / "truth.json").resolve())},
        "classes": classes,
        "methods": {"topics": {"k": usual_k}},
        "engine": {"iterations": 80},
        "output": str(output),
        "device": "cpu",
        "seed": 0,
    }


def default_cache_dir() -> Path:
    base = os.environ.get("ATLAS_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "atlas"
    return root / "demo" / f"v{DEMO_VERSION}"


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive lock across processes (several test workers may call ensure_demo at once)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load(root: Path) -> DemoWorld:
    meta = json.loads((root / "meta.json").read_text())
    truth = json.loads((root / "truth.json").read_text())
    return DemoWorld(
        root=root,
        image_root=root / "world",
        heldout_root=root / "heldout",
        weights=root / "model.pt",
        class_ids=meta["class_ids"],
        class_names=meta["class_names"],
        input_size=meta["input_size"],
        mean=tuple(meta["mean"]),
        std=tuple(meta["std"]),
        accuracy=meta["accuracy"],
        train_seconds=meta["train_seconds"],
        catalog_path=root / "catalog.yaml",
        styles=truth["styles"],
        style_names=truth["style_names"],
        layouts={c: {tuple(cell) for cell in cells} for c, cells in truth["layouts"].items()},
    )


def create(root: Path, seed: int = 0, config: TrainConfig = TrainConfig(), progress: bool = True) -> None:
    """Draw the world, train the CNN and write everything into `root` (which must not exist yet).

    Everything goes into a temporary sibling first and is renamed into place at the end, so a
    killed run never leaves a half-written world that looks finished.
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
    try:
        log = print if progress else (lambda *a, **k: None)
        log(f"demo: drawing the world into {root} ...", flush=True)
        styles = write_split(tmp / "world", "world", WORLD_PER_CLASS, seed)
        styles.update(write_split(tmp / "heldout", "heldout", HELDOUT_PER_CLASS, seed))
        train_images, train_labels, train_styles = split_tensors("train", TRAIN_PER_CLASS, seed)
        test_images, test_labels, _ = split_tensors("heldout", HELDOUT_PER_CLASS, seed)
        mean, std = channel_stats(train_images)
        log(f"demo: training the demo CNN on {len(train_images)} images (one thread) ...", flush=True)
        start = time.perf_counter()
        model = train_model(train_images, train_labels, mean, std, config, progress=progress,
                            substyles=substyle_labels(train_labels, train_styles))
        seconds = time.perf_counter() - start
        held_out = accuracy(model, test_images, test_labels, mean, std)
        log(f"demo: trained in {seconds:.1f}s, held-out accuracy {held_out:.1%}", flush=True)
        torch.save(model.state_dict(), tmp / "model.pt")
        truth = {
            "styles": styles,
            "style_names": {c.id: [s.name for s in c.styles] for c in CLASSES},
            "layouts": {c.id: sorted(c.layout) for c in CLASSES},
            "layout_notes": {c.id: c.layout_note for c in CLASSES},
            "grid": {"pool5": GRID, "cell_pixels": CELL},
        }
        (tmp / "truth.json").write_text(json.dumps(truth, indent=1))
        meta = {
            "version": DEMO_VERSION, "seed": seed, "class_ids": [c.id for c in CLASSES],
            "class_names": [c.name for c in CLASSES], "input_size": IMAGE_SIZE,
            "mean": mean, "std": std, "accuracy": held_out, "train_seconds": round(seconds, 2),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        # the catalog names final paths, so it is written from a world that points at `root`
        world = _load(tmp)
        world.root, world.image_root, world.weights = root, root / "world", root / "model.pt"
        world.write_catalog(tmp / "catalog.yaml")
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_demo(cache_dir: str | Path | None = None, progress: bool = True) -> DemoWorld:
    """The demo world and its trained CNN: loaded from the cache, or made (once) and cached."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not (root / "meta.json").is_file():
        with _locked(root.parent / f".{root.name}.lock"):
            if not (root / "meta.json").is_file():  # another process may have made it meanwhile
                if root.exists():  # a foreign or broken folder: never build on top of it
                    raise RuntimeError(f"{root} exists but holds no finished demo world; remove it")
                for stale in root.parent.glob(f".{root.name}.tmp-*"):  # left by killed runs (we hold the lock)
                    shutil.rmtree(stale, ignore_errors=True)
                create(root, progress=progress)
    return _load(root)
