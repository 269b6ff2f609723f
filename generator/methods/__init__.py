"""The atlas's methods, each declared once: this registry holds what build, catalog, site and
claims need to know about a method (typed parameters, VERSION, title, summary, picture layout,
claims, whether it uses the class's patch database) and imports neither torch nor faiss, so
`import generator.catalog` stays light. Each method's `run` lives in its own module
`generator/methods/<name>.py` and is imported lazily (`method_module`):

    def run(ctx: ClassContext, params: Params | Mapping[str, Any]) -> MethodResult

`params` is the method's typed parameters (a mapping of overrides is validated into them by
`MethodSpec.typed`, the first line of every `run`).
Parameters are frozen dataclasses whose fields carry types and ranges (`param`); the catalog
validates its `methods.<name>` sections with `parse_params` and reports a wrong type or range
as `catalog.yaml: methods.topics.k: ...`.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from generator.errors import AtlasError
from generator.records import RECORDS, Meta

if TYPE_CHECKING:  # the types only: importing the registry must not load torch
    import torch
    from torch import Tensor

    from generator.nets.pathway import Activations, Pathway


# ---------------------------------------------------------------------------------------------
# Typed parameters


def param(default: Any, *, at_least: float | None = None, above: float | None = None,
          at_most: float | None = None, help: str = "") -> Any:
    """A parameter field with its range (`at_least`/`at_most` inclusive, `above` exclusive)."""
    return field(default=default, metadata={"at_least": at_least, "above": above, "at_most": at_most, "help": help})


class ParamError(AtlasError, ValueError):
    """A parameter value of the wrong type or out of range; `field` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(kind)))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(kind, str(kind))


def _check_value(name: str, value: Any, kind: Any, bounds: Mapping[str, Any]) -> Any:
    """`value` converted to `kind` (int -> float allowed), or ParamError."""
    options = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    if value is None:
        if type(None) in options:
            return None
        raise ParamError(name, f"expected {_describe(options[0])}, got nothing")
    kind = next(k for k in options if k is not type(None))
    if typing.get_origin(kind) is Literal:
        if value not in typing.get_args(kind):
            raise ParamError(name, f"expected {_describe(kind)}, got {value!r}")
        return value
    ok = (kind is bool and isinstance(value, bool)) or (kind is str and isinstance(value, str)) or (
        kind is int and isinstance(value, int) and not isinstance(value, bool)) or (
        kind is float and isinstance(value, (int, float)) and not isinstance(value, bool))
    if not ok:
        raise ParamError(name, f"expected {_describe(kind)}, got {type(value).__name__} {value!r}")
    if kind is float:
        value = float(value)
        if not math.isfinite(value):
            raise ParamError(name, f"must be a finite number, got {value}")
    if kind in (int, float):
        low, above, high = bounds.get("at_least"), bounds.get("above"), bounds.get("at_most")
        if low is not None and value < low:
            raise ParamError(name, f"must be at least {low}, got {value}")
        if above is not None and value <= above:
            raise ParamError(name, f"must be above {above}, got {value}")
        if high is not None and value > high:
            raise ParamError(name, f"must be at most {high}, got {value}")
    return value


def parse_params(cls: type, values: Mapping[str, Any]) -> Any:
    """An instance of the params dataclass `cls` from `values` (missing fields: defaults).
    Raises ParamError for an unknown field, a wrong type or a value out of range."""
    names = param_names(cls)
    for key in values:
        if key not in names:
            raise ParamError(str(key), f"unknown parameter {key!r}; known: {', '.join(names)}")
    hints = _type_hints(cls)
    checked = {f.name: _check_value(f.name, values.get(f.name, f.default), hints[f.name], f.metadata)
               for f in dataclasses.fields(cls)}
    return cls(**checked)


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict[str, Any]:
    """typing.get_type_hints, once per params class (it compiles every annotation: a catalog of
    10,000 classes asked for it 140,000 times)."""
    return typing.get_type_hints(cls)


