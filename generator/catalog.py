"""catalog.yaml -> validated dataclasses (DESIGN.md "catalog.yaml", ARCHITECTURE.md "Catalog").

The catalog is the one place a user describes an atlas: which model, which images, which
classes, which methods with which parameters. Everything is checked here, up front, so a typo
costs one clear line (`catalog.yaml: classes[3]: unknown ImageNet class 'chruch' (did you mean
'church'?)`) instead of a traceback an hour into a build.

Relative paths in the file are relative to the file's folder; paths given as `overrides`
(command-line flags) are relative to the current directory.
"""
from __future__ import annotations

import codecs
import collections
import dataclasses
import difflib
import os
import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from generator.classtable import class_table
from generator.errors import CatalogError, ModelError
from generator.methods import METHOD_NAMES, ParamError, PriorParams, method_defaults, param_names, parse_params, spec
from generator.modelspec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, is_weights_path
from generator.nets.families import TIMM_PREFIX, TORCHVISION_MODELS, TORCHVISION_WEIGHTS, supported_families
from generator.store import unsafe_output
from generator.units import UnitsParams

IMAGE_SOURCES = ("folder", "imagenette", "demo")
IMAGENETTE_ROOT = "~/.cache/atlas/imagenette"
# The ten Imagenette classes in the standard (ILSVRC index) order; `labels: imagenette`.
IMAGENETTE_WNIDS = (
    "n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257",
)
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where PyYAML has it: 10x faster
MAX_INPUT_SIZE = 1024  # one 1024 x 1024 image is 12 MB as floats; 60000 would be 43 GB
MAX_SEED = 2**31 - 1  # numpy and scikit-learn take seeds below 2**32, and some methods add offsets



@dataclass
class ImageSpec:
    source: str  # "folder" | "imagenette" | "demo"
    root: Path | None  # ImageNet-layout folder (folder), download folder (imagenette), None (demo)
    per_class: int = 50
    split: str = "train"  # imagenette only
    truth: Path | None = None  # planted truth (truth.json of the demo world): lets the claims page score styles/layouts


@dataclass
class ClassEntry:
    id: str  # wnid or label
    name: str
    index: int  # fc8 index
    slug: str  # safe for paths: [a-z0-9_-]
    methods: dict[str, dict] = field(default_factory=dict)  # effective params: catalog's, then this class's


@dataclass
class Catalog:
    path: Path | None
    model: ModelSpec
    images: ImageSpec
    classes: list[ClassEntry]
    methods: dict[str, dict]  # method name -> DEFAULTS merged with the catalog's values (+ "enabled")
    engine: dict  # overrides of generator.engine.settings.Settings fields
    output: Path
    device: str  # "cpu" | "cuda" | "cuda:N" | "mps" | "auto"
    seed: int = 0
    prior: PriorParams = field(default_factory=PriorParams)  # the class's patch database (`prior:`)
    units: UnitsParams = field(default_factory=UnitsParams)  # the unit atlas (`units:`, generator/units/__init__.py)

    def enabled_methods(self, entry: ClassEntry | None = None) -> list[str]:
        """Method names switched on (for one class, with its overrides), in the canonical order."""
        methods = entry.methods if entry is not None else self.methods
        return [name for name in METHOD_NAMES if methods[name].get("enabled", True)]


# Command-line overrides: key -> (field path in the YAML, flag shown in messages).
OVERRIDES = {
    "model": (("model", "name"), "--model"),
    "weights": (("model", "weights"), "--weights"),
    "labels": (("model", "labels"), "--labels"),
    "num_classes": (("model", "num_classes"), "--num-classes"),
    "images_root": (("images", "root"), "--images"),
    "images_source": (("images", "source"), "--images"),
    "per_class": (("images", "per_class"), "--per-class"),
    "classes": (("classes",), "--classes"),
    "device": (("device",), "--device"),
    "output": (("output",), "--output"),
    "seed": (("seed",), "--seed"),
}
PATH_OVERRIDES = ("images_root", "output")


