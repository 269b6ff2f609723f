"""Model loading: torchvision names, factories, state_dicts, and the errors users meet."""
from __future__ import annotations

import socket

import pytest
import torch
import torchvision
from torch import nn

from generator.catalog import IMAGENETTE_WNIDS, ImageSpec, ModelSpec
from generator.images import class_images
from generator.nets.models import ModelError, class_table, ensure_weights, load_pathway, model_digest, resolve_device
from generator.nets.pathway import Pathway

# A tiny AlexNet look-alike as a user's model file (features / avgpool / classifier).
TINY_NET = '''
import torch
from torch import nn

class TinyNet(nn.Module):
    def __init__(self, num_classes, width):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 5, stride=4), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Linear(width * 4, 16), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

def build(num_classes=5, width=8):
    return TinyNet(num_classes, width)
'''


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny_net.py"
    path.write_text(TINY_NET)
    return path


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network (name lookups fail at once) and an empty torch hub cache."""

    def no_network(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))


def test_class_table_default_and_labels():
    table = class_table(ModelSpec("alexnet"))
    assert len(table) == 1000 and table[0] == ("n01440764", "tench") and table[574] == ("n03445777", "golf ball")
    assert class_table(ModelSpec("x.py:build", labels=["n03028079", "cat"])) == [("n03028079", "church"), ("cat", "cat")]
    assert class_table(ModelSpec("x.py:build", num_classes=3))[2] == ("2", "class 2")


def test_factory_with_state_dict_round_trip(tmp_path, tiny_file):
    torch.manual_seed(0)
    original = _import_tiny(tiny_file)(num_classes=3)
    weights = tmp_path / "tiny.pt"
    torch.save(original.state_dict(), weights)
    spec = ModelSpec(f"{tiny_file}:build", weights=str(weights), num_classes=3, input_size=64)
    pathway = load_pathway(spec, "cpu")
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(pathway(x).fc8, original.eval()((x - pathway.mean) / pathway.std), atol=1e-6)
    assert pathway.num_classes == 3 and pathway.pool5_shape == (8, 2, 2)
    assert model_digest(spec) != model_digest(ModelSpec(f"{tiny_file}:build", num_classes=3, input_size=64))


def _import_tiny(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_for_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build


def test_state_dict_of_another_architecture_is_named(tmp_path, tiny_file):
    build = _import_tiny(tiny_file)
    wider = tmp_path / "wider.pt"
    torch.save(build(num_classes=5, width=16).state_dict(), wider)
    with pytest.raises(ModelError, match=r"another architecture.*shape mismatches.*features\.0\.weight \(16, 3, 5, 5\) vs \(8, 3, 5, 5\)"):
        load_pathway(ModelSpec(f"{tiny_file}:build", weights=str(wider), input_size=64))
    unrelated = tmp_path / "unrelated.pt"
    torch.save(nn.Sequential(nn.Linear(2, 2)).state_dict(), unrelated)
    with pytest.raises(ModelError, match=r"missing keys: features\.0\.weight.*unexpected keys: 0\.weight, 0\.bias"):
        load_pathway(ModelSpec(f"{tiny_file}:build", weights=str(unrelated), input_size=64))


def test_pickled_whole_model_is_refused_by_weights_only(tmp_path, tiny_file):
    pickled = tmp_path / "whole.pt"
    torch.save(nn.Sequential(nn.Linear(2, 2)), pickled)  # a whole module, not a state_dict
    with pytest.raises(ModelError, match=r"not a plain state_dict: torch.load\(weights_only=True\) refused"):
        load_pathway(ModelSpec(f"{tiny_file}:build", weights=str(pickled), input_size=64))


def test_unsupported_architectures_are_refused_with_what_the_pathway_needs():
    with pytest.raises(ModelError, match=r"squeezenet1_1 cannot be used: the atlas needs either AlexNet/VGG.*"
                                         r"or a globally pooled CNN.*Supported by name: alexnet: alexnet"):
        load_pathway(ModelSpec("squeezenet1_1"))
    with pytest.raises(ModelError, match=r"SqueezeNet's classifier has 0 Linear layers; the atlas needs"):
        load_pathway(ModelSpec("torchvision.models:squeezenet1_1", input_size=64))
    with pytest.raises(ModelError, match=r"unknown model 'resnet19'; use a name of the families .*resnet: resnet18"):
        load_pathway(ModelSpec("resnet19"))


@pytest.mark.parametrize("name", ["resnet18", "torchvision.models:resnet18"])
def test_resnet18_loads_by_name_and_as_a_factory(name):
    pathway = load_pathway(ModelSpec(name, num_classes=7, input_size=64), "cpu")
    assert (pathway.family, pathway.num_classes, pathway.pool5_shape) == ("pooled", 7, (512, 2, 2))
    assert not pathway.has_fc6 and pathway.fc6_dim is None and pathway.fc7_dim == 512
    assert not any(p.requires_grad for p in pathway.parameters())


def test_pooled_family_names_are_supported_and_listed():
    from generator.nets.models import MODEL_FAMILIES, TORCHVISION_MODELS, model_family, torchvision_model_names

    wanted = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "mobilenet_v2",
              "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_b7", "convnext_tiny",
              "convnext_large", "regnet_x_400mf", "regnet_y_128gf"]
    assert all(name in TORCHVISION_MODELS for name in wanted)
    assert set(TORCHVISION_MODELS) <= set(torchvision_model_names())  # every listed name exists in torchvision
    assert model_family("mobilenet_v3_large") == "mobilenet" and model_family("googlenet") is None
    assert model_family("vit_b_16") == "vit" and model_family("swin_v2_t") == "swin" and model_family("timm:resnet50") == "timm"
    assert MODEL_FAMILIES["alexnet"] == ("alexnet",)
    from generator.nets.families import FAMILY_ROLES

    assert set(FAMILY_ROLES) == {*MODEL_FAMILIES, "timm"}  # the methods page's table covers every family
    assert all(set(roles) == {"pool5", "fc6", "fc7", "fc8"} for roles in FAMILY_ROLES.values())
    assert FAMILY_ROLES["resnet"]["fc6"] == "none" and FAMILY_ROLES["alexnet"]["fc6"].startswith("fc6")


def test_the_weights_table_names_only_weights_torchvision_ships():
    """The catalog accepts a weights name from this table without asking torchvision, so every
    name in it must load."""
    from generator.nets.families import TORCHVISION_WEIGHTS
    from generator.nets.models import TORCHVISION_MODELS, torchvision_weight_names

    assert set(TORCHVISION_WEIGHTS) == set(TORCHVISION_MODELS)
    for name, weights in TORCHVISION_WEIGHTS.items():
        assert set(weights) <= set(torchvision_weight_names(name)), name


def test_offline_pooled_weights_download_is_one_clear_error(offline):
    with pytest.raises(ModelError) as info:
        load_pathway(ModelSpec("resnet18", weights="DEFAULT"))
    message = str(info.value)
    assert "\n" not in message and "needs network access" in message
    assert "--weights /path/to/resnet18-f37072fd.pth" in message


def test_factory_errors_are_model_errors(tmp_path, tiny_file):
    with pytest.raises(ModelError, match=r"has no function 'make'"):
        load_pathway(ModelSpec(f"{tiny_file}:make"))
    with pytest.raises(ModelError, match=r"cannot import no_such_package_xyz"):
        load_pathway(ModelSpec("no_such_package_xyz.nets:build"))
    with pytest.raises(ModelError, match=r"has 5 outputs but 2 labels"):
        load_pathway(ModelSpec(f"{tiny_file}:build", labels=["a", "b"], input_size=64))


def test_offline_weights_download_is_one_clear_error(offline):
    for attempt in (lambda: ensure_weights(ModelSpec("alexnet", weights="IMAGENET1K_V1")),
                    lambda: load_pathway(ModelSpec("alexnet", weights="IMAGENET1K_V1"))):
        with pytest.raises(ModelError) as info:
            attempt()
        message = str(info.value)
        assert "needs network access" in message and "--weights /path/to/alexnet-owt-7be5be79.pth" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when there is no GPU")
def test_cuda_without_gpu_is_a_clear_error():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ModelError, match="no CUDA GPU"):
        resolve_device("cuda")


@pytest.mark.parametrize("name, size", [("alexnet", 224), ("vgg16", 64)])
def test_pathway_without_masks_equals_the_plain_model(name, size):
    torch.manual_seed(0)
    plain = torchvision.models.get_model(name, weights=None).eval()
    pathway = Pathway(plain, input_size=size)  # shares the model's layers
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = plain(pathway.normalize(x))
        got = pathway(x).fc8
    assert (got - expected).abs().max().item() < 1e-5
    assert pathway.pool5_shape[0] == (256 if name == "alexnet" else 512)


def test_load_pathway_for_a_torchvision_name():
    pathway = load_pathway(ModelSpec("alexnet", num_classes=7), "cpu")
    assert (pathway.num_classes, pathway.pool5_shape, pathway.fc6_dim) == (7, (256, 6, 6), 4096)
    assert not any(p.requires_grad for p in pathway.parameters())


def test_alexnet_slim_pathway_matches_and_classifies(shared):
    spec = ModelSpec(f"{shared}/models/alexnet_slim.py:build", weights=f"{shared}/models/alexnet-slim-imagenette.pt",
                     num_classes=10, labels=list(IMAGENETTE_WNIDS))
    pathway = load_pathway(spec)
    plain = _import_tiny(shared / "models" / "alexnet_slim.py")(num_classes=10).eval()
    plain.load_state_dict(torch.load(shared / "models" / "alexnet-slim-imagenette.pt", weights_only=True))
    images = ImageSpec("folder", shared / "data" / "imagenette" / "val", per_class=2)
    batch, labels = [], []
    for index, wnid in enumerate(IMAGENETTE_WNIDS):
        batch.append(class_images(images, wnid, 2, seed=0, size=224).images)
        labels += [index, index]
    x = torch.cat(batch)
    with torch.no_grad():
        fc8 = pathway(x).fc8
        assert (fc8 - plain(pathway.normalize(x))).abs().max().item() < 1e-5
    accuracy = (fc8.argmax(1) == torch.tensor(labels)).float().mean().item()
    assert accuracy >= 0.5, accuracy  # the model card says 78% on these images
    assert pathway.pool5_shape == (128, 6, 6)
