"""The unit atlas's work: top dataset patches, class selectivity, unit visualizations and
per-filter textures, written under `<output>/units/` with `units/manifest.json` last.

- Top patches (Girshick et al.'s pool5 figure, CS231n's "patches that maximally activate"):
  a pool5 channel's activation on an image is its maximum over positions; the patch is the
  receptive field of that position, clipped to the image. fc units see the whole image.
- Visualization: maximize the unit through the same engine as the methods (`Direction` on a
  one-hot vector: a pool5 channel's mean over positions, one fc unit), without and with a patch
  prior built from the unit's own top images (the unit's analogue of the paper's class prior),
  in the engine's Fourier parameterization through its transforms, from a smooth random start.
- Texture (Xia et al., "every filter extracts a specific texture"): invert the pool5 map of the
  unit's top image with every other channel zeroed, matched on the kept channel (`ChannelMatch`).
All problems of all units go to `solve` together, `batch` problems per call; a picture whose
content key is in the old manifest (and on disk) is reused, so changing `per_class` or
`textures` re-solves only the new problems.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from generator import safefs, store
from generator.engine import recipes
from generator.engine.decorrelated import Decorrelated
from generator.engine.settings import JITTER_ONLY, RAW_PIXELS, Settings, settings_from
from generator.engine.solve import Problem, initial_image, solve
from generator.engine.terms import ChannelMatch, Direction, feature_inversion
from generator.errors import AtlasError
from generator.methods.common import model_mean
from generator.nets.families import pathway_words
from generator.nets.pathway import Pathway
from generator.units import FOLDER, LAYERS, MANIFEST, SELECTIVITY, VERSION, UnitsParams, UnitsPlan

PATCH_SIZE = 112  # longer side of a patch crop (px)
THUMB = 96  # thumbnails on a unit page (px)
ICON = 56  # the layer index's thumbnails (px, JPEG q75, ~2 KB): small, so its first screens stay light


# ---------------------------------------------------------------------------------------------
# Receptive fields


def receptive_fields(pathway: Pathway) -> Tensor:
    """(H, W, 4) int boxes [top, left, bottom, right) in input pixels of each pool5 position,
    clipped to the image: computed from the layers' kernels and strides where the trunk is a
    plain stack of convs and pools, else measured by backpropagating from each position. A
    transformer's token gets its own cell and its neighbours (transformers.token_fields: its
    gradient reaches the whole image)."""
    from generator.nets.split import token_fields

    boxes = token_fields(pathway)
    if boxes is not None:
        return boxes
    boxes = _analytic_fields(pathway)
    return boxes if boxes is not None else _gradient_fields(pathway)


def _trunk_layers(pathway: Pathway) -> list[nn.Module]:
    features: nn.Module = pathway.features  # type: ignore[assignment]
    layers = list(features.children()) if isinstance(features, nn.Sequential) else [features]
    avgpool: nn.Module = pathway.avgpool  # type: ignore[assignment]
    return layers + ([avgpool] if pathway.family == "fc" else [])


def _analytic_fields(pathway: Pathway) -> Tensor | None:
    size, jump, field_size, start = pathway.input_size, 1, 1, 0.5  # start: centre of the first output
    for layer in _trunk_layers(pathway):
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p, d = (_pair(getattr(layer, name, 1)) for name in ("kernel_size", "stride", "padding", "dilation"))
            if len({k, s, p, d}) > 4 or any(a != b for a, b in (k, s, p, d)) or getattr(layer, "ceil_mode", False):
                return None  # non-square or ceil-mode layers: measure instead
            k_eff = d[0] * (k[0] - 1) + 1
        elif isinstance(layer, nn.AdaptiveAvgPool2d):
            out = _pair(layer.output_size)[0]
            if out is None or size % out:
                return None
            k_eff, s, p = size // out, (size // out,) * 2, (0, 0)
        elif isinstance(layer, (nn.ReLU, nn.Dropout, nn.BatchNorm2d, nn.LocalResponseNorm, nn.Identity)):
            continue
        else:
            return None
        start += ((k_eff - 1) / 2 - p[0]) * jump
        field_size += (k_eff - 1) * jump
        jump *= s[0]
        size = (size + 2 * p[0] - k_eff) // s[0] + 1
    height, width = pathway.pool5_shape[1:]
    if (height, width) != (size, size):
        return None
    centres = [start - 0.5 + i * jump for i in range(size)]  # pixel-index centres
    half = (field_size - 1) / 2
    spans = [(max(0, math.ceil(c - half)), min(pathway.input_size, math.floor(c + half) + 1)) for c in centres]
    return torch.tensor([[[top, left, bottom, right] for (left, right) in spans] for (top, bottom) in spans],
                        dtype=torch.long)


def _pair(value: Any) -> tuple[Any, Any]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)  # type: ignore[return-value]


def _gradient_fields(pathway: Pathway) -> Tensor:
    """Boxes of the input pixels whose gradient reaches each pool5 position (two random images)."""
    size = pathway.input_size
    _, height, width = pathway.pool5_shape
    device = pathway.mean.device
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device).requires_grad_(True)
    pool5 = pathway.trunk(images)
    boxes = torch.zeros(height, width, 4, dtype=torch.long)
    for i in range(height):
        for j in range(width):
            (grad,) = torch.autograd.grad(pool5[:, :, i, j].sum(), images, retain_graph=True)
            reached = grad.abs().sum((0, 1)) > 0
            rows, cols = reached.any(1).nonzero().flatten(), reached.any(0).nonzero().flatten()
            if len(rows) == 0:  # nothing reaches it (a dead position): its nominal cell
                rows = torch.tensor([i * size // height, (i + 1) * size // height - 1])
                cols = torch.tensor([j * size // width, (j + 1) * size // width - 1])
            boxes[i, j] = torch.tensor([int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1])
    return boxes


# ---------------------------------------------------------------------------------------------
# Statistics


@dataclass
class Dataset:
    """Every catalog image with its class, and the unit activations the atlas ranks by."""

    images: Tensor  # (N, 3, S, S)
    owners: list[int]  # class position (in `slugs`) of each image
    names: list[str]  # file names
    positions: list[int]  # index of the image within its class
    slugs: list[str]
    values: dict[str, Tensor]  # layer -> (N, units): pool5 is the max over positions
    where: Tensor  # (N, C) flat pool5 position of that max

    @functools.cached_property
    def lookup(self) -> dict[tuple[str, int], int]:
        """(class slug, index within the class) -> row."""
        return {(self.slugs[o], p): i for i, (o, p) in enumerate(zip(self.owners, self.positions))}


def unit_values(pool5: Tensor) -> tuple[Tensor, Tensor]:
    """A pool5 channel's activation on each image: its maximum over positions, and where."""
    values, where = pool5.flatten(2).max(2)
    return values, where


