"""The demo world's drawing: six classes of procedurally drawn images with planted truth.

The world *plants* what the atlas's methods should find, so tests can check they find it:

* every class has one object with three clearly distinct **styles** (colour scheme + texture,
  for the ladybugs also the silhouette: a red/white striped lighthouse vs a navy one with lit
  windows), which fc7 topics should recover (Sec. 4.2 of the paper);
* every class keeps its object at a fixed **layout** (the lighthouse in the centre column, the
  boat's hull in the bottom third, the balloon top-left, ...; the ladybugs crawl everywhere,
  like the paper's terrier), which location grids on pool5 should recover (Sec. 4.1).

Backgrounds (gradients, waves, tiles, speckle), clutter shapes, position jitter and scale
noise keep the task from being trivial. Everything is drawn with numpy from explicit seeds, so
a seed gives byte-identical PNGs.

Geometry: images are 96x96, pool5 is 6x6, so pool5 cell (r, c) sits over pixels
[16r, 16r+16) x [16c, 16c+16). Layouts are given in those cells.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

IMAGE_SIZE = 96
GRID = 6  # pool5 is GRID x GRID
CELL = IMAGE_SIZE // GRID  # pixels per pool5 cell
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