def param_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


# ---------------------------------------------------------------------------------------------
# The class's patch database: one shared, declared input


# Bumped when the same `prior:` section starts cutting different patches (2: a database is
# normalized as the engine's prior_normalize says), so that every picture made with another
# database goes stale.
PRIOR_FORMAT = 2


@dataclass(frozen=True)
class PriorParams:
    """The class's patch database (catalog `prior:`), built once per class and shared by every
    method whose `uses_prior` says so; its values are in those methods' artifact keys."""

    images: int = param(50, at_least=1, at_most=100_000, help="class images whose patches form the database")
    patch: int = param(7, at_least=1, at_most=64, help="patch side (pixels)")
    stride: int = param(4, at_least=1, at_most=64, help="patch stride for the database and the image's patches")
    # exact matching costs queries x size (5k matched 20k in tuning)
    max_patches: int = param(5_000, at_least=1, at_most=10_000_000, help="database size cap")
    # 4.6x cheaper than matching on D = 147
    search_dims: int | None = param(32, at_least=1, help="match on the database's first principal components")


# ---------------------------------------------------------------------------------------------
# Each method's parameters


@dataclass(frozen=True)
class ScheduleParams:
    """A Fourier method's own schedule, so a cheap method need not run the steps an expensive one
    needs (docs/speed.md#steps-per-method), and its own zoom and shift, so a picture without a
    spatial gate can be seen under stronger ones than a pool5 window allows (docs/tuning.md#zoom),
    and its own mid steps, where a method reads as well from a smaller image (docs/speed.md#mid-steps)."""

    iterations: int | None = param(None, at_least=1, at_most=100_000, help="Fourier steps (None: engine.iterations)")
    lr: float | None = param(None, above=0, help="learning rate of those steps (None: engine.lr)")
    scale: float | None = param(None, at_least=0, at_most=0.9, help="random zoom by a factor in [1 - scale, 1 + scale] "
                                "each step (None: engine.scale)")
    jitter: int | None = param(None, at_least=0, at_most=64, help="random roll of up to this many pixels each step "
                               "(None: engine.jitter)")
    # between the engine's coarse steps and the full size (docs/speed.md#mid-steps)
    mid_size: int | None = param(None, at_least=0, at_most=4096, help="the net sees the image at this many px "
                                 "after the coarse steps, up to mid_until (None: engine.mid_size; 0: no mid steps)")
    mid_until: float | None = param(None, at_least=0, at_most=1, help="the fraction of the Fourier steps the mid "
                                    "size lasts up to (None: engine.mid_until)")


@dataclass(frozen=True)
class DistributionParams(ScheduleParams):
    """VITAL's feature-distribution prior (terms.FeatureDistribution), for the methods with a
    reference set: each picture's sorted per-channel features held to its reference images'
    (classviz: the class images, the prior picture only; location: the images scoring highest
    through the window; topics: the topic's retrieved images; ensemble: the member's favourites).
    docs/tuning.md#feature-distribution. Also these methods' own raw-pixel detail steps."""

    distribution: float = param(0.0, at_least=0, help="weight of the feature-distribution term (0: off)")
    distribution_layers: str = param("pool5", help="comma list of its layers: pool5, fc6, fc7, conv1..conv5 (an "
                                     "fc net's), or module names such as features.7")
    # raw-pixel steps after the engine's, where a Fourier step barely moves the finest scales
    detail_steps: int | None = param(None, at_least=0, at_most=100_000, help="raw-pixel steps after the engine's "
                                     "(fine detail; None: engine.detail_steps): docs/tuning.md#detail-steps")


@dataclass(frozen=True)
class ClassvizParams(DistributionParams):
    prior_weight: float | None = param(None, at_least=0, help="None: the engine default")


