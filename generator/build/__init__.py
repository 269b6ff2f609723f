"""`atlas build`: decide what is stale, run it class by class, write manifests last.

A class's artifacts live in their own folder, `<output>/classes/<slug>/`; its `manifest.json`
is the only record of what is there. For every enabled method the build computes the
artifact key (`generator.store.Inputs`) from the catalog and file stats alone and compares it
with the manifest: same key and all files present means fresh. Only classes with something
stale load their images, and only classes with a stale method load the model and run it.

Crash safety comes from the write order: pictures go to content-addressed names
(`<method>/<key16>-<picture>.png`) that no older manifest points at, and the manifest is
replaced last, atomically. A build killed at any moment leaves the old manifest describing old,
complete files; the next build sees the missing key and redoes only that class's stale methods.
"""
from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from tqdm import tqdm

from generator import safefs, store
from generator.catalog import Catalog, ClassEntry
from generator.engine.settings import identity, settings_from
from generator.errors import AtlasError, ModelError
from generator.manifest import (
    SCHEMA,
    ClassRecord,
    ImageRecord,
    Manifest,
    ManifestError,
    MethodRecord,
    PictureRecord,
)
from generator.methods import METHOD_NAMES, PRIOR_FORMAT, ClassContext, method_module, spec
from generator.store import Inputs

MANIFEST = "manifest.json"
IMAGES_DIR = "images"


# ---------------------------------------------------------------------------------------------
# The pieces the build drives (module-level so tests can swap in small fakes)


def _load_pathway(spec, device):
    from generator.nets.models import load_pathway

    return load_pathway(spec, device)


def _class_images(spec, class_id: str, n: int, seed: int, size: int):
    from generator.images import class_images

    return class_images(spec, class_id, n, seed, size)


def _extract(pathway, images, cache_dir: Path | None, progress: bool):
    from generator.nets.features import extract

    return extract(pathway, images, cache_dir=cache_dir, progress=progress)


def _class_folder(spec, class_id: str) -> Path | None:
    """Where a class's image files are, without downloading or decoding anything."""
    from generator.images import class_folder

    try:
        return class_folder(spec, class_id, download=False)
    except Exception:  # the source itself is missing: the build will say so when it loads images
        return None


_method_module = method_module
_method_spec = spec


# ---------------------------------------------------------------------------------------------
# Report