class _Checker:
    """Raises CatalogError with `file: field: message`, noting fields set by flags."""

    def __init__(self, label: str, flags: dict[str, str]) -> None:
        self.label = label
        self.flags = flags

    def fail(self, where: str, message: str) -> CatalogError:
        flag = next((f for path, f in self.flags.items() if where == path or where.startswith(path + "[")), None)
        suffix = f" (set by {flag})" if flag else ""
        return CatalogError(f"{self.label}: {where}: {message}{suffix}")

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {_type_name(value)}")
        for key in value:
            if key not in allowed:
                raise self.fail(_join(where, str(key)), f"unknown key {key!r}{_hint(str(key), allowed)}; allowed: {', '.join(allowed)}")
        for key in required:
            if key not in value:
                raise self.fail(_join(where, key), "missing (required)")
        return value

    def typed(self, value: Any, where: str, kind: type | tuple[type, ...], what: str) -> Any:
        bad_bool = isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
        if not isinstance(value, kind) or bad_bool:
            raise self.fail(where, f"expected {what}, got {_type_name(value)} {_short(value)}")
        return value

    def like_default(self, value: Any, default: Any, where: str) -> Any:
        """Check `value` has the type of a method's / the engine's default value."""
        if default is None:
            return value
        if isinstance(default, bool):
            return self.typed(value, where, bool, "true or false")
        if isinstance(default, int):
            return self.typed(value, where, int, "an integer")
        if isinstance(default, float):
            return float(self.typed(value, where, (int, float), "a number"))
        if isinstance(default, str):
            return self.typed(value, where, str, "a string")
        if isinstance(default, (list, tuple)):
            return type(default)(self.typed(value, where, (list, tuple), "a list"))
        if isinstance(default, dict):
            return self.typed(value, where, dict, "a mapping")
        return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _short(value: Any) -> str:
    """repr of a value for a message, bounded (a YAML alias bomb has an enormous one)."""
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring, short.maxother = 2, 4, 4, 60, 60
    return short.repr(value)


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def closest(word: str, choices) -> str | None:
    """The likeliest intended choice for a typo: a swapped-letters match first, then difflib's best."""
    close = difflib.get_close_matches(word, list(choices), n=5, cutoff=0.6)
    swapped = [c for c in close if sorted(c) == sorted(word)]
    return (swapped or close or [None])[0]


def _hint(word: str, choices) -> str:
    match = closest(word, choices)
    return f" (did you mean {match!r}?)" if match else ""


def slugify(text: str) -> str:
    """A path-safe slug: lowercase, [a-z0-9_-] only, no leading/trailing dashes."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")
    return slug or "class"


def normalize_name(name: str) -> str:
    """Class-name lookup key: case-insensitive, underscores and spaces equivalent."""
    return " ".join(name.replace("_", " ").lower().split())


def read_labels(value: str | list, base: Path) -> list[str]:
    """Labels from a list, the keyword `imagenette`, a comma list, or a .txt / .tsv file.

    A .txt file has one id per line; a .tsv file takes its `wnid` (or `id`) column when it has a
    header, else the first column that is not a plain index.
    """
    if isinstance(value, list):
        bad = next((v for v in value if isinstance(v, (list, dict)) or v is None), False)
        if bad is not False:
            raise ValueError(f"each label must be a single id or name, got {_type_name(bad)}")
        return [str(v).strip() for v in value]
    text = value.strip()
    if text.lower() == "imagenette":
        return list(IMAGENETTE_WNIDS)
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = base / path
    if text.endswith((".txt", ".tsv", ".csv")) or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"labels file {path} not found")
        rows = [line.rstrip("\n").split("\t") for line in read_text(path).splitlines() if line.strip()]
        if not text.endswith(".tsv"):
            return [row[0].strip() for row in rows]
        header = [c.strip().lower() for c in rows[0]]
        for column in ("wnid", "id", "label"):
            if column in header:
                col = header.index(column)
                return [row[col].strip() for row in rows[1:]]
        col = 1 if all(row[0].strip().isdigit() for row in rows) and len(rows[0]) > 1 else 0
        return [row[col].strip() for row in rows]
    return [part.strip() for part in text.split(",") if part.strip()]


def read_text(path: Path) -> str:
    """A text file as UTF-8 (or UTF-16/32 with a byte-order mark); UnicodeError saying how to fix
    it otherwise, never a guess that turns a class name into mojibake."""
    data = Path(path).read_bytes()
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return data.decode(encoding)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnicodeError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
                           "save the file as UTF-8") from None


MAX_VALUES = 100_000  # a catalog of every ImageNet class with overrides is ~10k values


def _check_size(raw: Any, label: str) -> None:
    """Refuse YAML whose aliases expand into a huge (or endless) structure ("billion laughs"):
    counted per distinct object, so the check itself costs only the file's size."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(value: Any) -> int:
        if not isinstance(value, (list, dict)):
            return 1
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise CatalogError(f"{label}: a YAML alias refers to itself (an endless value)")
        active.add(key)
        children = list(value.keys()) + list(value.values()) if isinstance(value, dict) else value
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_VALUES:
                break
        active.discard(key)
        sizes[key] = total
        return total

    try:
        if size(raw) > MAX_VALUES:
            raise CatalogError(f"{label}: too large: its YAML aliases expand to over {MAX_VALUES} values")
    except RecursionError:
        raise CatalogError(f"{label}: nested too deeply") from None