@dataclass(frozen=True)
class LocationParams(DistributionParams):
    window: int | None = param(None, at_least=1, at_most=64, help="k: the window is k x k pool5 positions "
                               "(None: location.auto_window, 2 on a 6x6 pool5, 3 on 7x7)")
    stride: int | None = param(None, at_least=1, at_most=64, help="step between windows (None: auto, a 3x3 grid)")
    prior: bool = param(True, help="patch prior from the class's own images")


@dataclass(frozen=True)
class TopicsParams(DistributionParams):
    k: int = param(5, at_least=1, at_most=100, help="topics (authors: 5)")
    images: int = param(50, at_least=1, at_most=100_000, help="class images factorized (authors: 50)")
    threshold: float = param(1.0, at_least=0, help="tau on the basis (authors: 1.0)")
    min_fraction: float = param(0.05, at_least=0, at_most=1, help="fewer units pass tau: quantile fallback")
    keep_fraction: float = param(0.25, above=0, at_most=1, help="fallback: keep this top fraction of units")
    retrieved: int = param(5, at_least=1, at_most=1000, help="images shown per topic")
    prior: bool = param(True)
    # facet-seeded start (Nguyen et al. 2016): the blurred mean of the topic's retrieved images
    init: Literal["noise", "facet"] = param("facet", help="start from noise, or from the topic's retrieved images' coarse mean")
    facet_side: int = param(8, at_least=1, at_most=224, help="side (px) of the coarse mean a facet start is blurred to")
    facet_images: int | None = param(None, at_least=1, at_most=1000, help="the top retrieved images a facet start is "
                                     "the coarse mean of (None: all `retrieved`)")
    distribution_images: int | None = param(None, at_least=1, at_most=1000, help="the top retrieved images the "
                                            "feature-distribution term holds the picture to (None: all `retrieved`)")
    patches: Literal["class", "topic"] = param("topic", help="patch prior from all class images, or the topic's retrieved ones")
    # the topic's own fc7 direction (its retrieved images' mean minus the class's mean) added to the class score
    direction: float = param(0.0, at_least=0, help="weight of the push along the topic's centred fc7 direction (0: off)")
    # the topic's m7 as a code that also forbids: activity on the fc7 units the topic leaves closed costs (as hierarchy's);
    # measured per layout (docs/tuning.md#topic-codes-that-forbid): it sets an fc-head net's topics apart, and on a
    # globally pooled net (mobilenet-v2) it silences the picture
    forbid: float | None = param(None, at_least=0, help="cost of activity on the fc7 units the topic closes "
                                 "(0: only gate; None: 2.5 on a net with fc6 and fc7, 0 on a globally pooled net)")
    # the class's topic pictures pushed apart (terms.Diversity): docs/tuning.md#diversity
    diversity: float = param(0.0, at_least=0, help="weight of the push that sets the class's topic pictures apart "
                             "(mean cosine similarity of their diversity_layer styles; 0: off)")
    diversity_layer: str = param("pool5", help="the layer whose style (Gram matrix) the pictures differ in: a "
                                 "layer name or a module name such as features.7")


@dataclass(frozen=True)
class EnsembleParams(DistributionParams):
    masks: int = param(3, at_least=1, at_most=100, help="mask pairs (m6, m7) sampled (authors: 2)")
    inits: int = param(3, at_least=1, at_most=100, help="random inits per mask pair (authors: 2)")
    keep: float = param(0.5, above=0, at_most=1, help="fraction of units each mask keeps")
    # "paper": m6-7 as the paper (m7 on a pooled net); "trained": where the net itself dropped out in training
    at: Literal["paper", "trained"] = param("paper", help="mask the paper's m6-7, or the levels the net was trained with dropout at")
    # "member": each member starts from the blurred mean of the class images it prefers over the full net
    init: Literal["noise", "member"] = param("member", help="noise, or the blurred mean of the images the member favours")
    member_images: int = param(5, at_least=1, at_most=1000, help="images a member's start is the blurred mean of")
    prior: bool = param(True)
    coarse: bool = param(False, help="take the engine's coarse and mid steps (engine.coarse_size, mid_size); off: on "
                         "the shared mobilenet-v2 they cut how much more the masks than the inits set the members apart")