@dataclass
class BuildReport:
    """What a build did. `ok` is False when anything failed (the CLI's exit code)."""

    ran: list[tuple[str, str]] = field(default_factory=list)  # (class id, method)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # fresh (class id, method)
    failed: list[tuple[str, str | None, str]] = field(default_factory=list)  # (class id, method|None, message)
    planned: list[tuple[str, str, str]] = field(default_factory=list)  # (class id, method, why stale)
    images_skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (class id, file, reason)
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    dry_run: bool = False
    units: Any = None  # the unit atlas step: units_run.UnitsOutcome when it ran or failed
    units_planned: str | None = None  # why the unit step is (or would be) run; None: fresh or not selected
    iterations: int = 0  # image-iterations (one image through the net's forward and backward) the classes ran
    full_size: float = 0.0  # the same in full-size images (a coarse step's image at half the side: a quarter)
    class_seconds: list[float] = field(default_factory=list)  # wall seconds of each class that ran a method

    @property
    def ok(self) -> bool:
        return not self.failed and not (self.units is not None and self.units.failed)

    def summary(self) -> str:
        """A plain-text table of what ran / was fresh / failed, then failures and skipped images."""
        done = self.planned if self.dry_run else self.ran
        busy = list(dict.fromkeys([c for c, *_ in done] + [c for c, _, _ in self.failed]))
        fresh_only = {c for c, _ in self.skipped} - set(busy)
        ran_title = "would run" if self.dry_run else "ran"
        rows = [("class", ran_title, "fresh", "failed")]
        did, fresh, bad = _by_class((c, m) for c, m, *_ in done), _by_class(self.skipped), \
            _by_class((c, m or "(class)") for c, m, _ in self.failed)  # grouped once: 10,000 classes
        for c in busy:  # classes where something ran or failed; the all-fresh ones are counted below
            rows.append((c, ", ".join(did.get(c, [])) or "-", ", ".join(fresh.get(c, [])) or "-",
                         ", ".join(bad.get(c, [])) or "-"))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows] if busy else []
        if fresh_only:
            lines.append(f"classes up to date: {len(fresh_only)}")
        if self.dry_run and self.planned:
            lines += ["", "why:"] + [f"  {c} {m}: {why}" for c, m, why in self.planned]
        if self.failed:
            lines += ["", "failed:"] + [f"  {c}{' ' + m if m else ''}: {msg}" for c, m, msg in self.failed]
        if self.images_skipped:
            lines += ["", f"images skipped ({len(self.images_skipped)}):"]
            lines += [f"  {c} {Path(path).name}: {reason}" for c, path, reason in self.images_skipped]
        lines += ["", f"{len(done)} {ran_title}, {len(self.skipped)} fresh, {len(self.failed)} failed"]
        lines += self._units_lines() + self._speed_lines()
        return "\n".join(lines)

    def _speed_lines(self) -> list[str]:
        if not self.class_seconds:
            return []
        seconds = sum(self.class_seconds)
        full = f" ({self.full_size / seconds:.1f} in full-size images)" if self.full_size < 0.999 * self.iterations else ""
        return [f"speed: {self.iterations / seconds:.1f} image-iterations per second{full}, "
                f"{seconds / len(self.class_seconds):.1f} s per class ({len(self.class_seconds)} classes)"]

    def _units_lines(self) -> list[str]:
        if self.units is not None and self.units.failed:
            return [f"units failed: {self.units.failed}"]
        if self.units is not None:
            return [f"units: {self.units.seconds:.1f} s ({self.units.solved} pictures solved, "
                    f"{self.units.reused} reused)"]
        if self.units_planned:
            return [f"units would run: {self.units_planned}"]
        return []

    def add(self, outcome: "ClassOutcome") -> None:
        self.ran += [(outcome.class_id, m) for m in outcome.ran]
        self.failed += [(outcome.class_id, m, msg) for m, msg in outcome.failed]
        self.images_skipped += [(outcome.class_id, p, r) for p, r in outcome.images_skipped]
        self.seconds.update({(outcome.class_id, m): s for m, s in outcome.seconds.items()})
        if outcome.wall_s:
            self.iterations += outcome.iterations
            self.full_size += outcome.full_size
            self.class_seconds.append(outcome.wall_s)


