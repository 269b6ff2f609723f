"""The torchvision families the atlas supports by name (and timm's, as `timm:<name>`), and which
layer plays which part in each (data only, no torch: the catalog checks names and the site's
methods page prints the table without loading a model; `Pathway.roles` says the same for one
loaded model)."""
from __future__ import annotations

from typing import Any, Mapping

MODEL_FAMILIES: dict[str, tuple[str, ...]] = {
    "alexnet": ("alexnet",),
    "vgg": ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"),
    "resnet": ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
               "wide_resnet50_2", "wide_resnet101_2", "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"),
    "mobilenet": ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"),
    "efficientnet": tuple(f"efficientnet_b{i}" for i in range(8)),
    "convnext": ("convnext_tiny", "convnext_small", "convnext_base", "convnext_large"),
    "regnet": tuple(f"regnet_{kind}_{size}" for kind, sizes in (
        ("x", ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf")),
        ("y", ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf", "128gf"))) for size in sizes),
    # vision transformers (generator/nets/transformers.py)
    "vit": ("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14"),
    "swin": ("swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b"),
    "maxvit": ("maxvit_t",),
}
TIMM_PREFIX = "timm:"  # `timm:<name>`: any timm model (generator/nets/timm_models.py)
TORCHVISION_MODELS = tuple(name for names in MODEL_FAMILIES.values() for name in names)

# The weights names torchvision ships for each supported model (`get_model_weights(name)`), as
# data so that the catalog checks `model.weights` without importing torch. A name missing here is
# asked of torchvision itself (a newer torchvision may ship more); tests/test_models.py checks that
# torchvision knows every name here.
_WEIGHTS_V2 = {"resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2", "resnext50_32x4d",
               "resnext101_32x8d", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b1",
               *(name for name in MODEL_FAMILIES["regnet"] if name != "regnet_y_128gf")}
_WEIGHTS_SWAG = ("IMAGENET1K_SWAG_E2E_V1", "IMAGENET1K_SWAG_LINEAR_V1")
TORCHVISION_WEIGHTS: dict[str, tuple[str, ...]] = {
    **{name: ("IMAGENET1K_V1", *(("IMAGENET1K_V2",) if name in _WEIGHTS_V2 else ()), "DEFAULT") for name in TORCHVISION_MODELS},
    "vgg16": ("IMAGENET1K_V1", "IMAGENET1K_FEATURES", "DEFAULT"),
    "regnet_y_16gf": ("IMAGENET1K_V1", "IMAGENET1K_V2", *_WEIGHTS_SWAG, "DEFAULT"),
    "regnet_y_32gf": ("IMAGENET1K_V1", "IMAGENET1K_V2", *_WEIGHTS_SWAG, "DEFAULT"),
    "regnet_y_128gf": (*_WEIGHTS_SWAG, "DEFAULT"),
    "vit_b_16": ("IMAGENET1K_V1", *_WEIGHTS_SWAG, "DEFAULT"),
    "vit_l_16": ("IMAGENET1K_V1", *_WEIGHTS_SWAG, "DEFAULT"),
    "vit_h_14": (*_WEIGHTS_SWAG, "DEFAULT"),
}

# Which layer plays which part, per family (the methods page's table). "none": the family lacks
# the level, so its masks and hierarchy levels are left out.
FAMILY_ROLES: dict[str, dict[str, str]] = {
    "alexnet": {"pool5": "pool5 (256x6x6)", "fc6": "fc6 (4096, ReLU)", "fc7": "fc7 (4096, ReLU)", "fc8": "fc8"},
    "vgg": {"pool5": "pool5 (512x7x7)", "fc6": "fc6 (4096, ReLU)", "fc7": "fc7 (4096, ReLU)", "fc8": "fc8"},
    "resnet": {"pool5": "layer4's output (2048x7x7; 512 for resnet18/34)", "fc6": "none",
               "fc7": "global average pool of layer4 (no dropout in training)", "fc8": "fc"},
    "mobilenet": {"pool5": "features' last map (v2: 1280x7x7, ReLU6; v3: 576/960x7x7, Hardswish)",
                  "fc6": "v2: none; v3: the global average pool (576/960)",
                  "fc7": "v2: the global average pool (1280, dropout in training); "
                         "v3: the classifier's hidden Linear + Hardswish (1024/1280, dropout in training)",
                  "fc8": "the classifier's last Linear"},
    "efficientnet": {"pool5": "features' last map (1280x7x7 for b0, SiLU)", "fc6": "none",
                     "fc7": "global average pool (dropout in training)", "fc8": "classifier.1"},
    "convnext": {"pool5": "features' last map (768x7x7 for tiny; a residual stream, signed)", "fc6": "none",
                 "fc7": "global average pool + LayerNorm2d (signed, no dropout)", "fc8": "classifier.2"},
    "regnet": {"pool5": "trunk_output (ReLU)", "fc6": "none", "fc7": "global average pool (no dropout)", "fc8": "fc"},
    # A class token is computed in parallel with the patch tokens: gating the tokens that leave the
    # last block could not change it, so pool5 is the tokens that enter it (the class token entering
    # it is the head's context, Activations.context).
    "vit": {"pool5": "the patch tokens entering the last encoder block, as their grid (768x14x14 for vit_b_16; signed)",
            "fc6": "none", "fc7": "the class token after the last block and the final LayerNorm (signed, no dropout)",
            "fc8": "heads.head"},
    "swin": {"pool5": "the last stage's tokens after the final LayerNorm, as their grid (768x7x7 for swin_t; signed)",
             "fc6": "none", "fc7": "their global average (signed, no dropout)", "fc8": "head"},
    "maxvit": {"pool5": "the last block's map (512x7x7; signed)", "fc6": "the global average after the classifier's LayerNorm",
               "fc7": "the classifier's hidden Linear + Tanh (512, no dropout)", "fc8": "the classifier's last Linear"},
    "timm": {"pool5": "ViT-like: the patch tokens entering the last block; others: forward_features (the last map)",
             "fc6": "none", "fc7": "forward_head(pre_logits=True): the class token or the pooled vector", "fc8": "get_classifier()"},
}


def model_family(name: str | None) -> str | None:
    """The family of a supported torchvision name ("resnet", "mobilenet", "vit", ...), "timm" for
    `timm:<name>`, None otherwise."""
    if str(name).startswith(TIMM_PREFIX):
        return "timm"
    return next((family for family, names in MODEL_FAMILIES.items() if name in names), None)


def supported_families() -> str:
    """One line naming the supported torchvision families, for error messages."""
    return "; ".join(f"{family}: {names[0]}{' ... ' + names[-1] if len(names) > 1 else ''}"
                     for family, names in MODEL_FAMILIES.items())


CLASS_TOKEN, POOLED_TOKEN = "class token", "pooled token"  # what a transformer's fc7 is (SplitPathway.tokens)


def _no_fc6_words(vector: str, vectors: str, grid: str) -> dict[str, str]:
    """The words of a net without fc6, whose `vector` plays fc7 and `grid` pool5."""
    return {"fc7_codes": f"{vectors} (fc7)", "dropped": f"the {vector} (fc7)",
            "dropout_masks": f"random masks m7 on the {vector}", "dropout_code": "m7",
            "code_layers": f"the {vector} (fc7), then also {grid} (pool5)",
            "code_levels": "m7, m5-7", "code_path": "m7 -> m5-7", "fc7_name": f"the {vector}", "pool5_name": grid}


# The words the pages use for the levels (the registry's texts name them as {placeholders}), by
# `words_key`: the paper's (True); a net without fc6, where the pooled vector plays fc7 and there
# is no m6 (False); a transformer without fc6, whose class token or pooled token plays fc7.
LEVEL_WORDS: dict[bool | str, dict[str, str]] = {
    True: {"fc7_codes": "fc7 codes", "dropped": "fc6 and fc7", "dropout_masks": "random masks m6, m7",
           "dropout_code": "m6-7", "code_layers": "fc7, then fc6, then pool5", "code_levels": "m7, m6-7, m5-7",
           "code_path": "m7 -> m6-7 -> m5-7", "fc7_name": "fc7", "pool5_name": "pool5"},
    False: _no_fc6_words("pooled vector", "pooled vectors", "the last feature map"),
    CLASS_TOKEN: _no_fc6_words("class token", "class tokens", "the patch tokens entering the last block"),
    POOLED_TOKEN: _no_fc6_words("pooled token", "pooled tokens", "the last token grid"),
}


def has_fc6(model: Mapping[str, Any]) -> bool:
    """Whether a built atlas's net has fc6, from its manifest's model record: the levels the build
    recorded, else its torchvision name (AlexNet, VGG, MobileNet v3 and MaxViT have one; the other
    pooled families, ViT, Swin and timm's do not), else the paper's AlexNet layout."""
    levels = model.get("levels")
    if isinstance(levels, list):
        return "fc6" in levels
    name = model.get("name")
    return model_family(name) in (None, "alexnet", "vgg", "maxvit") or str(name).startswith("mobilenet_v3")


def words_key(model: Mapping[str, Any]) -> bool | str:
    """Which LEVEL_WORDS a built atlas's pages speak: the paper's for a net with fc6, else those of
    its fc7 as the build recorded it (`tokens`: a transformer's class token or pooled token) or as
    its torchvision name says, else the pooled vector's."""
    if has_fc6(model):
        return True
    tokens = model.get("tokens")
    if tokens in (CLASS_TOKEN, POOLED_TOKEN):
        return str(tokens)
    family = model_family(model.get("name"))
    return CLASS_TOKEN if family == "vit" else POOLED_TOKEN if family == "swin" else False


def pathway_words(pathway: Any) -> dict[str, str]:
    """The LEVEL_WORDS of a loaded net (a Pathway: its fc6, and what a transformer's fc7 is), for
    the texts a method writes into its results."""
    return LEVEL_WORDS[True if pathway.has_fc6 else getattr(pathway, "tokens", None) or False]


def in_words(text: str, words: bool | str) -> str:
    """A registry text with its level {placeholders} in the words of LEVEL_WORDS[words] (True:
    a net with fc6, False: a pooled net without, or a transformer's CLASS_TOKEN / POOLED_TOKEN)."""
    return text.format_map(LEVEL_WORDS[words])