@dataclass(frozen=True)
class HierarchyParams(ScheduleParams):
    images: int = param(3, at_least=1, at_most=1000, help="images inverted: 3 problems each")
    prior: bool = param(True)
    init: Literal["class_layout", "noise"] = param("class_layout", help="coarse mean of the other images, or noise")
    forbid: float = param(2.5, at_least=0, help="cost of activity on the units the code has off (0: only gate)")


@dataclass(frozen=True)
class InversionParams:
    images: int = param(2, at_least=1, at_most=1000, help="invert the class's first `images` images")
    database_images: int = param(48, at_least=1, at_most=100_000, help="retrieval database: the next images")
    k: int = param(10, at_least=1, at_most=1000, help="nearest centre patches per pool5 cell")
    patch: int = param(7, at_least=1, at_most=64, help="patch prior: patch side (pixels)")
    stride: int = param(4, at_least=1, at_most=64, help="patch prior: stride")
    whiten: bool = param(False, help="match patches in a ZCA-whitened space")
    # Engine settings of its own (inversion has its own energy scale), shared by all variants;
    # tuned with benchmarks/inversion.py (why: generator/methods/inversion.py).
    iterations: int = param(100, at_least=1, at_most=100_000)
    lr: float = param(0.01, above=0)
    feature_weight: float = param(10.0, at_least=0)
    l2: float = param(0.0, at_least=0)
    tv: float = param(2.0, at_least=0)
    prior_weight: float = param(20.0, at_least=0)
    prior_stride: int = param(8, at_least=1, at_most=64)
    rematch_every: int = param(10, at_least=1)
    jitter: int = param(0, at_least=0, at_most=64)
    schedule: Literal["cosine", "step", "constant"] = param("cosine")


@dataclass(frozen=True)
class PreimagesParams:
    """Mahendran & Vedaldi's pre-images (alpha-norm + TV, data term ||phi(x) - phi0||^2 / ||phi0||^2);
    the weights are for images in [0, 1] with regularizers as means over pixels."""

    images: int = param(1, at_least=1, at_most=100, help="invert the class's first `images` images")
    # alexnet-slim, church image 0, 150 steps: tv 30 + jitter 2 reach conv3-pool5 errors of 0.12-0.20,
    # tv 10 without jitter 0.14-0.34 and pictures of noise (tv 2: noise at every layer past conv2)
    iterations: int = param(200, at_least=1, at_most=100_000)
    lr: float = param(0.05, above=0)
    tv: float = param(30.0, at_least=0, help="weight of squared TV (M&V's beta = 2)")
    alpha_norm: float = param(100.0, at_least=0, help="weight of the alpha-norm (alpha = 6) around the mean colour")
    jitter: int = param(2, at_least=0, at_most=64, help="random roll (pixels) each step")


@dataclass(frozen=True)
class CaricaturesParams:
    """M&V's caricatures: from the image itself, maximize <phi(x), phi0> / ||phi0||^2 with the
    same regularizers as the pre-images."""

    images: int = param(1, at_least=1, at_most=100, help="caricature the class's first `images` images")
    layers: str = param("conv3,conv5,fc7", help="comma list of layers (those the net lacks are skipped)")
    iterations: int = param(100, at_least=1, at_most=100_000)
    lr: float = param(0.02, above=0)
    tv: float = param(30.0, at_least=0)
    alpha_norm: float = param(100.0, at_least=0)
    jitter: int = param(2, at_least=0, at_most=64)


@dataclass(frozen=True)
class NeighboursParams:
    queries: int = param(3, at_least=1, at_most=100, help="query images shown (numbers use every image)")
    k: int = param(5, at_least=1, at_most=100, help="neighbours each way")
    topics: int = param(5, at_least=1, at_most=100, help="NMF topics of fc7 that say whether a neighbour shares "
                        "the query's style (the topics method's default k)")


