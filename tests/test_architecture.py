"""ARCHITECTURE.md names only what exists: every path it names is in the repository, every
dotted Python name it puts in backticks resolves (a `generator.` path, a module's short name
such as `store.write_json`, or a class of the package such as `Problem.gates`, instance
attributes included), and every catalog key it names (`methods.topics.k`, `units.batch`) is a
field of its section. Other dotted text (a JSON field such as `meta.topic`) is left alone."""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest

import generator

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "ARCHITECTURE.md"
ROOTS = ("generator/", "tests/", "benchmarks/", "templates/", "docs/", ".ci/")
DOTTED = re.compile(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")


def modules() -> dict[str, Any]:
    found = {"generator": generator}
    for info in pkgutil.walk_packages(generator.__path__, "generator."):
        if not info.name.endswith("__main__"):  # importing it runs the command line
            found[info.name] = importlib.import_module(info.name)
    return found


def spans() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", lambda m: "`" + m.group(0).replace("`", " ") + "`", text, flags=re.S)
    return re.findall(r"`([^`]+)`", text)


def has(owner: Any, name: str) -> bool:
    """An attribute, a dataclass field or an attribute its class's code sets on `self`."""
    fields = getattr(owner, "__dataclass_fields__", {}) if dataclasses.is_dataclass(owner) else {}
    if hasattr(owner, name) or name in fields or name in getattr(owner, "__annotations__", {}):
        return True
    if isinstance(owner, type):
        try:
            return re.search(rf"\bself\.{name}\s*[:=]", inspect.getsource(owner)) is not None
        except (OSError, TypeError):
            return False
    return False


def catalog_key(dotted: str) -> bool | None:
    """True/False: a catalog key (section.field...) that is / is not one; None: not a catalog section."""
    from generator.catalog import Catalog, ImageSpec
    from generator.engine.settings import Settings
    from generator.methods import REGISTRY, PriorParams
    from generator.modelspec import ModelSpec
    from generator.units import UnitsParams

    head, *rest = dotted.split(".")
    sections: dict[str, Any] = {"model": ModelSpec, "images": ImageSpec, "prior": PriorParams, "units": UnitsParams,
                                "engine": Settings}
    if head == "methods" and rest:
        spec = REGISTRY.get(rest[0])
        return spec is not None and all(name in {*spec.params.__dataclass_fields__, "enabled"} for name in rest[1:])
    if head in sections:
        return len(rest) == 1 and rest[0] in sections[head].__dataclass_fields__
    if head in Catalog.__dataclass_fields__:
        return not rest
    return None


def resolve(dotted: str, found: dict[str, Any], short: dict[str, list[Any]], classes: dict[str, list[Any]]) -> bool | None:
    """True/False: the name resolves or not; None: not a Python name of the package."""
    head, *rest = dotted.split(".")
    if head == "generator":
        for cut in range(len(dotted.split(".")), 0, -1):
            module = ".".join(dotted.split(".")[:cut])
            if module in found:
                owner: Any = found[module]
                for name in dotted.split(".")[cut:]:
                    if not has(owner, name):
                        return False
                    owner = getattr(owner, name, None)
                return True
        return False
    owners = short.get(head) or classes.get(head)
    if owners is None:
        return None
    for owner in owners:
        ok = True
        for name in rest:
            if not has(owner, name):
                ok = False
                break
            owner = getattr(owner, name, None)
        if ok:
            return True
    return False


def test_every_path_and_dotted_name_in_architecture_md_exists():
    found = modules()
    short: dict[str, list[Any]] = {}
    classes: dict[str, list[Any]] = {}
    for name, module in found.items():
        short.setdefault(name.rpartition(".")[2], []).append(module)
        for attr, value in vars(module).items():
            if isinstance(value, type) and attr[:1].isupper() and getattr(value, "__module__", "").startswith("generator"):
                classes.setdefault(attr, []).append(value)
    missing, checked = [], 0
    for span in spans():
        for word in re.findall(r"[\w./-]+", span):
            if word.startswith(ROOTS) and "<" not in word:
                checked += 1
                if not (REPO / word.rstrip("/.")).exists():
                    missing.append(f"path {word}")
        for dotted in DOTTED.findall(span):
            if dotted.endswith((".py", ".html", ".json", ".yaml", ".md", ".jpg", ".png", ".tsv")) or "/" in dotted:
                continue
            verdict = resolve(dotted, found, short, classes)
            if verdict is False and (as_key := catalog_key(dotted)) is not None:
                verdict = as_key
            checked += verdict is not None
            if verdict is False:
                missing.append(dotted)
    assert checked > 50, f"only {checked} names checked: is the pattern still finding them?"
    assert not missing, f"ARCHITECTURE.md names what does not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("dotted, expected", [("generator.nets.pathway.Pathway", True), ("Problem.closed_weights", False),
                                              ("store.write_json", True), ("meta.topic", None),
                                              ("Pathway.pool5_shape", True), ("Pathway.pool6_shape", False)])
def test_the_check_tells_names_that_exist_from_ones_that_do_not(dotted, expected):
    found = modules()
    short = {name.rpartition(".")[2]: [module] for name, module in found.items()}
    from generator.engine.solve import Problem
    from generator.nets.pathway import Pathway

    assert resolve(dotted, found, short, {"Problem": [Problem], "Pathway": [Pathway]}) is expected


@pytest.mark.parametrize("dotted, expected", [("methods.topics.k", True), ("methods.topics.q", False), ("units.batch", True),
                                              ("images.truth", True), ("images.colour", False), ("meta.topic", None)])
def test_catalog_keys_are_checked_against_their_sections(dotted, expected):
    assert catalog_key(dotted) is expected
