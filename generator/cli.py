"""The `atlas` command: build, render, demo, list, clean, serve, complete.

Each command is a thin shell over a library function (build.build, site.render, ...), imported
inside the command so `atlas --help` stays fast. Errors a user can fix (a bad catalog field, a
missing folder, no network for a download) print one red `error: ...` line and exit 2; a build
with failed classes exits 1.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from generator.errors import AtlasError, UsageError

app = typer.Typer(
    name="atlas",
    help="The intra-class atlas: what a CNN knows about the variety inside each class "
    "(Wei et al. 2015), built into a static website.\n\n"
    "Quick start, offline: `atlas demo`, then `atlas serve`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Options shared by the commands that read a catalog.
CatalogPath = Annotated[Path, typer.Option("--catalog", help="Catalog file (see README: Catalog reference).")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", help="alexnet, vgg16, resnet50, vit_b_16, ..., timm:<name>, path/net.py:factory or package.module:factory.")]
WeightsOpt = Annotated[Optional[str], typer.Option("--weights", help="Weights name (IMAGENET1K_V1) or a local state_dict file.")]
LabelsOpt = Annotated[Optional[str], typer.Option(
    "--labels", help="Output classes of the model: comma list, .txt/.tsv file, or 'imagenette'.")]
ImagesOpt = Annotated[Optional[Path], typer.Option(
    "--images", help="ImageNet-layout image folder <root>/<wnid>/*.JPEG (sets images.source: folder).")]
ClassesOpt = Annotated[Optional[str], typer.Option("--classes", help="Comma list of wnids or names, replacing the catalog's classes.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", help="Folder the website is written to.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Seed for image choice and every random init.")]
PerClassOpt = Annotated[Optional[int], typer.Option("--per-class", help="Images per class.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="Torch threads (default: one per physical core).")]


def expected_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print errors a user can fix (an AtlasError, or a missing file) as one red line and
    exit 2, with no traceback; anything else is a bug and keeps its traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            typer.secho("interrupted", fg="red", err=True)
            raise typer.Exit(130) from None
        except SystemExit as exc:  # code we ran (a model file, a factory) called sys.exit()
            typer.secho(f"error: code run by atlas called sys.exit({exc.code!r}); nothing after it ran", fg="red", err=True)
            raise typer.Exit(2) from None
        except Exception as exc:
            if not _is_expected(exc):
                raise
            message = " ".join(str(exc).split()) or type(exc).__name__
            typer.secho(f"error: {message}", fg="red", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _is_expected(exc: BaseException) -> bool:
    return isinstance(exc, (AtlasError, FileNotFoundError))


def _load(catalog: Path, **flags: Any):
    """The catalog with command-line flags applied over it."""
    from generator.catalog import load_catalog

    overrides = {key: value for key, value in flags.items() if value is not None}
    if flags.get("images") is not None:
        overrides.pop("images")
        overrides["images_root"] = str(flags["images"])
        overrides["images_source"] = "folder"
    if flags.get("classes") is not None:
        overrides["classes"] = [c.strip() for c in flags["classes"].split(",") if c.strip()]
    for key in ("output",):
        if key in overrides:
            overrides[key] = str(overrides[key])
    return load_catalog(catalog, overrides)


def _parse_shard(shard: str | None) -> tuple[int, int] | None:
    if shard is None:
        return None
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise UsageError(f"--shard {shard!r}: expected i/n, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {shard!r}: need 0 <= i < n (shards are numbered from 0)")
    return index, count


def _parse_only(only: list[str] | None) -> list[str] | None:
    from generator.methods import METHOD_NAMES

    if not only:
        return None
    names = [name.strip() for item in only for name in item.split(",") if name.strip()]
    known = (*METHOD_NAMES, "units")  # units: the unit atlas step (generator/units/__init__.py)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(f"--only: unknown method {unknown[0]!r}; known: {', '.join(known)}")
    return names


@app.command()
@expected_errors
def build(
    catalog: CatalogPath = Path("catalog.yaml"),
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    labels: LabelsOpt = None,
    images: ImagesOpt = None,
    classes: ClassesOpt = None,
    device: DeviceOpt = None,
    output: OutputOpt = None,
    seed: SeedOpt = None,
    per_class: PerClassOpt = None,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Run only these methods, or `units` (repeat, or comma list).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute even what is up to date.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would run, run nothing.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Build only shard i of n (i/n, from 0), for cluster array jobs.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Classes built in parallel processes.")] = 1,
    executor: Annotated[str, typer.Option("--executor", help="local, or ray: one Ray task per class (pip install -e '.[ray]').")] = "local",
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster (host:6379, auto); default: a new one.")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Build (or update) the atlas of the catalog's classes, then render the website.

    Only what changed since the last build is recomputed. Example:

        atlas build --classes church,golf_ball --device cuda
    """
    from generator.build.executors import make_executor
    from generator.images import source_root
    from generator.nets.models import ensure_weights

    runner = make_executor(executor, address)
    if runner is not None and workers > 1:
        raise UsageError("--workers is for the local executor; Ray runs as many classes as the cluster has room for")
    cat = _load(catalog, model=model, weights=weights, labels=labels, images=images, classes=classes,
                device=device, output=output, seed=seed, per_class=per_class)
    methods = _parse_only(only)
    shard_pair = _parse_shard(shard)
    if not dry_run:
        # Downloads first, so an offline machine hears about it in seconds, not mid-build.
        ensure_weights(cat.model)
        source_root(cat.images)
    from generator import build as builder
    from generator.threads import use_threads

    use_threads(threads)
    report = builder.build(cat, only=methods, force=force, dry_run=dry_run, shard=shard_pair,
                           workers=workers, progress=True, executor=runner)
    typer.echo(report.summary())
    if not dry_run and shard_pair is None:
        _render_after_build(cat.output, report.ok)
    if not report.ok:
        raise typer.Exit(1)


