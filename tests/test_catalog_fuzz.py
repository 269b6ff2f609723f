"""Random mutations of a valid catalog, and of the files an atlas folder holds, never give a
traceback (property tests, hypothesis).

Each catalog example changes one valid catalog of the tiny world (test_build.py) — a value
replaced by one of another type or an odd one, a key dropped or added, or bytes of the YAML
text changed — and runs `atlas list` or `atlas build --dry-run` through typer's CliRunner. The
output-folder examples do the same to a fake atlas's `units/manifest.json` and `truth.json`,
and give its unit layers names from a hostile alphabet (`/`, `..`, NUL, `%2f`, very long), then
run `atlas render`. The outcome must be success (warnings allowed; or a build report of failed
classes, exit 1), or exit code 2 with exactly one `error:` line; never an uncaught exception,
and never a change outside the atlas folder.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from generator.cli import app
from generator.methods import METHODS

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture
def valid(tiny_world, wnids) -> tuple[Path, dict]:
    """The tiny world's files and a valid catalog over them (made once per test function)."""
    root = tiny_world.output.parent
    catalog = {
        "model": {"name": f"{root / 'tiny_net.py'}:build", "weights": str(root / "tiny.pt"), "num_classes": 3,
                  "labels": list(wnids), "input_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "images": {"source": "folder", "root": str(root / "images"), "per_class": 3, "split": "train"},
        "classes": [wnids[0], {"id": wnids[1], "name": "Second", "methods": {"topics": {"k": 2}}}, "cassette player"],
        "methods": {"topics": {"k": 3}, "location": {"enabled": False}, "ensemble": {"enabled": False},
                    "hierarchy": {"enabled": False}, "inversion": {"enabled": False},
                    **{spec.name: {"enabled": False} for spec in METHODS if spec.diagnostic}},
        "units": {"iterations": 2, "top_k": 3, "per_class": 2},  # the unit atlas, cheap (its fields get mutated too)
        "output": "site", "device": "cpu", "seed": 1,
    }
    for command in (["list"], ["build", "--dry-run"]):  # the unmutated catalog works: mutations start valid
        result = run(root, yaml.safe_dump(catalog), command)
        assert result.exit_code == 0, result.output
    return root, catalog


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["", "~", "/", "all", "n01440764", "a,b", "../..", ".py:build", "IMAGENET1K_V1", "cuda:0",
                     "imagenette", "x.tsv", "\x00", "é", "\ud800"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in a nested dict/list."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, prefix + (index,))
    return found


def mutate(catalog: dict, choice: int, how: str, value: Any) -> dict:
    catalog = copy.deepcopy(catalog)
    where = paths(catalog)[choice % len(paths(catalog))]
    parent = catalog
    for part in where[:-1]:
        parent = parent[part]
    last = where[-1]
    if how == "replace":
        parent[last] = value
    elif how == "delete":
        del parent[last]
    elif isinstance(parent, dict):  # add a key next to it
        parent[str(value)[:12] if not isinstance(value, (list, dict)) else "extra"] = value
    else:
        parent.append(value)
    return catalog


def run(root: Path, text: str | bytes, command: list[str]):
    path = root / "catalog.yaml"
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    path.write_bytes(text)
    return runner.invoke(app, [*command, "--catalog", str(path)], catch_exceptions=True)


def check(result) -> None:
    detail = f"exit {result.exit_code}, exception {result.exception!r}\n{result.output}"
    if result.exit_code == 0 or (result.exit_code == 1 and "failed:" in result.output):
        assert "Traceback" not in result.output, detail
        return  # success, or a build whose report names the classes that failed (README: exit 1)
    assert result.exit_code == 2, detail
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), detail
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, detail


COMMANDS = st.sampled_from([["list"], ["build", "--dry-run"]])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(choice=st.integers(min_value=0, max_value=10**6), how=st.sampled_from(["replace", "delete", "add"]),
       value=values, command=COMMANDS)
def test_mutated_catalog_values_never_give_a_traceback(valid, choice, how, value, command):
    root, catalog = valid
    check(run(root, yaml.safe_dump(mutate(catalog, choice, how, value), allow_unicode=True), command))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(min_value=0, max_value=10**6), st.binary(max_size=3)),
                      min_size=1, max_size=4), command=COMMANDS)