@dataclass(frozen=True)
class Fc7MapParams:
    method: Literal["tsne"] = param("tsne", help="2-D embedding (scikit-learn's t-SNE)")
    perplexity: float = param(15.0, above=0, help="t-SNE perplexity (capped at (images - 1) / 3)")
    topics: int = param(5, at_least=1, at_most=100, help="NMF topics that colour the borders")
    cell: int = param(56, at_least=8, at_most=256, help="side of a thumbnail in the map (pixels)")


@dataclass(frozen=True)
class MeanParams:
    top: int = param(10, at_least=1, at_most=100_000, help="the class images the network scores highest, averaged apart")


@dataclass(frozen=True)
class SaliencyParams:
    images: int = param(4, at_least=1, at_most=1000, help="the class images with the highest class score")
    patch: float = param(0.2, above=0, at_most=1, help="occluder side, a fraction of the input side")
    stride: float = param(0.1, above=0, at_most=1, help="occluder step, a fraction of the input side")
    top: float = param(0.2, above=0, at_most=1, help="top fraction of pixels compared between the two maps")


# ---------------------------------------------------------------------------------------------
# Layouts and claims: how the site arranges a method's pictures, what the claims page measures


@dataclass(frozen=True)
class Layout:
    """How the site arranges a method's pictures.

    kind: "pair" (pictures side by side in `order` of their key), "grid" (at meta row/col),
    "topic-rows" (each picture beside its meta.retrieved class images), "table" (meta
    `rows` x `columns`), "strips" (one strip per meta.image: the picture whose meta `step`
    is in `leading`, then the others in the order the method recorded in numbers[`steps`],
    else `order`; `numbers` adds a table of the steps' numbers), "neighbours" (each picture, a
    query image, beside the class images listed in its meta `fc7` and `pixel`). `titles` names
    pictures by key (pair) or step value (strips)."""

    kind: Literal["pair", "grid", "topic-rows", "table", "strips", "neighbours"]
    order: tuple[str, ...] = ()
    titles: Mapping[str, str] = field(default_factory=dict)
    step: str = ""  # strips: the meta field that names a picture's place in its strip
    step_title: str = "{}"  # strips: the title of a step without one in `titles`
    steps: str = ""  # strips: the numbers field where the method records the steps it ran
    leading: tuple[str, ...] = ()  # strips: step values of the strip's first picture
    rows: str = ""  # table: meta field of the rows (0-based; shown from 1)
    columns: str = ""  # table: meta field of the columns
    row_title: str = "{}"  # table: a row's title from its number
    column_title: str = "{}"
    note: str = ""  # table: its caption (level {placeholders} as in MethodSpec.summary)
    numbers: Mapping[str, str] = field(default_factory=dict)  # strips: picture numbers shown as an HTML table
    # under each strip (number name -> column title), one row per step
    exemplars: str = ""  # the title of the real class images shown under each picture (its meta "exemplars")

    @property
    def record(self) -> type[Meta]:
        """The typed `meta` of this layout's pictures (generator.records)."""
        return RECORDS[self.kind]


@dataclass(frozen=True)
class Claim:
    id: str
    section: str  # the paper's section
    statement: str  # level {placeholders} as in MethodSpec.summary