def _render_after_build(output: Path, build_ok: bool) -> None:
    """Render the site; after a partly failed build, a site of the classes that worked is still
    worth having, and no site at all is not a second error."""
    from generator.site import render as render_site

    try:
        typer.echo(f"website: {render_site(output)}")
    except Exception as exc:
        if build_ok or not _is_expected(exc):
            raise
        typer.secho(f"no website rendered: {exc}", fg="yellow", err=True)


@app.command()
@expected_errors
def render(
    output: Annotated[Path, typer.Option("--output", help="Folder holding classes/*/manifest.json.")] = Path("site"),
) -> None:
    """Re-render the website from the manifests in OUTPUT (seconds; no model needed).

    Use it after editing templates/, or after sharded builds. Example:

        atlas render --output site
    """
    from generator.site import render as render_site

    typer.echo(f"website: {render_site(output)}")


@app.command()
@expected_errors
def demo(
    output: Annotated[Path, typer.Option("--output", help="Folder the website is written to.")] = Path("site"),
    device: DeviceOpt = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Classes built in parallel processes.")] = 1,
    force: Annotated[bool, typer.Option("--force", help="Recompute even what is up to date.")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Build a complete small atlas offline: a generated image world and a small CNN trained on it.

    Needs no network and no data; takes a few minutes on a laptop CPU. Example:

        atlas demo && atlas serve
    """
    from generator import build as builder
    from generator.demo import ensure_demo
    from generator.site import render as render_site
    from generator.threads import use_threads

    use_threads(threads)
    world = ensure_demo(progress=True)
    cat = _load(Path(world.catalog_path), output=output, device=device)
    report = builder.build(cat, force=force, workers=workers, progress=True)
    typer.echo(report.summary())
    typer.echo(f"website: {render_site(cat.output)}  (browse it with `atlas serve --output {cat.output}`)")
    if not report.ok:
        raise typer.Exit(1)


@app.command("list")
@expected_errors
def list_classes(
    catalog: CatalogPath = Path("catalog.yaml"),
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    labels: LabelsOpt = None,
    images: ImagesOpt = None,
    classes: ClassesOpt = None,
    device: DeviceOpt = None,
    output: OutputOpt = None,
    seed: SeedOpt = None,
    per_class: PerClassOpt = None,
) -> None:
    """List the catalog's classes: id, name, model output index and images found.

    Checks a catalog (and its flags) without loading the model or running anything. Example:

        atlas list --images /data/imagenet/train --classes church,n03445777
    """
    from generator.images import count_images, source_root

    cat = _load(catalog, model=model, weights=weights, labels=labels, images=images, classes=classes,
                device=device, output=output, seed=seed, per_class=per_class)
    counts = [count_images(cat.images, entry.id) for entry in cat.classes]
    rows = [("id", "name", "index", "images")] + [
        (entry.id, entry.name, str(entry.index), str(count)) for entry, count in zip(cat.classes, counts)
    ]
    widths = [max(len(row[col]) for row in rows) for col in range(4)]
    typer.echo("\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows))
    root = source_root(cat.images, download=False) if cat.images.source != "demo" else None
    typer.echo(f"{len(cat.classes)} classes; model {cat.model.name}; images: {cat.images.source} {root or ''}".rstrip())
    if cat.images.source == "imagenette" and not any(counts):
        typer.echo("Imagenette is not downloaded yet: `atlas build` fetches it on first use.")
    short = [entry.id for entry, count in zip(cat.classes, counts) if count < cat.images.per_class]
    if short:
        typer.secho(f"{len(short)} classes have fewer than per_class={cat.images.per_class} images: "
                    f"{', '.join(short[:10])}", fg="yellow")


@app.command()
@expected_errors
def clean(
    catalog: CatalogPath = Path("catalog.yaml"),
    output: OutputOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed, remove nothing.")] = False,
) -> None:
    """Remove stale files the atlas wrote (old pictures, classes left out of the catalog, the
    feature cache) from its output folder; files the atlas did not write are never touched.

    Works only in a folder `atlas build` marked as its output (.atlas-output). Example:

        atlas clean --output site --dry-run
    """
    from generator import build as builder

    cat = _load(catalog, output=output)
    removed = builder.clean(cat, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for path in removed:
        typer.echo(f"{verb} {path}")
    typer.echo(f"{len(removed)} paths {'would be removed' if dry_run else 'removed'}")


@app.command()
@expected_errors
def serve(
    output: Annotated[Path, typer.Option("--output", help="The website folder.")] = Path("site"),
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 8000,
) -> None:
    """Serve the website on http://127.0.0.1:PORT/ (local only) until Ctrl-C.

    The site is static: opening OUTPUT/index.html directly works too. Example:

        atlas serve --port 8080
    """
    from generator.site import serve as serve_site

    if not (output / "index.html").is_file():
        raise UsageError(f"{output}/index.html not found: run `atlas build` or `atlas demo` first")
    serve_site(output, port)


@app.command()
@expected_errors
def complete(
    image: Annotated[Path, typer.Argument(help="The scene (any photo); resized and centre-cropped to the model's input size.")],
    box: Annotated[str, typer.Option(
        "--box", "--mask", help="x,y,w,h of the region to fill, in pixels of the cropped input (--mask is the same).")],
    out: Annotated[Path, typer.Option("--out", help="PNG written here.")] = Path("completed.png"),
    class_: Annotated[Optional[str], typer.Option("--class", help="Class to paint (id or name); default: the scene's top-1.")] = None,
    topic: Annotated[Optional[int], typer.Option("--topic", help="Style: topic N of --class's images, from 1 as on the site.")] = None,
    catalog: CatalogPath = Path("catalog.yaml"),
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    labels: LabelsOpt = None,
    images: ImagesOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Style-based object completion (paper Sec. 5.2): paint a class into a box of an image.

    Pixels outside the box stay fixed. Example (a church in topic 2's style):

        atlas complete scene.jpg --box 60,40,100,120 --class church --topic 2 --out church.png
    """
    from generator.images import load_image
    from generator.methods.completion import complete_scene
    from generator.nets.models import class_table

    try:
        x, y, w, h = (int(v) for v in box.split(","))
    except ValueError:
        raise UsageError(f"--box {box!r}: expected x,y,w,h (four integers)") from None
    if topic is not None and class_ is None:
        raise UsageError("--topic needs --class (the topics are those of that class's images)")
    image_format = _output_format(out)  # before minutes of optimization, not after
    cat = _load(catalog, model=model, weights=weights, labels=labels, images=images, device=device, seed=seed)
    k = cat.methods["topics"]["k"]
    if topic is not None and not 1 <= topic <= k:  # before the photo, the model and the topic model
        raise UsageError(f"--topic {topic}: the topics are numbered 1 to {k} (topics.k in the catalog)")
    scene = load_image(image, cat.model.input_size)  # a missing / non-image / bomb photo: BadImage
    try:
        result = complete_scene(cat, scene, (x, y, w, h), class_, topic)
    except LookupError as exc:
        raise UsageError(f"--class: {exc.args[0]}") from None
    except ValueError as exc:  # a box outside the image, a topic the class lacks, an engine setting it cannot use
        raise UsageError(str(exc)) from None
    _save_image(result.image, out, image_format)
    name = class_table(cat.model)[result.class_index][1]
    typer.echo(f"wrote {out}: {name} (index {result.class_index}), score {result.start_score:.2f} -> {result.score:.2f}, "
               f"prob {result.prob:.3f}" + (" (diverged)" if result.diverged else ""))


def _output_format(out: Path) -> str:
    """The PIL format `--out`'s extension asks for, or UsageError (checked before any work)."""
    from PIL import Image

    Image.init()
    image_format = Image.registered_extensions().get(out.suffix.lower())
    if image_format is None or image_format not in Image.SAVE:
        raise UsageError(f"--out {out}: unknown image extension {out.suffix or '(none)'!r}; use .png or .jpg")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder; give a file name such as {out / 'completed.png'}")
    return image_format


def _save_image(image, out: Path, image_format: str) -> None:
    import io

    from generator.store import atomic_write, to_pil

    buffer = io.BytesIO()
    to_pil(image).save(buffer, format=image_format)
    atomic_write(out, buffer.getvalue())