def test_mutated_catalog_bytes_never_give_a_traceback(valid, edits, command):
    root, catalog = valid
    text = bytearray(yaml.safe_dump(catalog).encode())
    for position, data in edits:
        at = position % (len(text) + 1)
        text[at:at + len(data) % 2] = data  # replace one byte or insert, by the edit's length
    check(run(root, bytes(text), command))


# ---------------------------------------------------------------------------------------------
# The atlas folder's own files: units/manifest.json, truth.json and the names that become paths


@pytest.fixture
def atlas(tmp_path, write_fake_atlas, write_fake_units) -> tuple[Path, dict, Path]:
    """A small fake atlas (2 classes, a unit atlas of a few units), its units manifest, and a
    user's folder beside it."""
    output = tmp_path / "atlas"
    write_fake_atlas(output, n_classes=2, size=32, thumb=16, n_images=3)
    units = write_fake_units(output, pool5=2, fc=4, per_class=1, top_k=1)
    outside = tmp_path / "outside"
    (outside / "victim").mkdir(parents=True)
    (outside / "thesis.txt").write_text("four years of work")
    return output, units, outside


def render_checked(output: Path, outside: Path, tree_state) -> None:
    """`atlas render` passes `check`, and nothing beside the atlas folder changed or appeared."""
    before, around = tree_state(outside), sorted(output.parent.iterdir())
    check(runner.invoke(app, ["render", "--output", str(output)], catch_exceptions=True))
    assert tree_state(outside) == before and sorted(output.parent.iterdir()) == around


HOSTILE_PARTS = ["/", "..", ".", "\x00", "%2f", "%2e", "\\", "~", "pool5", "a", "-", "_", "index.html", "{outside}"]
hostile_names = st.one_of(st.lists(st.sampled_from(HOSTILE_PARTS), max_size=8).map("".join),  # at most 4 levels up
                          st.integers(min_value=100, max_value=5000).map(lambda n: "a" * n), st.text(max_size=20))


def placed(name: str, outside: Path) -> str:
    """`name` with {outside} filled in; any other absolute path is moved under `outside`, so a
    regression writes into the test's folder, not the machine's."""
    name = name.replace("{outside}", str(outside))
    return str(outside) + name if name.startswith("/") and not name.startswith(str(outside)) else name


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])


@FUZZ
@given(name=hostile_names)
def test_hostile_unit_layer_names_never_write_outside_the_atlas(atlas, tree_state, name):
    output, units, outside = atlas
    manifest = copy.deepcopy(units)
    manifest["layers"] = {placed(name, outside): manifest["layers"]["pool5"], "fc7": manifest["layers"]["fc7"]}
    (output / "units" / "manifest.json").write_text(json.dumps(manifest))
    render_checked(output, outside, tree_state)


@FUZZ
@given(choice=st.integers(min_value=0, max_value=10**6), how=st.sampled_from(["replace", "delete", "add"]),
       value=st.one_of(values, hostile_names))
def test_mutated_units_manifests_never_give_a_traceback(atlas, tree_state, choice, how, value):
    output, units, outside = atlas
    value = placed(value, outside) if isinstance(value, str) else value
    (output / "units" / "manifest.json").write_text(json.dumps(mutate(units, choice, how, value)))
    render_checked(output, outside, tree_state)


TRUTH = {"styles": {"n00000000_0.JPEG": 0, "n00000000_1.JPEG": 1}, "layouts": {"n00000000": [[0, 1], [1, 1]]}}


@FUZZ
@given(choice=st.integers(min_value=0, max_value=10**6), how=st.sampled_from(["replace", "delete", "add"]),
       value=values)
def test_mutated_truth_files_never_give_a_traceback(atlas, tree_state, choice, how, value):
    output, _, outside = atlas
    (output / "truth.json").write_text(json.dumps(mutate(TRUTH, choice, how, value)))
    render_checked(output, outside, tree_state)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(min_value=0, max_value=10**6), st.binary(max_size=3)), min_size=1, max_size=4))
def test_truth_file_bytes_never_give_a_traceback(atlas, tree_state, edits):
    output, _, outside = atlas
    text = bytearray(json.dumps(TRUTH).encode())
    for position, data in edits:
        at = position % (len(text) + 1)
        text[at:at + len(data) % 2] = data
    (output / "truth.json").write_bytes(bytes(text))
    render_checked(output, outside, tree_state)