@dataclass(frozen=True)
class Stat:
    """One number of a method on the class's index card; the index sorts by it (high first)."""

    key: str  # its name in the index's data and sort menu
    label: str  # the noun after a count ("style"), or the label before a number ("het.")
    title: str = ""  # the pill's tooltip
    number: str = ""  # the method's `numbers` field shown; "": how many pictures the method made
    help: str = ""  # what the number says, for the index's introduction ("counts the class's fc7 topics")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    title: str  # level {placeholders} as in `summary`
    summary: str  # one line, shown above the method's pictures; {placeholders} name levels in the net's
    # words (families.LEVEL_WORDS: a net without fc6 has no m6), filled by families.in_words
    version: int  # bump when the code changes what it produces (part of the artifact key)
    params: type  # frozen dataclass of typed parameters (catalog `methods.<name>`)
    layout: Layout
    claims: tuple[Claim, ...] = ()
    uses_prior: Callable[[Mapping[str, Any]], bool] = lambda params: False  # needs the class's patch database
    diagnostic: bool = False  # a per-class diagnostic beside the paper's methods (not the paper's own)
    card: str = ""  # key of the picture that stands for the class on the index (first method with one wins)
    stats: tuple[Stat, ...] = ()  # numbers shown on the class's index card

    def defaults(self) -> dict[str, Any]:
        return dataclasses.asdict(self.params())

    def typed(self, values: Any) -> Any:
        """`values` as this method's typed parameters: a `params` instance as it is, a mapping
        (overrides of the defaults) validated by parse_params (a wrong type or range raises)."""
        return values if isinstance(values, self.params) else parse_params(self.params, values)


def _prior_switch(params: Mapping[str, Any]) -> bool:
    return bool(params.get("prior", True))


