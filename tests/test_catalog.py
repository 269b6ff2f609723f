"""catalog.yaml validation: every malformed catalog is one CatalogError naming file and field."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from generator import catalog
from generator.catalog import CatalogError, load_catalog, read_labels, slugify
from generator.methods import METHOD_NAMES, PriorParams, method_defaults

REPO = Path(__file__).resolve().parents[1]

@pytest.fixture
def base(tmp_path) -> dict:
    """A valid catalog (random-init AlexNet, a folder of images) as a dict."""
    (tmp_path / "imgs" / "n03028079").mkdir(parents=True)
    return {
        "model": {"name": "alexnet"},
        "images": {"source": "folder", "root": "imgs", "per_class": 3},
        "classes": ["n03028079", "golf ball"],
        "methods": {"topics": {"k": 4}},
        "engine": {"iterations": 10},
        "output": "out",
        "device": "cpu",
        "seed": 1,
    }


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_valid_catalog_resolves_everything(tmp_path, base):
    cat = load_catalog(write(tmp_path, base))
    assert [c.id for c in cat.classes] == ["n03028079", "n03445777"]
    assert [c.index for c in cat.classes] == [497, 574]
    assert [c.name for c in cat.classes] == ["church", "golf ball"]
    assert cat.images.root == tmp_path / "imgs"  # relative to the catalog's folder
    assert cat.output == tmp_path / "out"
    assert cat.methods["topics"] == {**method_defaults("topics"), "k": 4, "enabled": True}
    assert cat.methods["ensemble"]["enabled"] is True  # unlisted methods run with their defaults
    assert cat.engine == {"iterations": 10}
    assert (cat.device, cat.seed, cat.model.weights, cat.model.input_size) == ("cpu", 1, None, 224)


def bad(**changes):
    """A mutation of the base catalog: dotted keys set values; a value of ... deletes the key."""

    def apply(data: dict) -> dict:
        data = copy.deepcopy(data)
        for dotted, value in changes.items():
            node = data
            *parents, last = dotted.split("__")
            for key in parents:
                node = node.setdefault(key, {})
            if value is ...:
                node.pop(last, None)
            else:
                node[last] = value
        return data

    return apply


MALFORMED = [
    (bad(modle={"name": "alexnet"}), "modle: unknown key 'modle' (did you mean 'model'?)"),
    (bad(classes=["chruch"]), "classes[0]: unknown ImageNet class 'chruch' (did you mean 'church'?)"),
    (bad(classes=[]), "classes: empty"),
    (bad(classes=7), "classes: expected a list"),
    (bad(classes=["church", "n03028079"]), "classes[1]: duplicate class n03028079"),
    (bad(classes=["crane"]), "classes[0]: ambiguous class name 'crane'"),
    (bad(classes=[{"id": "church", "style": 1}]), "classes[0].style: unknown key"),
    (bad(classes=[{"id": "church", "methods": {"topics": {"k": 1.5}}}]), "classes[0].methods.topics.k: expected an integer"),
    (bad(methods__topics={"kk": 3}), "methods.topics.kk: unknown key 'kk' (did you mean 'k'?)"),
    (bad(methods__topics={"k": "five"}), "methods.topics.k: expected an integer"),
    (bad(methods__location={"enabled": "yes"}), "methods.location.enabled: expected true or false"),
    (bad(methods__nmf={}), "methods.nmf: unknown key"),
    (bad(methods__topics={"k": -1}), "methods.topics.k: must be at least 1, got -1"),
    (bad(methods__topics={"k": "lots"}), "methods.topics.k: expected an integer, got str 'lots'"),
    (bad(methods__classviz={"iterations": 0}), "methods.classviz.iterations: must be at least 1, got 0"),
    (bad(methods__ensemble={"keep": 0}), "methods.ensemble.keep: must be above 0, got 0"),
    (bad(methods__topics={"threshold": float("nan")}), "methods.topics.threshold: must be a finite number"),
    (bad(methods__hierarchy={"init": "zeros"}), "methods.hierarchy.init: expected one of class_layout, noise"),
    (bad(methods__classviz={"max_patches": 50000}),
     "methods.classviz.max_patches: the patch database is the catalog's own `prior:` section"),
    (bad(prior={"max_patches": 0}), "prior.max_patches: must be at least 1, got 0"),
    (bad(prior={"patch": "big"}), "prior.patch: expected an integer"),
    (bad(prior={"size": 3}), "prior.size: unknown key 'size'"),
    (bad(engine__iteration=5), "engine.iteration: unknown key 'iteration' (did you mean 'iterations'?)"),
    (bad(engine__lr="fast"), "engine.lr: expected a number"),
    (bad(device="gpu"), "device: unknown device 'gpu'"),
    (bad(seed="zero"), "seed: expected an integer"),
    (bad(images__per_class=0), "images.per_class: must be at least 1"),
    (bad(images__source="flickr"), "images.source: unknown source 'flickr'"),
    (bad(images__root="nowhere"), "images.root: folder"),
    (bad(model__name="googlenet"), "model.name: torchvision's googlenet cannot be split into the atlas's pathway"),
    (bad(model__name="alexnt"), "model.name: unknown model 'alexnt' (did you mean 'alexnet'?)"),
    (bad(model__weights="IMAGENET1K_V9"), "model.weights: unknown weights 'IMAGENET1K_V9' for alexnet"),
    (bad(model__weights="missing.pt"), "model.weights: weights file"),
    (bad(model__mean=[0.5, 0.5]), "model.mean: expected three numbers"),
    (bad(model=...), "model: missing (required)"),
    (bad(images=...), "images: missing (required)"),
    (bad(model__labels=["a b", "a-b"], classes=["a b", "a-b"]), "classes[1]: class id 'a-b' gives the folder name 'a-b'"),
]


@pytest.mark.parametrize("mutate, expected", MALFORMED, ids=[m[1].split(":")[0] for m in MALFORMED])
def test_malformed_catalog_names_file_and_field(tmp_path, base, mutate, expected):
    with pytest.raises(CatalogError) as info:
        load_catalog(write(tmp_path, mutate(base)))
    message = str(info.value)
    assert message.startswith("catalog.yaml: "), message
    assert expected in message, message
    assert "\n" not in message


def test_yaml_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(CatalogError, match=r"catalog.yaml: not valid YAML"):
        load_catalog(write(tmp_path, "model: [alexnet\nclasses: x"))
    with pytest.raises(CatalogError, match="not found"):
        load_catalog(tmp_path / "nope.yaml")


def test_class_names_are_case_and_underscore_insensitive(tmp_path, base):
    base["classes"] = ["Golf_Ball", "FRENCH horn", "n01440764"]
    cat = load_catalog(write(tmp_path, base))
    assert [(c.id, c.index) for c in cat.classes] == [("n03445777", 574), ("n03394916", 566), ("n01440764", 0)]


def test_per_class_overrides_merge_over_the_catalog(tmp_path, base):
    base["classes"] = [{"id": "church", "name": "Church (outside)", "methods": {"topics": {"k": 3}, "ensemble": {"enabled": False}}},
                       "golf ball"]
    cat = load_catalog(write(tmp_path, base))
    church, golf = cat.classes
    assert church.name == "Church (outside)"
    assert church.methods["topics"]["k"] == 3 and church.methods["topics"]["threshold"] == 1.0
    assert golf.methods["topics"]["k"] == 4 and cat.methods["topics"]["k"] == 4
    assert "ensemble" not in cat.enabled_methods(church)
    assert "ensemble" in cat.enabled_methods(golf)


def test_overrides_replace_fields_and_are_named_in_errors(tmp_path, base, monkeypatch):
    path = write(tmp_path, base)
    other = tmp_path / "elsewhere"
    (other / "n01440764").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    cat = load_catalog(path, {"classes": ["tench"], "images_root": "elsewhere", "images_source": "folder",
                              "per_class": 7, "device": "auto", "seed": 5, "output": "site2", "model": "vgg11"})
    assert [c.id for c in cat.classes] == ["n01440764"]
    assert cat.images.root == other and cat.images.per_class == 7
    assert (cat.device, cat.seed, cat.output, cat.model.name) == ("auto", 5, tmp_path / "site2", "vgg11")
    with pytest.raises(CatalogError, match=r"device: unknown device 'tpu'.*\(set by --device\)"):
        load_catalog(path, {"device": "tpu"})


def test_labels_model_uses_its_labels(tmp_path, base):
    labels = tmp_path / "labels.tsv"
    labels.write_text("index\twnid\tname\n0\tn03445777\tgolf ball\n1\tn03028079\tchurch\n")
    base["model"] = {"name": "alexnet", "num_classes": 2, "labels": "labels.tsv"}
    base["classes"] = "all"
    cat = load_catalog(write(tmp_path, base))
    assert [(c.id, c.name, c.index) for c in cat.classes] == [("n03445777", "golf ball", 0), ("n03028079", "church", 1)]
    base["classes"] = ["tench"]
    with pytest.raises(CatalogError, match=r"classes\[0\]: unknown class of this model 'tench'"):
        load_catalog(write(tmp_path, base))


def test_read_labels_forms(tmp_path):
    assert read_labels("imagenette", tmp_path)[:2] == ["n01440764", "n02102040"]
    assert read_labels("cat, dog", tmp_path) == ["cat", "dog"]
    (tmp_path / "l.txt").write_text("cat\ndog\n\n")
    assert read_labels("l.txt", tmp_path) == ["cat", "dog"]


@pytest.mark.parametrize("text, slug", [("n01440764", "n01440764"), ("Golf Ball/2", "golf-ball-2"), ("../x", "x"), ("a_b", "a_b")])
def test_slugs_are_path_safe(text, slug):
    assert slugify(text) == slug


def test_default_catalog_loads_with_the_real_method_modules():
    cat = load_catalog(REPO / "catalog.yaml")
    assert cat.model.name == "alexnet" and cat.model.weights == "IMAGENET1K_V1"
    assert cat.images.source == "imagenette" and cat.images.per_class == 50
    assert [c.index for c in cat.classes] == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
    assert set(cat.methods) == set(METHOD_NAMES)
    assert all(params["enabled"] for params in cat.methods.values())


def test_weights_the_table_lacks_are_asked_of_torchvision(tmp_path, base, monkeypatch):
    """A newer torchvision may ship weights the catalog's table does not list: they still load."""
    monkeypatch.setitem(catalog.TORCHVISION_WEIGHTS, "alexnet", ())
    base["model"]["weights"] = "IMAGENET1K_V1"
    assert load_catalog(write(tmp_path, base)).model.weights == "IMAGENET1K_V1"


