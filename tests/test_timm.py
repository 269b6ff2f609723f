"""Any timm model as `timm:<name>` (random-init vit_tiny_patch16_224 and resnet18 at 64 px): the
cut found from the model's structure, its own mean / std / input size from its pretrained config,
local weights files, and one `error:` line when timm is missing or the hub cannot be reached."""
from __future__ import annotations

import sys

import pytest
import torch

import helpers
from generator.catalog import ModelSpec, load_catalog
from generator.errors import CatalogError, ModelError
from generator.methods import classviz, ensemble, hierarchy, location, topics
from generator.nets.families import CLASS_TOKEN
from generator.nets.models import load_pathway
from generator.nets.split import SplitPathway

timm = pytest.importorskip("timm")

SIZE = 64
REST = "images: {root: images}\nclasses: [n01440764]\n"  # a catalog's lines after its model


def pathway(name: str, **spec) -> SplitPathway:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        loaded = load_pathway(ModelSpec(f"timm:{name}", num_classes=3, input_size=SIZE, **spec))
    assert isinstance(loaded, SplitPathway)
    return loaded


@pytest.fixture(scope="module")
def vit() -> SplitPathway:
    return pathway("vit_tiny_patch16_224")


@pytest.fixture(scope="module")
def resnet() -> SplitPathway:
    return pathway("resnet18")


def test_a_timm_vit_is_cut_before_its_last_block(vit):
    assert vit.family == "tokens" and vit.tokens == CLASS_TOKEN and vit.pool5_shape == (192, 4, 4)
    assert vit.levels == ("pool5", "fc7", "fc8")
    images = torch.rand(2, 3, SIZE, SIZE)
    seen: list[torch.Tensor] = []
    block = vit.features.model.blocks[-1]
    handle = block.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach()))
    mask = location.window_mask(vit.pool5_shape, 2, 0, 2)
    with torch.no_grad():
        shut = vit(images, {"pool5": torch.zeros(vit.pool5_shape)}).fc7
        opened = vit(images, {"pool5": mask}).fc7
    handle.remove()
    live = seen[1][:, 1:].abs().sum(-1) > 0  # the patch tokens after the class token
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[2:4, 0:2] = True
    assert torch.equal(live, expected.flatten().expand(2, -1)) and (opened - shut).abs().max() > 1e-3


def test_a_timm_cnn_is_cut_at_forward_features(resnet):
    assert resnet.family == "pooled" and resnet.tokens is None and resnet.pool5_shape == (512, 2, 2)
    net = resnet.features.model
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        acts = resnet(images)
        assert torch.allclose(acts.fc8, net(resnet.normalize(images)), atol=1e-5)
        assert torch.allclose(acts.fc7, acts.pool5.mean((2, 3)), atol=1e-5)  # forward_head(pre_logits): the average


def test_the_methods_run_on_timm_models(vit, resnet):
    for net, grid in ((vit, [3, 3]), (resnet, [2, 2])):  # 2x2 windows on a 4x4 grid, 1x1 on 2x2
        ctx = helpers.tiny_context(n=6, size=SIZE, engine={"iterations": 2, "lr": 0.05}, pathway=net)
        assert len(classviz.run(ctx, {}).pictures) == 2
        assert location.run(ctx, {"prior": False}).numbers["grid"] == grid
        assert len(topics.run(ctx, {"k": 2, "images": 6, "retrieved": 2, "prior": False}).pictures) >= 2
        assert ensemble.run(ctx, {"masks": 2, "inits": 1, "prior": False}).numbers["masked"] == ["m7"]
        assert hierarchy.run(ctx, {"images": 1, "prior": False}).numbers["levels"] == ["m7", "m5-7"]


def test_the_catalog_reads_the_models_own_size_and_statistics(tmp_path):
    (tmp_path / "images").mkdir()
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("model: timm:vit_small_patch16_224\n" + REST)
    model = load_catalog(catalog).model
    assert (model.input_size, model.mean, model.std) == (224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    catalog.write_text("model: {name: timm:resnet18, input_size: 96, mean: [0.4, 0.4, 0.4]}\n" + REST)
    model = load_catalog(catalog).model
    assert (model.input_size, model.mean, model.std) == (96, (0.4, 0.4, 0.4), (0.229, 0.224, 0.225))
    for text, message in (("timm:resnet_18", "model.name: timm has no model 'resnet_18'"),
                          ("{name: timm:resnet18, weights: IMAGENET1K_V1}", "model.weights: unknown weights 'IMAGENET1K_V1'")):
        catalog.write_text(f"model: {text}\n" + REST)
        with pytest.raises(CatalogError, match=message):
            load_catalog(catalog)


def test_without_timm_a_timm_name_says_what_to_install(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from generator.cli import app

    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    (tmp_path / "images").mkdir()
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("model: timm:resnet50\n" + REST)
    result = CliRunner().invoke(app, ["list", "--catalog", str(catalog)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1
    assert lines[0].startswith("error: ") and "pip install -e '.[timm]'" in lines[0]
    with pytest.raises(ModelError, match=r"timm models need timm, which is not installed: pip install -e '.\[timm\]'"):
        load_pathway(ModelSpec("timm:resnet18"))


def test_local_weights_files_load_and_a_failed_hub_download_says_how_to_work_offline(tmp_path, monkeypatch, resnet):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    state = timm.create_model("resnet18", num_classes=3).state_dict()  # a weights file as a user has one
    save_file(state, str(tmp_path / "model.safetensors"))
    torch.save(state, tmp_path / "resnet18.pt")
    expected = pathway("resnet18", weights=str(tmp_path / "resnet18.pt"))
    images = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        loaded = pathway("resnet18", weights=str(tmp_path / "model.safetensors"))
        assert torch.equal(loaded(images).fc8, expected(images).fc8)
        assert not torch.allclose(loaded(images).fc8, resnet(images).fc8)  # the file's weights, not the seed's

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to the hub and outgoing traffic has been disabled")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ModelError, match=r"downloading timm's pretrained weights of resnet18 from timm/resnet18.a1_in1k "
                                         r"failed .*Offline, .*--weights /path/to/model.safetensors"):
        load_pathway(ModelSpec("timm:resnet18", weights="DEFAULT"))