METHODS: tuple[MethodSpec, ...] = (
    MethodSpec(
        name="classviz", title="Class visualization", version=3, params=ClassvizParams,
        summary="Maximizing the class score with L2 + TV only (baseline) and with the data-driven patch prior.",
        layout=Layout("pair", order=("baseline", "prior"),
                      titles={"baseline": "Baseline: L2 + TV", "prior": "With the patch prior"},
                      exemplars="Nearest class images (fc7)"),
        claims=(
            Claim("prior-colour", "3", "The patch prior gives class visualizations the colour statistics of real "
                  "images, where L2 + TV alone gives pop-art colours (Sec. 3)."),
            Claim("prior-prob", "3", "With the prior the picture still reaches the class (target probability)."),
        ),
        uses_prior=lambda params: True,
        card="prior",
    ),
    MethodSpec(
        name="location", title="Location grid (m5)", version=4, params=LocationParams,
        summary="Each picture opens only one window of pool5 (mask m5); they sit where their windows sit.",
        layout=Layout("grid", exemplars="Class images scoring highest through this window"),
        claims=(
            Claim("location-layout", "4.1",
                  "Opening one pool5 window, a class is drawn best where it keeps its parts (Sec. 4.1)."),
            Claim("location-heterogeneity", "4.1", "Classes differ in how much their picture changes across "
                  "windows (monastery vs terrier) (truth-free proxy)."),
        ),
        uses_prior=_prior_switch,
        stats=(Stat("heterogeneity", "het.", "heterogeneity of the location grid", number="heterogeneity",
                    help="is how much the pictures of its location grid differ (mean fc7 distance)"),),
    ),
    MethodSpec(
        name="topics", title="Topic styles (m7)", version=4, params=TopicsParams,
        summary="NMF of the class's {fc7_codes}; each topic's units form the mask m7. Its visualization sits "
        "beside the images that load most on it.",
        layout=Layout("topic-rows"),
        claims=(
            Claim("topics-styles", "4.2", "NMF topics of a class's fc7 recover its styles (Sec. 4.2)."),
            Claim("topics-distinct", "4.2", "A class's topics open different fc7 units (truth-free proxy)."),
            Claim("topics-pictures", "4.2", "Each topic's picture shows its topic: to the network it looks most "
                  "like that topic's images."),
        ),
        uses_prior=_prior_switch,
        stats=(Stat("styles", "style", help="counts its fc7 topics"),),
    ),
    MethodSpec(
        name="ensemble", title="Dropout ensemble ({dropout_code})", version=6, params=EnsembleParams,
        summary="Random dropout masks on {dropped} pick ensemble members; rows are masks, columns random "
        "initializations. Each member starts from the blurred mean of the class images it favours most over "
        "the full net (shown under its first picture), so its inits differ only by their noise.",
        layout=Layout("table", rows="mask", columns="init", row_title="member {}", column_title="init {}",
                      note="Rows: dropout members ({dropout_masks}) · columns: random initial images",
                      exemplars="Nearest class images (fc7)"),
        claims=(
            *(Claim(f"ensemble-{space}", "4.3", "Different dropout masks ({dropout_code}) change a class's picture more "
                    "than different random inits (Sec. 4.3).") for space in ("fc7", "pixel")),
            Claim("ensemble-favourites", "4.3", "A dropout member has a taste: the class images it favours most over the "
                  "full net are more alike than random class images."),
            Claim("ensemble-favourite-styles", "4.3", "A dropout member's favourite images share a planted style more "
                  "often than random class images do."),
        ),
        uses_prior=_prior_switch,
    ),
    MethodSpec(
        name="hierarchy", title="Hierarchical codes (m5-7)", version=7, params=HierarchyParams,
        summary="Class visualization constrained by a real image's on/off code at more and more layers "
        "({code_layers}): the units the image has on carry the class score, the units it has off are "
        "kept quiet.",
        layout=Layout("strips", step="level", steps="levels", leading=("input",), order=("m7", "m6-7", "m5-7"),
                      titles={"input": "Input"}, step_title="Code {}"),
        claims=(
            *(Claim(f"hierarchy-{space}", "4.4", "Inverting an image's binary code with more constraints "
                    "({code_levels}) comes closer to the image (Sec. 4.4).") for space in ("pixel", "fc7")),
            Claim("hierarchy-specific", "4.4", "The pictures come closer to their own image, not only to every "
                  "image of the class (control for hierarchy-pixel)."),
        ),
        uses_prior=_prior_switch,
    ),
    MethodSpec(
        name="inversion", title="pool5 inversion", version=2, params=InversionParams,
        summary="Reconstructing an image from its pool5 feature: random init, retrieved-patch average init, "
        "and the patch prior.",
        layout=Layout("strips", step="variant", leading=("original", "input"),
                      order=("retrieved", "rand", "avg", "prior"),
                      titles={"original": "Original", "retrieved": "[7] retrieved-patch average",
                              "rand": "[8]+rand: random init", "avg": "[8]+[7]: init from the average",
                              "prior": "ours: the patch prior"}),
    ),
    MethodSpec(
        name="preimages", title="Pre-images at every layer", version=1, params=PreimagesParams,
        summary="Mahendran & Vedaldi's natural pre-images: from noise, an image whose features at one layer match "
        "the class image's (alpha-norm + TV). The table gives each layer's normalized feature error "
        "||phi(x) - phi0||^2 / ||phi0||^2 and the pixel error ||x - x0|| / ||x0||.",
        layout=Layout("strips", step="layer", steps="layers", leading=("original",), titles={"original": "Original"},
                      numbers={"feature_error": "feature error ||φ(x)−φ0||²/||φ0||²",
                               "pixel_error": "pixel error ||x−x0||/||x0||"}),
        diagnostic=True,
    ),
    MethodSpec(
        name="caricatures", title="Caricatures", version=1, params=CaricaturesParams,
        summary="Starting from the class image, amplify its own activations at one layer (maximize "
        "<phi(x), phi0> / ||phi0||^2, alpha-norm + TV): what that layer sees in the image, exaggerated.",
        layout=Layout("strips", step="layer", steps="layers", leading=("original",), titles={"original": "Original"},
                      step_title="Caricature at {}"),
        diagnostic=True,
    ),
    MethodSpec(
        name="neighbours", title="Nearest neighbours: fc7 vs pixels", version=1, params=NeighboursParams,
        summary="Each query's nearest class images in fc7 (cosine) and in raw pixels (L2), via faiss: fc7 "
        "neighbours share what the picture shows, pixel neighbours share colour and layout.",
        layout=Layout("neighbours"),
        diagnostic=True,
    ),
    MethodSpec(
        name="fc7map", title="fc7 map", version=1, params=Fc7MapParams,
        summary="The class's images laid out by a 2-D t-SNE of their fc7 codes, snapped to a grid; each border "
        "is coloured by the image's NMF topic.",
        layout=Layout("pair", order=("map",)),
        diagnostic=True,
    ),
    MethodSpec(
        name="saliency", title="Occlusion and Grad-CAM", version=1, params=SaliencyParams,
        summary="Which pixels carry the class score: the score's drop when a grey square hides each region "
        "(occlusion), and Grad-CAM at pool5 (the last feature map), on the images the class scores highest.",
        layout=Layout("strips", step="map", leading=("original",), order=("occlusion", "gradcam"),
                      titles={"original": "Image", "occlusion": "Occlusion", "gradcam": "Grad-CAM (pool5)"}),
        diagnostic=True,
    ),
    MethodSpec(
        name="mean", title="Mean image", version=1, params=MeanParams,
        summary="The pixel mean of the class's images, and of the ones the network scores highest: the layout and "
        "colours the class's photos share, and whether the network reads that average as the class (p).",
        layout=Layout("pair", order=("all", "top"), titles={"all": "Mean of the class images",
                                                            "top": "Mean of its highest-scoring images"},
                      exemplars="The images it averages"),
        diagnostic=True,
    ),
)
REGISTRY: dict[str, MethodSpec] = {spec.name: spec for spec in METHODS}
METHOD_NAMES = tuple(REGISTRY)