def _by_class(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(class id, method) pairs as class id -> its methods, in order."""
    grouped: dict[str, list[str]] = {}
    for class_id, method in pairs:
        grouped.setdefault(class_id, []).append(method)
    return grouped


# ---------------------------------------------------------------------------------------------
# Plans: what is stale and why, from the catalog and file stats only


@dataclass
class MethodPlan:
    method: str
    params: dict[str, Any]  # what run() gets (no "enabled")
    inputs: Inputs
    reasons: list[str]  # empty: fresh

    @property
    def key(self) -> str:
        return self.inputs.key()


@dataclass
class ClassPlan:
    entry: ClassEntry
    methods: list[MethodPlan]  # selected and enabled, catalog order
    manifest: Manifest | None  # the one on disk (None: none, unreadable or of the wrong shape: rebuilt)
    keep: list[str]  # enabled methods outside this build's selection: kept as they are
    images_missing: bool  # thumbnails of the class's images are gone

    @property
    def stale(self) -> list[MethodPlan]:
        return [m for m in self.methods if m.reasons]

    @property
    def needs_work(self) -> bool:
        recorded = set(self.manifest.methods) if self.manifest else set()
        dropped = recorded - {m.method for m in self.methods} - set(self.keep)
        return bool(self.stale or self.images_missing or dropped or self.manifest is None)


class KeyMaker:
    """The per-build parts of artifact keys, each computed once (the weights digest is cached)."""

    def __init__(self, catalog: Catalog, digests: store.FileDigests) -> None:
        self.catalog = catalog
        self.digests = digests
        self.model = model_identity(catalog.model, digests)
        self.model_digest = store.digest(self.model)
        # the effective settings, not just the catalog's overrides: retuned defaults in code
        # must make every optimized picture stale
        self.engine_digest = store.digest(identity(settings_from(catalog.engine)))
        self.prior_digest = store.digest({**dataclasses.asdict(catalog.prior), "format": PRIOR_FORMAT})
        self._digests: dict[str, str] = {}

    def _digest(self, value: Any) -> str:
        """store.digest, remembered by the value's repr: the classes of a catalog share a few
        parameter sets, and each class's entry is asked for once per method."""
        key = repr(value)
        if key not in self._digests:
            self._digests[key] = store.digest(value)
        return self._digests[key]

    def images_digest(self, entry: ClassEntry) -> str:
        from generator.images import selection_key

        spec = self.catalog.images
        folder = _class_folder(spec, entry.id)
        # The files, not the folder's path: the same files under another mount are the same images.
        files = "no source" if folder is None else selection_key(folder, entry.id, spec.per_class, self.catalog.seed,
                                                                 self.digests)
        return store.digest({"source": spec.source, "split": spec.split, "per_class": spec.per_class,
                             "size": self.catalog.model.input_size, "files": files})

    def inputs(self, entry: ClassEntry, method: str, params: dict, images: str) -> Inputs:
        """Every input the method's pictures depend on; the patch database's parameters only
        for a method that uses the database (the registry's `uses_prior`)."""
        method_spec = _method_spec(method)
        # a parameter left at None is unset (the method's own choice): not in the key, so a parameter
        # added later at None leaves built pictures fresh
        params = {k: v for k, v in params.items() if v is not None}
        return Inputs(method=method, params=self._digest(params), version=method_spec.version,
                      model=self.model_digest,
                      class_=self._digest({"id": entry.id, "name": entry.name, "index": entry.index, "slug": entry.slug}),
                      images=images, seed=self.catalog.seed, engine=self.engine_digest,
                      prior=self.prior_digest if method_spec.uses_prior(params) else "unused")


def _public_name(name: str | None) -> str | None:
    """A model or weights name fit to publish: file paths lose their folders (no local paths on
    the website), torchvision names and weight enums stay as they are."""
    if not name:
        return name
    target, colon, factory = name.rpartition(":")
    if colon and target.endswith(".py"):
        return f"{Path(target).name}:{factory}"
    return Path(name).name if ("/" in name or os.sep in name) else name


def model_identity(spec, digests: store.FileDigests) -> dict[str, Any]:
    """What makes a model the model: its code and weight *bytes*, not where the files are.

    Copying the weights to another path (or a cluster node's mount) keeps every key; changing one
    byte of them, or of a factory's .py file, changes all of them.
    """
    target, _, factory = spec.name.rpartition(":")
    code_file = Path(target) if target.endswith(".py") else None
    weights_file = Path(spec.weights) if spec.weights and Path(spec.weights).is_file() else None
    return {
        "arch": factory if code_file else spec.name,
        "code_sha256": digests.sha256(code_file) if code_file and code_file.is_file() else None,
        "weights": None if weights_file else spec.weights,
        "weights_sha256": digests.sha256(weights_file) if weights_file else None,
        "num_classes": spec.num_classes, "labels": spec.labels,
        "input_size": spec.input_size, "mean": list(spec.mean), "std": list(spec.std),
    }


def method_params(entry: ClassEntry, method: str) -> dict[str, Any]:
    """The params run() gets: the class's effective params without the `enabled` switch."""
    return {k: v for k, v in entry.methods.get(method, {}).items() if k != "enabled"}


def enabled_methods(entry: ClassEntry) -> list[str]:
    return [m for m in METHOD_NAMES if m in entry.methods and entry.methods[m].get("enabled", True)]


def class_dir(output: Path, entry: ClassEntry) -> Path:
    return Path(output) / "classes" / entry.slug


def read_manifest(folder: Path) -> Manifest | None:
    """The class folder's manifest, or None when there is none the build can trust (missing,
    unreadable, of the wrong shape or an older schema): then the class is stale and rebuilt."""
    try:
        manifest = Manifest.read(folder / MANIFEST)
    except ManifestError:
        return None
    return manifest if manifest.schema == SCHEMA else None


def plan_class(catalog: Catalog, entry: ClassEntry, keys: KeyMaker, methods: set[str] | None,
               force: bool) -> ClassPlan:
    folder = class_dir(catalog.output, entry)
    manifest = read_manifest(folder)
    recorded = manifest.methods if manifest else {}
    images = keys.images_digest(entry)
    plans, keep = [], []
    for method in enabled_methods(entry):
        if methods is not None and method not in methods:
            keep.append(method)
            continue
        params = method_params(entry, method)
        inputs = keys.inputs(entry, method, params, images)
        record = recorded.get(method)
        if force:
            reasons = ["forced (--force)"]
        elif record is None:
            reasons = ["not built yet" if manifest is None else "not in the manifest"]
        elif record.key != inputs.key():
            changed = inputs.changed(record.inputs)
            reasons = [f"{name} changed" for name in changed] or ["key changed"]
        else:
            missing = [p for p in record.files if not (folder / p).is_file()]
            reasons = [f"missing files ({missing[0]}{', ...' if len(missing) > 1 else ''})"] if missing else []
        plans.append(MethodPlan(method=method, params=params, inputs=inputs, reasons=reasons))
    images_missing = manifest is not None and any(not (folder / image.thumb).is_file() for image in manifest.images)
    return ClassPlan(entry=entry, methods=plans, manifest=manifest, keep=keep, images_missing=images_missing)


# ---------------------------------------------------------------------------------------------
# Running one class


@dataclass
class ClassOutcome:
    class_id: str
    ran: list[str] = field(default_factory=list)
    failed: list[tuple[str | None, str]] = field(default_factory=list)
    images_skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    iterations: int = 0  # image-iterations its methods ran
    full_size: float = 0.0  # the same in full-size images
    wall_s: float = 0.0  # seconds from loading its images to its last method; 0 when no method ran


_PATHWAYS: dict[tuple[str, str], Any] = {}  # (model digest, device) -> Pathway or the error loading it


def _pathway(catalog: Catalog, model_digest: str):
    """The model, loaded once per process (a failure is remembered, not retried per class)."""
    slot = (model_digest, catalog.device)
    if slot not in _PATHWAYS:
        try:
            _PATHWAYS[slot] = _load_pathway(catalog.model, catalog.device)
        except Exception as exc:
            _PATHWAYS[slot] = exc
    value = _PATHWAYS[slot]
    if isinstance(value, Exception):
        raise value
    return value


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or repr(exc)
    ours = isinstance(exc, AtlasError)
    return text if ours else f"{type(exc).__name__}: {text}"


def _safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "picture"


def run_class(catalog: Catalog, plan: ClassPlan, model_digest: str, progress: bool = True) -> ClassOutcome:
    """Build one class's stale methods and rewrite its manifest; never raises for the class's own errors."""
    entry = plan.entry
    outcome = ClassOutcome(class_id=entry.id)
    start = time.perf_counter()
    folder = class_dir(catalog.output, entry)
    try:
        safefs.inside(catalog.output, folder)  # a class folder that is a symlink out is not written through
    except safefs.UnsafePathError as exc:
        outcome.failed.append((None, _message(exc)))
        return outcome
    store.sweep_temp_files(folder)
    old_methods = plan.manifest.methods if plan.manifest else {}
    methods: dict[str, MethodRecord] = {m.method: old_methods[m.method] for m in plan.methods
                                if not m.reasons and m.method in old_methods}
    methods.update({m: old_methods[m] for m in plan.keep if m in old_methods})
    try:
        loaded = _class_images(catalog.images, entry.id, catalog.images.per_class, catalog.seed,
                               catalog.model.input_size)
        outcome.images_skipped = [(str(p), str(r)) for p, r in loaded.skipped]
        if len(loaded.names) == 0:
            raise ValueError("no usable images")
        images = [ImageRecord(index=i, name=name, thumb=f"{IMAGES_DIR}/{i:03d}.jpg") for i, name in enumerate(loaded.names)]
        # the ledger `atlas clean` trusts: only what this build writes (never names read from a manifest)
        store.remember(folder, [image.thumb for image in images])
        for image, tensor in zip(images, loaded.images):
            store.write_jpeg(tensor, folder / image.thumb, root=folder)
        stale = plan.stale
        ctx = _context(catalog, entry, loaded, model_digest, progress) if stale else None
    except Exception as exc:
        outcome.failed.append((None, _message(exc)))
        return outcome
    from generator.engine.meter import IterationCounter

    counter = IterationCounter(ctx.pathway) if ctx is not None else None
    for method in stale:
        try:
            methods[method.method] = _run_method(ctx, method, folder)
            outcome.ran.append(method.method)
            outcome.seconds[method.method] = methods[method.method].seconds
        except Exception as exc:
            methods.pop(method.method, None)
            outcome.failed.append((method.method, _message(exc)))
    if counter is not None:
        counter.close()
        outcome.iterations, outcome.wall_s = counter.images, time.perf_counter() - start
        outcome.full_size = counter.full_size
    manifest = Manifest(
        schema=SCHEMA,
        class_=ClassRecord(id=entry.id, name=entry.name, index=entry.index, slug=entry.slug),
        model={"name": _public_name(catalog.model.name), "weights": _public_name(catalog.model.weights),
               "digest": model_digest, **_levels(ctx, plan.manifest)},
        images=images,
        skipped_images=[{"path": p, "reason": r} for p, r in outcome.images_skipped],
        methods={m: methods[m] for m in METHOD_NAMES if m in methods},
    )
    try:
        store.write_json(manifest.to_json(), folder / MANIFEST, root=folder)
    except Exception as exc:
        outcome.failed.append((None, _message(exc)))
        outcome.ran = []
    return outcome


def _levels(ctx: ClassContext | None, old: Manifest | None) -> dict[str, Any]:
    """{"levels": the net's pathway levels, "tokens": what a transformer's fc7 is} (the site words
    its texts by them: a net without fc6 has no m6, a ViT's fc7 is its class token), from the
    loaded net, else as the last build recorded them."""
    if ctx is None:
        return {key: old.model[key] for key in ("levels", "tokens") if old and old.model.get(key)}
    tokens = getattr(ctx.pathway, "tokens", None)
    return {"levels": list(ctx.pathway.levels), **({"tokens": tokens} if tokens else {})}


def _context(catalog: Catalog, entry: ClassEntry, loaded, model_digest: str, progress: bool) -> ClassContext:
    """The model (loaded on first need) and the class's features: what every method reads."""
    pathway = _pathway(catalog, model_digest)
    cache = safefs.inside(catalog.output, Path(catalog.output) / store.CACHE_DIR / "features")
    features = _extract(pathway, loaded.images, cache, progress)
    if not bool(features.fc8.isfinite().all()):  # else every picture would be its grey start, silently
        raise ModelError("the model's outputs (fc8) on this class's images are NaN or infinite, so nothing was "
                         "built for it: check its weights (and its code, for a file.py:factory model)")
    return ClassContext(pathway=pathway, class_index=entry.index, class_id=entry.id, class_name=entry.name,
                        images=loaded.images, image_names=list(loaded.names), features=features,
                        engine=dict(catalog.engine), seed=catalog.seed, device=pathway.mean.device,
                        progress=progress, prior=catalog.prior)


def _run_method(ctx: ClassContext, plan: MethodPlan, folder: Path) -> MethodRecord:
    """Run one method and write its pictures; returns its manifest entry."""
    module = _method_module(plan.method)
    start = time.perf_counter()
    result = module.run(ctx, dict(plan.params))
    seconds = time.perf_counter() - start
    stems = [_safe_stem(picture.key) for picture in result.pictures]
    if len(set(stems)) != len(stems):
        raise ValueError(f"method {plan.method} returned pictures with duplicate keys: {stems}")
    prefix = plan.key[:16]
    pictures = []
    for picture, stem in zip(result.pictures, stems):
        file = f"{plan.method}/{prefix}-{stem}.png"
        thumb = f"{plan.method}/{prefix}-{stem}.thumb.jpg"
        store.remember(folder, [file, thumb])
        width, height = store.write_png(picture.image, folder / file, root=folder)
        store.write_jpeg(picture.image, folder / thumb, root=folder)
        pictures.append(PictureRecord(key=picture.key, file=file, thumb=thumb, width=width, height=height,
                                      caption=picture.caption, alt=picture.alt,
                                      numbers=dict(picture.numbers), meta=picture.meta))
    return MethodRecord(key=plan.key, version=plan.inputs.version, params=plan.params, seed=ctx.seed,
                        numbers=dict(result.numbers), seconds=round(seconds, 3), inputs=plan.inputs.as_dict(),
                        pictures=pictures)


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _exit_with_parent()


def _exit_with_parent(every: float = 0.5) -> None:
    """A class worker ends when the build that started it is gone (killed, or its terminal
    closed): it would otherwise finish its class and write it, possibly with settings the next
    build has changed. Its writes are atomic, so what it leaves is whole or nothing."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker_run(catalog: Catalog, plan: ClassPlan, model_digest: str) -> ClassOutcome:
    return run_class(catalog, plan, model_digest, progress=False)


# ---------------------------------------------------------------------------------------------
# The build


def select(catalog: Catalog, only: Iterable[str] | None, shard: tuple[int, int] | None
           ) -> tuple[list[ClassEntry], set[str] | None, list[str]]:
    """Classes and methods this build covers, plus `only` items that match nothing.

    `only` mixes method names (`topics`) and classes (id, slug or name); with no class named,
    every class is in, with no method named, every enabled method. `shard=(i, n)` keeps the
    classes whose position in the catalog is i mod n — deterministic, so n array tasks cover
    the catalog exactly once.
    """
    entries = list(catalog.classes)
    if shard is not None:
        i, n = shard
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"shard {i}/{n}: need 0 <= i < n")
        entries = [e for position, e in enumerate(entries) if position % n == i]
    if not only:
        return entries, None, []
    items = [str(item) for item in only]
    methods = {item for item in items if item in METHOD_NAMES}
    names = [item for item in items if item not in METHOD_NAMES]
    matches = {name: [e for e in catalog.classes if name in (e.id, e.slug) or name.lower() == e.name.lower()]
               for name in names}
    unknown = [name for name, found in matches.items() if not found]
    wanted = {e.slug for found in matches.values() for e in found}
    if names:
        entries = [e for e in entries if e.slug in wanted]
    return entries, (methods or None), unknown


def _publish_truth(catalog: Catalog, output: Path) -> None:
    """Copy the image world's planted truth (if any) next to the manifests.

    The claims page is computed by `atlas render` from the output folder alone (so shards merge);
    the demo world's truth lets it score the style and layout claims instead of proxies.
    """
    truth = catalog.images.truth
    if truth is not None:
        store.atomic_write(output / "truth.json", safefs.read_regular(truth), root=output)


def build(catalog: Catalog, *, only: Iterable[str] | None = None, force: bool = False, dry_run: bool = False,
          shard: tuple[int, int] | None = None, workers: int = 1, progress: bool = True,
          executor: Any = None) -> BuildReport:
    """Bring `catalog.output` up to date with the catalog; see the module docstring.

    `executor` runs the stale classes elsewhere (`generator.build.executors.RayExecutor`: its
    `run(catalog, plans, model_digest, progress)` yields ClassOutcomes); None runs them here,
    in `workers` processes.

    Raises store.StoreError when the output folder cannot be used at all (not writable, another
    build holds it); everything that goes wrong inside one class is in the report instead.
    """
    report = BuildReport(dry_run=dry_run)
    only = None if only is None else [str(item) for item in only]
    with_units = catalog.units.enabled and shard is None and (not only or "units" in only)
    units_only = bool(only) and all(item == "units" for item in only)
    only = None if only is None else [item for item in only if item != "units"]
    entries, methods, unknown = select(catalog, only, shard)
    entries = [] if units_only else entries
    report.failed += [(name, None, "not a class of the catalog nor a method name") for name in unknown]
    output = Path(catalog.output)
    foreign = store.foreign_output(output)
    if foreign:
        raise store.StoreError(f"refusing to build into {output}: {foreign}")
    lock = None if dry_run else store.BuildLock(output, shard).acquire()
    try:
        if not dry_run:
            store.mark_output(output)
        digests = store.FileDigests(output / store.CACHE_DIR / "digests.json" if output.is_dir() else None, root=output)
        keys = KeyMaker(catalog, digests)
        plans = []
        for entry in entries:
            try:
                plans.append(plan_class(catalog, entry, keys, methods, force))
            except Exception as exc:  # e.g. an unreadable image folder: this class only
                report.failed.append((entry.id, None, _message(exc)))
        units_plan = _plan_units(catalog, keys, force) if with_units else None
        if units_plan is not None and units_plan.reasons:
            report.units_planned = "; ".join(units_plan.reasons)
        if not dry_run:
            digests.save()
        for plan in plans:
            report.skipped += [(plan.entry.id, m.method) for m in plan.methods if not m.reasons]
            report.planned += [(plan.entry.id, m.method, "; ".join(m.reasons)) for m in plan.stale]
            if plan.needs_work and not plan.stale:
                report.planned.append((plan.entry.id, "(images)", "image thumbnails or manifest out of date"))
        if dry_run:
            return report
        todo = [plan for plan in plans if plan.needs_work]
        outcomes = (executor.run(catalog, todo, keys.model_digest, progress) if executor is not None
                    else _run_all(catalog, todo, keys.model_digest, workers, progress))
        for outcome in outcomes:
            report.add(outcome)
        if units_plan is not None and units_plan.reasons:
            from generator.units.run import Loaders, run_units

            loaders = Loaders(pathway=lambda: _pathway(catalog, keys.model_digest),
                              class_images=lambda *args: _class_images(*args),
                              extract=lambda *args: _extract(*args))
            with _pool_threads(workers if executor is None else 1):
                report.units = run_units(catalog, units_plan, loaders, progress)
        _publish_truth(catalog, output)
    finally:
        if lock is not None:
            lock.release()
    return report


@contextlib.contextmanager
def _pool_threads(workers: int) -> Iterator[None]:
    """The unit step comes after the class workers are done: it gets the threads they had together
    (`--workers 2 --threads 1` on two cores: two threads, not one)."""
    import torch

    before = torch.get_num_threads()
    if workers > 1:
        torch.set_num_threads(max(before, workers * _worker_threads(workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _worker_threads(workers: int) -> int:
    """Torch threads of each class worker: the cores shared out."""
    return max(1, (os.cpu_count() or 1) // workers)


def _plan_units(catalog: Catalog, keys: KeyMaker, force: bool):
    """The unit step's plan: its key covers every class and its images, like a method's."""
    from generator import units

    classes = [{"id": e.id, "name": e.name, "index": e.index, "slug": e.slug, "images": keys.images_digest(e)}
               for e in catalog.classes]
    return units.plan(catalog.units, model=keys.model_digest, classes=classes, seed=catalog.seed,
                      engine=keys.engine_digest, prior=keys.prior_digest, output=Path(catalog.output), force=force)


def _run_all(catalog: Catalog, plans: list[ClassPlan], model_digest: str, workers: int, progress: bool):
    bar = tqdm(total=len(plans), desc="classes", unit="class", disable=not progress)
    try:
        if workers <= 1 or len(plans) <= 1:
            for plan in plans:
                bar.set_postfix_str(plan.entry.id)
                yield run_class(catalog, plan, model_digest, progress)
                bar.update()
            return
        threads = _worker_threads(workers)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                                 initargs=(threads,)) as pool:
            futures = {pool.submit(_worker_run, catalog, plan, model_digest): plan for plan in plans}
            for future in as_completed(futures):
                try:
                    yield future.result()
                except Exception as exc:  # the worker process itself died
                    plan = futures[future]
                    yield ClassOutcome(class_id=plan.entry.id, failed=[(None, f"worker failed: {_message(exc)}")])
                bar.update()
    finally:
        bar.close()


# ---------------------------------------------------------------------------------------------
# Clean


def clean(catalog: Catalog, dry_run: bool = False) -> list[Path]:
    """Delete stale files the atlas wrote, and nothing else (see generator/build/stale.py)."""
    from generator.build.stale import clean as clean_output

    return clean_output(catalog, dry_run=dry_run)