def test_prior_section_is_typed_and_defaults_to_the_registry(tmp_path, base):
    assert load_catalog(write(tmp_path, base)).prior == PriorParams()
    base["prior"] = {"max_patches": 50000, "search_dims": None}
    assert load_catalog(write(tmp_path, base)).prior == PriorParams(max_patches=50000, search_dims=None)



def test_list_reads_a_catalog_of_ten_thousand_classes(tmp_path):
    """10,000 classes, a tenth of them with method overrides: a normal test's time, since a class
    without overrides reuses the catalog's checked methods and a class is found by a dict lookup;
    benchmarks/catalog_scale.py times it in a fresh process (target: < 5 s)."""
    n_classes = 10_000
    from typer.testing import CliRunner

    from benchmarks.catalog_scale import write_world
    from generator.cli import app

    result = CliRunner().invoke(app, ["list", "--catalog", str(write_world(tmp_path, n_classes))])
    assert result.exit_code == 0, (result.output, result.exception)
    rows = result.output.splitlines()
    assert len(rows) == n_classes + 2 and rows[-1].startswith(f"{n_classes} classes")
    assert rows[1].split() == ["c000000", "c000000", "0", "1"]
    catalog = load_catalog(tmp_path / "catalog.yaml")
    assert catalog.classes[10].methods["topics"]["k"] == 4 and catalog.classes[11].methods["topics"]["k"] != 4