def spec(name: str) -> MethodSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHOD_NAMES)}")
    return REGISTRY[name]


def method_module(name: str) -> Any:
    """The module implementing method `name`'s run (imported lazily: methods pull in the engine)."""
    import importlib

    spec(name)
    return importlib.import_module(f"generator.methods.{name}")


def layout_of(name: str) -> Layout:
    """The layout of method `name`; a method this version does not know is read as pictures side by side."""
    return REGISTRY[name].layout if name in REGISTRY else Layout("pair")


def method_defaults(name: str) -> dict[str, Any]:
    """The method's default parameters (what the catalog may set under `methods.<name>`)."""
    return spec(name).defaults()


# ---------------------------------------------------------------------------------------------
# What a method gets and returns


def _cpu() -> "torch.device":
    import torch

    return torch.device("cpu")


@dataclass
class ClassContext:
    """Everything a method needs about one class; built once per class by `generator.build`."""

    pathway: Pathway
    class_index: int  # the class's index into fc8
    class_id: str  # wnid (or demo id)
    class_name: str
    images: Tensor  # (N, 3, S, S) in [0, 1]: the class's images, in their deterministic order
    image_names: list[str]  # display names of those images (file names), same order
    features: Activations  # pool5/fc6/fc7/fc8 of `images` (no masks), on CPU
    engine: dict[str, Any]  # engine settings from the catalog (`generator.engine.settings.Settings` fields)
    seed: int
    device: torch.device = field(default_factory=_cpu)
    progress: bool = False  # show the engine's bar over optimization steps
    prior: PriorParams = field(default_factory=PriorParams)  # the class's patch database (catalog `prior:`)


@dataclass
class Picture:
    """One image of the atlas plus everything needed to caption and reproduce it."""

    key: str  # unique within its method, used as the file stem: e.g. "window-r0-c1"
    image: Tensor  # (3, H, W) in [0, 1]
    caption: str  # what produced it, for people
    alt: str  # alt text: what the picture shows
    numbers: dict[str, float] = field(default_factory=dict)  # e.g. {"prob": 0.97}
    meta: Meta = field(default_factory=Meta)  # the record of the method's layout kind (generator.records)


@dataclass
class MethodResult:
    method: str
    params: Any  # the method's typed parameters (MethodSpec.params) it ran with
    seed: int
    pictures: list[Picture]
    numbers: dict[str, Any] = field(default_factory=dict)  # summary numbers (e.g. heterogeneity)