def load_catalog(path: str | Path, overrides: dict[str, Any] | None = None) -> Catalog:
    """Read, validate and resolve a catalog file; `overrides` (from CLI flags) replace fields."""
    path = Path(path).expanduser()
    label = path.name
    if not path.is_file():
        raise CatalogError(f"{path}: catalog file not found (pass --catalog PATH, or run `atlas demo`)")
    try:
        raw = yaml.load(read_text(path), Loader=SAFE_LOADER)
    except UnicodeError as exc:
        raise CatalogError(f"{label}: {exc}") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{label}: not valid YAML: {exc}") from None
    except RecursionError:
        raise CatalogError(f"{label}: not valid YAML: nested too deeply") from None
    if raw is None:
        raw = {}
    _check_size(raw, label)
    flags = _apply_overrides(raw, overrides or {}) if isinstance(raw, dict) else {}
    return parse_catalog(raw, base=path.resolve().parent, label=label, path=path.resolve(), flags=flags)


def _apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict[str, str]:
    """Write the overrides into the raw YAML dict; return {field path: flag} for messages."""
    flags = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in OVERRIDES:
            raise CatalogError(f"unknown catalog override {key!r}; known: {', '.join(OVERRIDES)}")
        keys, flag = OVERRIDES[key]
        if key in PATH_OVERRIDES or (key == "weights" and is_weights_path(str(value))):
            value = str(Path(value).expanduser().resolve())
        if key == "model" and ":" in str(value) and str(value).split(":")[0].endswith(".py"):
            file_part, factory = str(value).rsplit(":", 1)
            value = f"{Path(file_part).expanduser().resolve()}:{factory}"
        if key == "labels" and isinstance(value, str) and Path(value).expanduser().is_file():
            value = str(Path(value).expanduser().resolve())
        node = raw
        for part in keys[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[keys[-1]] = value
        flags[".".join(keys)] = flag
    return flags


def _resolve_path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(base / path))