def class_means(values: Tensor, owners: list[int], n_classes: int) -> Tensor:
    """(classes, units) mean activation over each class's images."""
    owner = torch.tensor(owners)
    return torch.stack([values[owner == c].mean(0) for c in range(n_classes)])


def selectivity(means: Tensor) -> Tensor:
    """Class selectivity per unit (units.SELECTIVITY says what it means); 0 with one class."""
    if means.shape[0] < 2:
        return torch.zeros(means.shape[1])
    top, _ = means.max(0)
    rest = (means.sum(0) - top) / (means.shape[0] - 1)
    return (top - rest) / (top.abs() + rest.abs()).clamp_min(1e-8)


def class_preference(means: Tensor) -> Tensor:
    """(classes, units): a class's mean activation above the mean of the other classes' means,
    how much a unit speaks for that class (ranks the fc units shown per class)."""
    n = means.shape[0]
    if n < 2:
        return means.clone()
    return means - (means.sum(0, keepdim=True) - means) / (n - 1)


def top_images(values: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k largest activations per unit and their image indices: (k, units) each."""
    top = values.topk(min(k, values.shape[0]), dim=0)
    return top.values, top.indices


# ---------------------------------------------------------------------------------------------
# Problems


def unit_term(pathway: Pathway, layer: str, index: int) -> Direction:
    """-<layer activations, one-hot>: a pool5 channel's mean over positions, or one fc unit."""
    if layer == "pool5":
        vector = torch.zeros(pathway.pool5_shape)
        vector[index] = 1.0
    else:
        vector = torch.zeros(pathway.fc6_dim if layer == "fc6" else pathway.fc7_dim)  # type: ignore[arg-type]
        vector[index] = 1.0
    return Direction(vector, layer)


@torch.no_grad()
def unit_activations(pathway: Pathway, images: Tensor, units: list[tuple[str, int]]) -> list[float]:
    """Each image's value of its unit (layer, index): a pool5 channel's maximum over positions,
    as for the top patches, or the fc unit."""
    acts = pathway(images.to(pathway.mean.device))
    values = []
    for i, (layer, index) in enumerate(units):
        value = getattr(acts, layer)[i, index]
        values.append(float(value.max()))
    return values


def pre_activation(pathway: Pathway) -> tuple[str, nn.Module] | None:
    """Where pool5 is relu(after(x)) with x a module's output and `after` max pools (AlexNet/VGG:
    conv5, ReLU, max pool): that module's name and `after`; None for other trunks. Turns the last
    ReLU's in-place flag off (it would overwrite x; the values are the same)."""
    layers = _trunk_layers(pathway)
    relus = [i for i, layer in enumerate(layers) if isinstance(layer, nn.ReLU)]
    features: nn.Module = pathway.features  # type: ignore[assignment]
    if not relus or relus[-1] == 0 or not isinstance(features, nn.Sequential):
        return None
    last = relus[-1]
    after = layers[last + 1:]
    size = pathway.pool5_shape[1:]
    if not all(isinstance(m, (nn.MaxPool2d, nn.Identity)) or (isinstance(m, nn.AdaptiveAvgPool2d)
               and _pair(m.output_size) == size) for m in after):  # an adaptive pool to pool5's own size: identity
        return None
    relu = layers[last]
    assert isinstance(relu, nn.ReLU)
    relu.inplace = False
    return f"features.{last - 1}", nn.Sequential(*after)


def texture_target(pool5: Tensor, channel: int) -> Tensor:
    """Xia et al.'s modified code: the image's pool5 map with every channel but one zeroed."""
    kept = torch.zeros_like(pool5)
    kept[channel] = pool5[channel]
    return kept


@torch.no_grad()
def texture_errors(pathway: Pathway, images: Tensor, targets: Tensor, channels: list[int]) -> list[float]:
    """||pool5[c](image) - target|| / ||target|| per image: a texture's error on its kept channel
    (a grey image whose channel is silent scores 1)."""
    pool5 = pathway.trunk(images.to(pathway.mean.device)).cpu()
    maps = pool5[torch.arange(len(channels)), torch.tensor(channels)]
    return feature_inversion(maps, targets.float()).sqrt().tolist()


def conv1_grid(pathway: Pathway, scale: int = 4, gap: int = 1) -> Tensor | None:
    """The first conv layer's filters (3 input channels) tiled as one image, each filter scaled
    symmetrically around grey (0 weight = mid-grey); None when the net has no such layer."""
    features: nn.Module = pathway.features  # type: ignore[assignment]
    conv = next((m for m in features.modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3), None)
    if conv is None:
        return None
    weights = conv.weight.detach().float().cpu()
    weights = weights / (2 * weights.flatten(1).abs().max(1).values.clamp_min(1e-12).view(-1, 1, 1, 1)) + 0.5
    n, _, kh, kw = weights.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cell_h, cell_w = kh * scale + gap, kw * scale + gap
    grid = torch.ones(3, rows * cell_h + gap, cols * cell_w + gap)
    big = weights.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[:, gap + r * cell_h: gap + r * cell_h + kh * scale, gap + c * cell_w: gap + c * cell_w + kw * scale] = big[i]
    return grid


def visualization_settings(engine: dict[str, Any] | None, params: UnitsParams) -> Settings:
    """The engine settings of a unit's plain and prior pictures: the catalog's engine (its
    transforms) with the unit step's own steps, learning rate, parameterization and jitter; raw
    pixels get no pad, scale or rotation, as the unit step once was."""
    profile = RAW_PIXELS if params.parameterization == "pixels" else {"param": params.parameterization}
    return settings_from(engine, **profile, iterations=params.iterations, lr=params.lr, jitter=params.jitter,
                         init_std=params.init_std)


def texture_settings(engine: dict[str, Any] | None, params: UnitsParams) -> Settings:
    """A texture inverts a spatial pool5 map: Mahendran & Vedaldi's regularizers and jitter (as the
    pre-images), no other transform, in the Fourier parameterization."""
    return settings_from(engine, **JITTER_ONLY, iterations=params.texture_iterations, lr=params.texture_lr,
                         init_std=params.texture_init_std, param="fourier", jitter=2,
                         l2=0.0, alpha_norm=100.0, tv=30.0, feature_weight=1.0, prior_weight=0.0)


def smooth_start(seed: int, size: int, std: float, noise: float) -> Tensor:
    """(3, size, size) in [0, 1]: the Fourier parameterization's image of Gaussian coefficients of
    std `std` (a blurry, photo-coloured random picture: Adam then adds structure, not static), plus
    white noise of std `noise` (a unit that is exactly 0 on a smooth picture has no gradient)."""
    generator = torch.Generator().manual_seed(seed)
    coefficients = std * torch.randn(1, 3, size, size // 2 + 1, 2, generator=generator)
    image = Decorrelated().image(coefficients)[0]
    return (image + noise * torch.randn(image.shape, generator=generator)).clamp(0, 1)


# ---------------------------------------------------------------------------------------------
# The step


@dataclass
class UnitsOutcome:
    ran: bool = False
    seconds: float = 0.0
    solved: int = 0  # problems solved (the rest were reused)
    reused: int = 0
    failed: str | None = None
    numbers: dict[str, float] = field(default_factory=dict)


@dataclass
class _Job:
    """One picture to make: a unit's plain / prior visualization or its texture."""

    unit: dict[str, Any]
    variant: str
    key: str
    problem: Problem | None = None


@dataclass
class Loaders:
    """What the step borrows from the build (build.py passes its own, which tests swap): the
    model, a class's images, their features."""

    pathway: Callable[[], Pathway]
    class_images: Callable[..., Any] | None = None  # None: generator.images.class_images
    extract: Callable[..., Any] | None = None  # None: generator.nets.features.extract

    def __post_init__(self) -> None:
        from generator.images import class_images
        from generator.nets.features import extract

        if self.class_images is None:
            self.class_images = class_images
        if self.extract is None:
            self.extract = lambda pathway, images, cache, progress: extract(pathway, images, cache_dir=cache,
                                                                            progress=progress)


def load_dataset(catalog: Any, pathway: Pathway, progress: bool, loaders: Loaders | None = None) -> Dataset:
    """Every class's images (the build's deterministic choice) and their activations (the
    build's feature cache, so classes already built cost no forward pass)."""
    loaders = loaders or Loaders(lambda: pathway)
    images, owners, names, positions, acts = [], [], [], [], []
    cache = Path(catalog.output) / store.CACHE_DIR / "features"
    for c, entry in enumerate(catalog.classes):
        assert loaders.class_images is not None and loaders.extract is not None
        loaded = loaders.class_images(catalog.images, entry.id, catalog.images.per_class, catalog.seed,
                                      catalog.model.input_size)
        if len(loaded.names) == 0:
            continue
        images.append(loaded.images)
        owners += [c] * len(loaded.names)
        names += list(loaded.names)
        positions += list(range(len(loaded.names)))
        acts.append(loaders.extract(pathway, loaded.images, cache, progress))
    if not images:
        raise ValueError("no class has a usable image")
    pool5 = torch.cat([a.pool5 for a in acts])
    values, where = unit_values(pool5)
    layer_values = {"pool5": values}
    if acts[0].fc6 is not None:
        layer_values["fc6"] = torch.cat([a.fc6 for a in acts])
    layer_values["fc7"] = torch.cat([a.fc7 for a in acts])
    return Dataset(images=torch.cat(images), owners=owners, names=names, positions=positions,
                   slugs=[e.slug for e in catalog.classes], values=layer_values, where=where)


def run_units(catalog: Any, plan: UnitsPlan, loaders: Loaders, progress: bool = True) -> UnitsOutcome:
    """Bring `<output>/units/` up to date; never raises for its own errors (they are reported)."""
    outcome = UnitsOutcome()
    start = time.perf_counter()
    try:
        pathway = loaders.pathway()
        data = load_dataset(catalog, pathway, progress, loaders)
        manifest = _build(catalog, plan, pathway, data, outcome, progress)
        manifest["seconds"] = round(time.perf_counter() - start, 3)
        store.write_json(manifest, Path(catalog.output) / FOLDER / MANIFEST, root=catalog.output)
        outcome.ran = True
    except Exception as exc:  # the step's own failure: the classes are built regardless
        text = str(exc).strip() or repr(exc)
        outcome.failed = text if isinstance(exc, AtlasError) else f"{type(exc).__name__}: {text}"
    outcome.seconds = time.perf_counter() - start
    return outcome


def _build(catalog: Any, plan: UnitsPlan, pathway: Pathway, data: Dataset, outcome: UnitsOutcome,
           progress: bool) -> dict[str, Any]:
    params: UnitsParams = catalog.units
    base = Path(catalog.output) / FOLDER
    safefs.inside(catalog.output, base)  # a units/ that is a symlink out is not written through
    store.sweep_temp_files(base)  # a killed step's leftovers
    n_classes = len(data.slugs)
    boxes = receptive_fields(pathway)
    width = pathway.pool5_shape[2]
    layers: dict[str, Any] = {}
    per_class: dict[str, dict[str, list[int]]] = {slug: {} for slug in data.slugs}
    absent = {} if pathway.has_fc6 else {"fc6": (
        f"this net's head has no hidden layer, so it has no fc6 ({pathway_words(pathway)['fc7_name']} plays fc7)"
        if getattr(pathway, "tokens", None) else
        "this net pools its last map straight into the classifier, so it has no fc6 (its pooled vector plays fc7)")}
    for layer in [name for name in LAYERS if name in data.values]:
        values = data.values[layer]
        means = class_means(values, data.owners, n_classes)
        select = selectivity(means)
        prefer = class_preference(means)
        if layer == "pool5":
            chosen = list(range(values.shape[1])) if params.pool5 else []
            for c, slug in enumerate(data.slugs):  # the pool5 units a class page links to
                per_class[slug]["pool5"] = prefer[c].topk(min(8, values.shape[1])).indices.tolist()
        else:
            chosen_set: set[int] = set()
            for c, slug in enumerate(data.slugs):
                top = prefer[c].topk(min(params.per_class, values.shape[1])).indices.tolist() if params.per_class else []
                per_class[slug][layer] = top
                chosen_set.update(top)
            chosen = sorted(chosen_set)
        if not chosen:
            continue
        top_values, top_index = top_images(values[:, chosen], params.top_k)
        units = []
        for column, index in enumerate(chosen):
            unit: dict[str, Any] = {"layer": layer, "index": index, "selectivity": float(select[index]),
                    "top_class": data.slugs[int(means[:, index].argmax())],
                    "class_means": [float(v) for v in means[:, index]],
                    "for_classes": [s for s in data.slugs if index in per_class[s].get(layer, [])],
                    "patches": [], "pictures": []}
            for rank in range(top_values.shape[0]):
                image = int(top_index[rank, column])
                patch = {"rank": rank, "class": data.slugs[data.owners[image]], "image": data.positions[image],
                         "name": data.names[image], "activation": float(top_values[rank, column])}
                if layer == "pool5":
                    row, col = divmod(int(data.where[image, index]), width)
                    patch["position"] = [row, col]
                    patch["box"] = [int(v) for v in boxes[row, col]]
                unit["patches"].append(patch)
            units.append(unit)
        layers[layer] = {"count": values.shape[1], "units": units}
    _write_patches(base, layers, data, plan.inputs.model)
    jobs = _jobs(catalog, plan, pathway, data, layers)
    _solve_jobs(catalog, pathway, data, jobs, base, plan, outcome, progress)
    conv1 = _write_conv1(pathway, base, plan.inputs.model)
    for layer in layers.values():
        layer["units"].sort(key=lambda u: (-u["selectivity"], u["index"]))  # the index's order
    return {"schema": 1, "key": plan.key, "version": VERSION, "inputs": plan.inputs.as_dict(),
            "params": dataclasses.asdict(params), "selectivity": SELECTIVITY,
            "input_size": pathway.input_size, "pool5_shape": list(pathway.pool5_shape),
            "classes": [{"slug": s, "name": e.name, "id": e.id, "units": per_class[s]}
                        for s, e in zip(data.slugs, catalog.classes)],
            "layers": layers, "absent": absent, "conv1": conv1,
            "numbers": {"solved": outcome.solved, "reused": outcome.reused}}


def _write_patches(base: Path, layers: dict[str, Any], data: Dataset, model: str) -> None:
    """The top patches as JPEG crops; names carry a digest of what they show, so an unchanged
    crop is not rewritten. The new names go to the ledger in one append before any is written:
    `remember` reads the whole ledger, so a call per file is quadratic (~12,000 on mobilenet-v2)."""
    todo: list[tuple[str, Tensor, int, int]] = []  # (name, crop, size, quality)
    for layer in layers.values():
        for unit in layer["units"]:
            for patch in unit["patches"]:
                top, left, bottom, right = patch.get("box", [0, 0, data.images.shape[2], data.images.shape[3]])
                key = store.digest([model, patch, VERSION])[:12]
                name = f"{unit['layer']}/img/{unit['index']}-patch{patch['rank']}-{key}.jpg"
                crop = _image_of(data, patch)[:, top:bottom, left:right]  # a view, not a copy
                patch["file"] = name
                patch["width"], patch["height"] = _fitted(crop.shape[2], crop.shape[1], PATCH_SIZE)
                if not (base / name).is_file():
                    todo.append((name, crop, PATCH_SIZE, 85))
                if patch["rank"] == 0:  # the layer index shows the top patch
                    patch["icon"] = name.replace(".jpg", ".icon.jpg")
                    if not (base / patch["icon"]).is_file():
                        todo.append((patch["icon"], crop, ICON, 75))
    store.remember(base, [name for name, *_ in todo])
    for name, crop, size, quality in todo:
        store.write_jpeg(crop, base / name, size=size, quality=quality, root=base)


def _fitted(width: int, height: int, size: int) -> tuple[int, int]:
    """PIL thumbnail's size for a `size` bound (only ever shrinks)."""
    scale = min(1.0, size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _jobs(catalog: Any, plan: UnitsPlan, pathway: Pathway, data: Dataset, layers: dict[str, Any]) -> list[_Job]:
    """Every picture the units need, with its content key (the settings it is solved with)."""
    params: UnitsParams = catalog.units
    common = {"version": VERSION, "model": plan.inputs.model, "seed": catalog.seed, "batch": params.batch}
    shown = {"settings": dataclasses.asdict(visualization_settings(catalog.engine, params)),
             "start_std": params.start_std}
    inverted = {"settings": dataclasses.asdict(texture_settings(catalog.engine, params)),
                "start_std": params.texture_start_std, "match": "kept channel, before its ReLU"}
    jobs = []
    for layer in layers.values():
        for unit in layer["units"]:
            source = [[p["class"], p["image"], p["name"]] for p in unit["patches"]]
            what = {**common, "layer": unit["layer"], "index": unit["index"]}
            jobs.append(_Job(unit, "plain", store.digest({**what, **shown, "variant": "plain"})))
            if params.prior:
                jobs.append(_Job(unit, "prior", store.digest({**what, **shown, "variant": "prior", "prior": plan.inputs.prior,
                                                             "images": source, "classes": plan.inputs.classes})))
            if params.textures and unit["layer"] == "pool5" and unit["patches"][0]["activation"] > 0:
                jobs.append(_Job(unit, "texture", store.digest({**what, **inverted, "variant": "texture",
                                                               "image": source[0], "classes": plan.inputs.classes})))
    return jobs


def _image_of(data: Dataset, patch: dict[str, Any]) -> Tensor:
    return data.images[data.lookup[(patch["class"], patch["image"])]]


def _problem(job: _Job, catalog: Any, pathway: Pathway, data: Dataset, settings: Settings, seed: int) -> Problem:
    from generator.engine.patch_database import PatchDatabase

    unit = job.unit
    label = f"{unit['layer']}/{unit['index']}/{job.variant}"
    if job.variant == "texture":
        return texture_problem(pathway, _image_of(data, unit["patches"][0]), unit["index"], settings,
                               catalog.units.texture_start_std, seed, label)
    terms = [unit_term(pathway, unit["layer"], unit["index"]), *recipes.regularizers(settings, model_mean(pathway))]
    if job.variant == "prior":
        p = catalog.prior
        images = torch.stack([_image_of(data, patch) for patch in unit["patches"]])
        database = PatchDatabase.from_images(images, patch=p.patch, stride=p.stride, max_patches=p.max_patches,
                                             seed=seed, search_dims=p.search_dims, normalize=settings.prior_normalize)
        terms += recipes.prior(database, settings)
    start_std = catalog.units.start_std
    init = smooth_start(seed, pathway.input_size, start_std, settings.init_std) if start_std else None
    return Problem(terms, init=init, seed=seed, label=label)


def texture_problem(pathway: Pathway, image: Tensor, channel: int, settings: Settings, start_std: float,
                    seed: int, label: str = "") -> Problem:
    """Match the kept channel of `image`'s pool5 (before its ReLU where the net allows), from a
    smooth random start (as the visualizations)."""
    with torch.no_grad():
        target = pathway.trunk(image.unsqueeze(0).to(pathway.mean.device))[0, channel].cpu()
    before, after = pre_activation(pathway) or ("", nn.Identity())
    terms = [settings.feature_weight * ChannelMatch(target, channel, before, after),
             *recipes.regularizers(settings, model_mean(pathway))]
    init = smooth_start(seed, pathway.input_size, start_std, settings.init_std) if start_std else None
    return Problem(terms, init=init, seed=seed, label=label)


PARAM_WORDS = {"fourier": "decorrelated Fourier coordinates", "colour": "decorrelated colour", "pixels": "raw pixels"}
CAPTIONS = {
    "plain": ("Visualization", "maximizes the unit (L2 + TV, no prior)"),
    "prior": ("With patch prior", "maximizes the unit with a patch prior from its top images"),
    "texture": ("Per-filter texture", "inverts the top image's pool5 map with every other channel zeroed, matched on "
                "the kept channel (Xia et al.)"),
}


def _solve_jobs(catalog: Any, pathway: Pathway, data: Dataset, jobs: list[_Job], base: Path, plan: UnitsPlan,
                outcome: UnitsOutcome, progress: bool) -> None:
    """Reuse what the old manifest has on disk; solve the rest, `batch` problems per call."""
    params: UnitsParams = catalog.units
    settings = {"texture": texture_settings(catalog.engine, params)}
    settings["plain"] = settings["prior"] = visualization_settings(catalog.engine, params)
    old = {}
    for layer in (plan.manifest or {}).get("layers", {}).values():
        for unit in layer.get("units", []):
            for picture in unit.get("pictures", []):
                if isinstance(picture, dict) and (base / str(picture.get("file"))).is_file():
                    old[picture.get("content")] = picture
    todo = []
    for job in jobs:
        if job.key in old:
            job.unit["pictures"].append(old[job.key])
            outcome.reused += 1
        else:
            todo.append(job)
    # the visualizations and the textures are solved apart: their settings differ
    for variants in (("plain", "prior"), ("texture",)):
        group = [job for job in todo if job.variant in variants]
        for start in range(0, len(group), params.batch):
            _solve_chunk(catalog, pathway, data, group[start: start + params.batch], settings[variants[0]], base,
                         outcome, progress)
    order = {"plain": 0, "prior": 1, "texture": 2}
    for job in jobs:
        job.unit["pictures"].sort(key=lambda p: order.get(p.get("key"), 9))


def _solve_chunk(catalog: Any, pathway: Pathway, data: Dataset, chunk: list[_Job], settings: Settings, base: Path,
                 outcome: UnitsOutcome, progress: bool) -> None:
    """Solve a batch of problems that share their settings; write their pictures."""
    # each problem's init seed comes from its own key, not its place in the batch
    problems = [_problem(job, catalog, pathway, data, settings, catalog.seed + int(job.key[:6], 16)) for job in chunk]
    solutions = solve(pathway, problems, settings, progress=progress)
    units = [(job.unit["layer"], job.unit["index"]) for job in chunk]
    reached = unit_activations(pathway, torch.stack([s.image for s in solutions]), units)
    starts = unit_activations(pathway, torch.stack([initial_image(p, pathway.input_size, settings.init_std)
                                                    for p in problems]), units)
    # each texture's error on its kept channel, all of the chunk's in one pass
    matches = {i: next(t for t in p.terms if isinstance(t, ChannelMatch)) for i, p in enumerate(problems)
               if chunk[i].variant == "texture"}
    errors = dict(zip(matches, texture_errors(
        pathway, torch.stack([solutions[i].image for i in matches]), torch.stack([m.target for m in matches.values()]),
        [m.channel for m in matches.values()]))) if matches else {}
    stems = [f"{job.unit['layer']}/img/{job.unit['index']}-{job.key[:16]}-{job.variant}" for job in chunk]
    store.remember(base, [f"{stem}{ending}" for stem in stems for ending in (".png", ".thumb.jpg", ".icon.jpg")])
    for i, (job, solution, stem) in enumerate(zip(chunk, solutions, stems)):
        unit = job.unit
        title, how = CAPTIONS[job.variant]
        numbers = {"activation": reached[i]}
        if job.variant == "texture":
            numbers["feature_error"] = errors[i]
        else:  # what the optimization added
            numbers["start_activation"] = starts[i]
        width, height = store.write_png(solution.image, base / f"{stem}.png", root=base)
        thumb_w, thumb_h = store.write_jpeg(solution.image, base / f"{stem}.thumb.jpg", size=THUMB, root=base)
        store.write_jpeg(solution.image, base / f"{stem}.icon.jpg", size=ICON, quality=75, root=base)
        what = f"{unit['layer']} unit {unit['index']}"
        unit["pictures"].append({
            "key": job.variant, "content": job.key, "file": f"{stem}.png", "thumb": f"{stem}.thumb.jpg",
            "icon": f"{stem}.icon.jpg",
            "width": width, "height": height, "thumb_width": thumb_w, "thumb_height": thumb_h,
            "title": title, "caption": f"{how[0].upper()}{how[1:]}, {settings.iterations} steps in {PARAM_WORDS[settings.param]}",
            "alt": f"{title} of {what}: the image the engine made that {how}",
            "numbers": numbers, "diverged": solution.diverged})
        outcome.solved += 1


def _write_conv1(pathway: Pathway, base: Path, model: str) -> dict[str, Any] | None:
    grid = conv1_grid(pathway)
    if grid is None:
        return None
    name = f"conv1-{store.digest([model, VERSION])[:16]}.png"
    store.remember(base, [name])
    width, height = store.write_png(grid, base / name, root=base)
    return {"file": name, "width": width, "height": height}