def parse_catalog(raw: Any, base: Path, label: str = "catalog.yaml", path: Path | None = None,
                  flags: dict[str, str] | None = None) -> Catalog:
    """Validate an already-parsed catalog mapping (the part of load_catalog after YAML)."""
    check = _Checker(label, flags or {})
    top = check.mapping(raw, "", ("model", "images", "classes", "prior", "methods", "engine", "output", "device", "seed",
                                  "units"),
                        required=("model", "images", "classes"))
    model = _parse_model(check, top.get("model"), base)
    images = _parse_images(check, top.get("images"), base)
    methods = _parse_methods(check, top.get("methods"), "methods", base_params=None)
    classes = _parse_classes(check, top.get("classes"), model, methods)
    engine = _parse_engine(check, top.get("engine"))
    prior = _parse_params(check, PriorParams, check.mapping(top.get("prior"), "prior", param_names(PriorParams)), "prior")
    units = _parse_params(check, UnitsParams, check.mapping(top.get("units"), "units", param_names(UnitsParams)), "units")
    output_value = str(check.typed(top.get("output", "site"), "output", str, "a folder path"))
    unsafe = unsafe_output(output_value) or unsafe_output(_resolve_path(output_value, base))
    if unsafe:
        raise check.fail("output", f"{output_value!r} cannot be the output folder: {unsafe} "
                         "(`atlas clean` and the build write there); use a folder of its own, e.g. site")
    output = _resolve_path(output_value, base)
    device = check.typed(top.get("device", "auto"), "device", str, "a device name")
    if not DEVICE_PATTERN.match(device):
        raise check.fail("device", f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    seed = check.typed(top.get("seed", 0), "seed", int, "an integer")
    if not 0 <= seed <= MAX_SEED:
        raise check.fail("seed", f"must be from 0 to {MAX_SEED}, got {seed}")
    return Catalog(path=path, model=model, images=images, classes=classes, methods=methods,
                   engine=engine, output=output, device=device, seed=seed, prior=prior, units=units)


def _parse_model(check: _Checker, raw: Any, base: Path) -> ModelSpec:
    if isinstance(raw, str):
        raw = {"name": raw}
    spec = check.mapping(raw, "model", ("name", "weights", "num_classes", "labels", "input_size", "mean", "std"),
                         required=("name",))
    name = check.typed(spec["name"], "model.name", str, "a model name or file.py:factory")
    own: tuple[int, tuple[float, ...], tuple[float, ...]] | None = None  # a timm model's input size, mean, std
    if name.startswith(TIMM_PREFIX):
        from generator.nets import timm_models  # timm itself, only for timm names

        try:
            own = timm_models.pretrained_stats(name)
        except ModelError as exc:
            raise check.fail("model.name", str(exc)) from None
    elif ":" in name:
        target, factory = name.rsplit(":", 1)
        if not factory.isidentifier():
            raise check.fail("model.name", f"{factory!r} is not a function name (expected path/file.py:factory or package.module:factory)")
        if target.endswith(".py"):
            file = _resolve_path(target, base)
            if not file.is_file():
                raise check.fail("model.name", f"model file {file} not found")
            name = f"{file}:{factory}"
    elif name not in TORCHVISION_MODELS:
        from generator.nets import models  # torchvision itself, only to say why a name is refused

        if name in models.torchvision_model_names():
            raise check.fail("model.name", f"torchvision's {name} cannot be split into the atlas's pathway: "
                             f"{models.unsupported_reason(name)}; or file.py:factory")
        raise check.fail("model.name", f"unknown model {name!r}{_hint(name, TORCHVISION_MODELS)}; supported "
                         f"torchvision families: {supported_families()}; or path/file.py:factory, "
                         "or package.module:factory")
    weights = spec.get("weights")
    if weights is not None:
        weights = check.typed(weights, "model.weights", str, "a weights name or a state_dict path")
        if is_weights_path(weights):
            file = _resolve_path(weights, base)
            if not file.is_file():
                raise check.fail("model.weights", f"weights file {file} not found")
            weights = str(file)
        elif name.startswith(TIMM_PREFIX):
            if weights != "DEFAULT":
                raise check.fail("model.weights", f"unknown weights {weights!r} for {name}: use DEFAULT (timm's pretrained "
                                 "weights, downloaded from its hub) or the path of a local weights file")
        elif ":" in name:
            raise check.fail("model.weights", f"{weights!r} is a torchvision weights name, but {name} is a factory; "
                             "pass the path of a state_dict file")
        elif weights not in TORCHVISION_WEIGHTS[name]:
            from generator.nets import models  # a name the table lacks: ask torchvision (it may be newer)

            known = models.torchvision_weight_names(name)
            if weights not in known:
                raise check.fail("model.weights",
                                 f"unknown weights {weights!r} for {name}{_hint(weights, known)}; known: {', '.join(known)}")
    num_classes = spec.get("num_classes")
    if num_classes is not None and check.typed(num_classes, "model.num_classes", int, "an integer") < 1:
        raise check.fail("model.num_classes", "must be at least 1")
    labels = spec.get("labels")
    if labels is not None:
        check.typed(labels, "model.labels", (list, str), "a list, a labels file or 'imagenette'")
        try:
            labels = read_labels(labels, base)
        except (OSError, IndexError, ValueError) as exc:  # ValueError: not UTF-8, nested lists
            raise check.fail("model.labels", str(exc)) from None
        if not labels or any(not label for label in labels):
            raise check.fail("model.labels", "empty labels")
        dupes = sorted(label for label, count in collections.Counter(labels).items() if count > 1)
        if dupes:
            raise check.fail("model.labels", f"duplicate labels: {', '.join(dupes)}")
        if num_classes is not None and num_classes != len(labels):
            raise check.fail("model.labels", f"{len(labels)} labels but num_classes is {num_classes}")
    input_size = check.typed(spec.get("input_size", own[0] if own else 224), "model.input_size", int, "an integer")
    if not 32 <= input_size <= MAX_INPUT_SIZE:
        raise check.fail("model.input_size", f"must be from 32 to {MAX_INPUT_SIZE}, got {input_size}")
    stats = {}
    for key, default in (("mean", own[1] if own else IMAGENET_MEAN), ("std", own[2] if own else IMAGENET_STD)):
        value = spec.get(key, list(default))
        where = f"model.{key}"
        if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise check.fail(where, f"expected three numbers (R, G, B), got {value!r}")
        if key == "std" and any(v <= 0 for v in value):
            raise check.fail(where, "must be positive")
        stats[key] = tuple(float(v) for v in value)
    return ModelSpec(name=name, weights=weights, num_classes=num_classes, labels=labels,
                     input_size=input_size, mean=stats["mean"], std=stats["std"])


def _parse_images(check: _Checker, raw: Any, base: Path) -> ImageSpec:
    spec = check.mapping(raw, "images", ("source", "root", "per_class", "split", "truth"))
    source = check.typed(spec.get("source", "folder" if "root" in spec else "demo"), "images.source", str, "a source name")
    if source not in IMAGE_SOURCES:
        raise check.fail("images.source", f"unknown source {source!r}{_hint(source, IMAGE_SOURCES)}; use {', '.join(IMAGE_SOURCES)}")
    root = spec.get("root", IMAGENETTE_ROOT if source == "imagenette" else None)
    if root is None and source == "folder":
        raise check.fail("images.root", "missing: a folder source needs root (an ImageNet-layout folder <root>/<wnid>/*.JPEG)")
    if root is not None:
        root = _resolve_path(str(check.typed(root, "images.root", str, "a folder path")), base)
    if source == "folder" and not root.is_dir():
        raise check.fail("images.root", f"folder {root} not found")
    per_class = check.typed(spec.get("per_class", 50), "images.per_class", int, "an integer")
    if per_class < 1:
        raise check.fail("images.per_class", f"must be at least 1, got {per_class}")
    split = check.typed(spec.get("split", "train"), "images.split", str, "train or val")
    if split not in ("train", "val"):
        raise check.fail("images.split", f"unknown split {split!r}; use train or val")
    truth = spec.get("truth")
    if truth is not None:
        truth = _resolve_path(str(check.typed(truth, "images.truth", str, "a truth.json path")), base)
        if not truth.is_file():
            raise check.fail("images.truth", f"file {truth} not found")
        from generator.site.claims import TruthError, load_truth

        try:
            load_truth(truth)
        except TruthError as exc:
            raise check.fail("images.truth", str(exc)) from None
    return ImageSpec(source=source, root=root, per_class=per_class, split=split, truth=truth)


def _parse_methods(check: _Checker, raw: Any, where: str, base_params: dict[str, dict] | None) -> dict[str, dict]:
    """Validate a `methods:` section against each method's typed parameters (the registry's
    `MethodSpec.params`); merge over `base_params`.

    With base_params None (the catalog level) the result is every method's defaults merged with
    the given values and `enabled` (default true): a method not listed runs with its defaults.
    """
    section = check.mapping(raw, where, METHOD_NAMES)
    merged = {}
    for name in METHOD_NAMES:
        params = {**method_defaults(name), "enabled": True} if base_params is None else dict(base_params[name])
        given = section.get(name)
        if given is None and base_params is not None:  # a class that leaves this method as the catalog has it
            merged[name] = params
            continue
        allowed = param_names(spec(name).params) + ("enabled",)
        if isinstance(given, dict) and name == "classviz":
            moved = next((k for k in given if k in ("prior_images", *param_names(PriorParams))), None)
            if moved is not None:
                raise check.fail(_join(_join(where, name), str(moved)), "the patch database is the catalog's own "
                                 "`prior:` section now (images, patch, stride, max_patches, search_dims)")
        given = dict(check.mapping(given, _join(where, name), allowed))
        if "enabled" in given:
            params["enabled"] = check.typed(given.pop("enabled"), f"{where}.{name}.enabled", bool, "true or false")
        typed = {**{k: v for k, v in params.items() if k != "enabled"}, **given}
        checked = _parse_params(check, spec(name).params, typed, _join(where, name))
        merged[name] = {**dataclasses.asdict(checked), "enabled": params["enabled"]}
    return merged


def _parse_params(check: _Checker, cls: type, values: dict, where: str) -> Any:
    """The typed parameters `cls` from `values`; a wrong type or range names the field."""
    try:
        return parse_params(cls, values)
    except ParamError as exc:
        raise check.fail(_join(where, exc.field), str(exc)) from None


def _parse_engine(check: _Checker, raw: Any) -> dict:
    from generator.engine.settings import Settings

    defaults = {}
    for f in dataclasses.fields(Settings):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            defaults[f.name] = f.default_factory()  # type: ignore[misc]
        else:
            defaults[f.name] = None
    section = check.mapping(raw, "engine", tuple(defaults))
    return {key: check.like_default(value, defaults[key], f"engine.{key}") for key, value in section.items()}


def _parse_classes(check: _Checker, raw: Any, model: ModelSpec, methods: dict[str, dict]) -> list[ClassEntry]:
    table = class_table(model)
    if raw == "all":
        raw = [class_id for class_id, _ in table]
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    if not isinstance(raw, list):
        raise check.fail("classes", f"expected a list of class ids or names (or 'all'), got {_type_name(raw)}")
    if not raw:
        raise check.fail("classes", "empty: list at least one class")
    what = "ImageNet class" if model.labels is None and len(table) == 1000 else "class of this model"

    entries: list[ClassEntry] = []
    seen: dict[str, str] = {}
    slugs: dict[str, str] = {}
    by_id = {class_id: i for i, (class_id, _) in reversed(list(enumerate(table)))}  # the first of equal ids, as find_class
    for position, item in enumerate(raw):
        where = f"classes[{position}]"
        overrides = None
        display = None
        if isinstance(item, dict):
            item = check.mapping(item, where, ("id", "name", "methods"), required=("id",))
            overrides = item.get("methods")
            display = item.get("name")
            if display is not None:
                check.typed(display, f"{where}.name", str, "a display name")
            item = item["id"]
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        key = check.typed(item, where if overrides is None and display is None else f"{where}.id", str, "a class id or name")
        try:
            index = by_id[key] if key in by_id else find_class(table, key, what)  # a dict, not a scan: 10,000 classes
        except LookupError as exc:
            raise check.fail(where, str(exc.args[0])) from None
        class_id, name = table[index]
        if class_id in seen:
            raise check.fail(where, f"duplicate class {class_id} ({name}), already listed as {seen[class_id]}")
        seen[class_id] = where
        slug = slugify(class_id)
        if slug in slugs:
            raise check.fail(where, f"class id {class_id!r} gives the folder name {slug!r}, same as {slugs[slug]}")
        slugs[slug] = where
        if overrides is None:  # the catalog's methods, already checked: copied, not parsed again
            class_methods = {name: dict(params) for name, params in methods.items()}
        else:
            class_methods = _parse_methods(check, overrides, f"{where}.methods", base_params=methods)
        entries.append(ClassEntry(id=class_id, name=display or name, index=index, slug=slug, methods=class_methods))
    return entries


def find_class(table: list[tuple[str, str]], key: str, what: str = "class") -> int:
    """Index of a class by id, else by name (case-insensitive, `_` = space); LookupError with a hint."""
    for i, (class_id, _) in enumerate(table):
        if class_id == key:
            return i
    matches = [i for i, (_, name) in enumerate(table) if normalize_name(name) == normalize_name(key)]
    if len(matches) > 1:
        options = ", ".join(f"{table[i][0]} ({table[i][1]})" for i in matches)
        raise LookupError(f"ambiguous class name {key!r}: {options}; use the id")
    if not matches:
        names = {normalize_name(name): name for _, name in table}
        match = closest(normalize_name(key), names)
        hint = f" (did you mean {names[match]!r}?)" if match else ""
        raise LookupError(f"unknown {what} {key!r}{hint}")
    return matches[0]
