"""Any timm model by name: `model.name: timm:<name>` (e.g. timm:resnet50, timm:vit_small_patch16_224,
timm:convnext_tiny, with or without a pretrained tag such as .augreg_in21k).

`model.weights`: nothing (random init), DEFAULT (timm's pretrained weights, downloaded from its
hub: the online default) or a local file (a state_dict or a .safetensors file, e.g. the hub's
model.safetensors: the offline way). The model's own mean, std and input size come from its
pretrained config (`pretrained_stats`, read by the catalog where the catalog does not set them).
Where the model is cut at pool5 is found from its structure (`split`; the roles are in
generator/nets/transformers.py). timm is an optional extra: `pip install -e '.[timm]'`.
"""
from __future__ import annotations

import contextlib
import difflib
import socket
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from generator.errors import ModelError, PathwayError
from generator.modelspec import ModelSpec, is_weights_path
from generator.nets.families import CLASS_TOKEN, POOLED_TOKEN
from generator.nets.split import Split, needs_context, to_grid, to_tokens

PREFIX = "timm:"
INSTALL = "pip install -e '.[timm]'"
HUB_WEIGHTS = "DEFAULT"  # model.weights for timm's pretrained weights (the hub download)


def timm_name(name: str) -> str:
    """`timm:vit_small_patch16_224` -> `vit_small_patch16_224`."""
    return name[len(PREFIX):]


def require_timm() -> Any:
    """The timm module, or a ModelError saying how to install it."""
    try:
        import timm
    except ImportError:
        raise ModelError(f"timm models need timm, which is not installed: {INSTALL}") from None
    return timm


def check_name(name: str) -> str:
    """The timm name of `timm:<name>`, checked against timm's registry."""
    timm = require_timm()
    model = timm_name(name)
    if not model or not timm.is_model(model):
        close = difflib.get_close_matches(model.split(".")[0], timm.list_models(), n=3) if model else []
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ModelError(f"timm has no model {model!r}{hint}; timm.list_models() lists them")
    return model


def pretrained_stats(name: str) -> tuple[int, tuple[float, ...], tuple[float, ...]] | None:
    """(input size, mean, std) of `timm:<name>` from its pretrained config; None without one."""
    model = check_name(name)
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(model)
    except RuntimeError as exc:  # a pretrained tag the architecture does not have
        raise ModelError(str(exc)) from None
    if cfg is None:
        return None
    return int(cfg.input_size[-1]), tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)


def build(spec: ModelSpec) -> nn.Module:
    """The timm model of `spec`: random init, or timm's pretrained weights for `DEFAULT` (a local
    weights file is models.build_model's to load, as for every other model)."""
    timm = require_timm()
    name = check_name(spec.name)
    from timm.models import get_pretrained_cfg

    kwargs: dict[str, Any] = {} if spec.num_classes is None else {"num_classes": spec.num_classes}
    cfg = get_pretrained_cfg(name)
    if cfg is not None and cfg.fixed_input_size:
        kwargs["img_size"] = spec.input_size  # ViTs build their position embedding for one size
    hub = spec.weights == HUB_WEIGHTS
    if spec.weights is not None and not hub and not is_weights_path(spec.weights):
        raise ModelError(f"unknown weights {spec.weights!r} for {spec.name}: use {HUB_WEIGHTS} (timm's pretrained "
                         "weights) or a local weights file")
    try:
        with _hub_guard(name, cfg) if hub else contextlib.nullcontext():
            model = timm.create_model(name, pretrained=hub, **kwargs)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"timm.create_model({name!r}) failed: {type(exc).__name__}: {exc}") from None
    return model


def _is_network_error(exc: BaseException) -> bool:
    """An error of the download itself (no network, offline mode, a refused connection)."""
    module = type(exc).__module__.split(".")[0]
    return isinstance(exc, (OSError, ConnectionError, TimeoutError)) or module in ("httpx", "httpx2", "httpcore",
                                                                                   "httpcore2", "huggingface_hub", "requests")


@contextlib.contextmanager
def _hub_guard(name: str, cfg: Any) -> Iterator[None]:
    """Turn a failed hub download into a ModelError that says how to work offline (as
    models._download_guard does for torchvision's weights)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        yield
    except Exception as exc:
        if not _is_network_error(exc):
            raise
        source = getattr(cfg, "hf_hub_id", None) or getattr(cfg, "url", None) or name
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(
            f"downloading timm's pretrained weights of {name} from {source} failed ({first_line}): this needs network "
            f"access. Offline, fetch the weights (the hub's model.safetensors of {source}) on a machine with network "
            "and pass the local file: --weights /path/to/model.safetensors (or model.weights in catalog.yaml); "
            "`atlas demo` works with no network at all") from None
    finally:
        socket.setdefaulttimeout(previous)


# ---------------------------------------------------------------------------------------------
# Where a timm model is cut


def _is_vit_like(model: nn.Module) -> bool:
    return all(hasattr(model, name) for name in ("patch_embed", "_pos_embed", "blocks", "num_prefix_tokens", "norm")) \
        and isinstance(model.blocks, nn.Sequential) and len(model.blocks) > 0


def _is_transformer(model: nn.Module) -> bool:
    return any("Attention" in type(module).__name__ for module in model.modules())


class TimmViT(Split):
    """A timm ViT-like model: pool5 = the patch tokens entering its last block, the context = its
    prefix tokens there (class token, registers; none for a ViT without them)."""

    family = "tokens"

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.prefix = int(model.num_prefix_tokens)
        self.tokens = CLASS_TOKEN if getattr(model, "global_pool", "token") == "token" else POOLED_TOKEN
        pooled = "the class token" if self.tokens == CLASS_TOKEN else f"the tokens pooled ({model.global_pool})"
        self.roles = {"pool5": "the patch tokens entering the last block (blocks[-1]), as their grid",
                      "fc7": f"{pooled} after the last block and the final norm: forward_head(pre_logits=True) (signed)"}

    def stem(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        model = self.model
        tokens = model.patch_embed(x)
        height, width = tokens.shape[1:3] if tokens.dim() == 4 else model.patch_embed.grid_size
        tokens = model.norm_pre(model.patch_drop(model._pos_embed(tokens)))
        for block in model.blocks[:-1]:
            tokens = block(tokens)
        context = tokens[:, : self.prefix] if self.prefix else None
        return to_grid(tokens[:, self.prefix :], int(height), int(width)), context

    def finish(self, pool5: Tensor, context: Tensor | None) -> Tensor:
        tokens = to_tokens(pool5)
        if self.prefix:
            tokens = torch.cat([needs_context(type(self.model).__name__, context), tokens], 1)
        return self.model.forward_head(self.model.norm(self.model.blocks[-1](tokens)), pre_logits=True)

    def classifier(self) -> list[tuple[str, nn.Module]]:
        return _classifier(self.model)


class TimmModel(Split):
    """Any other timm model: pool5 = forward_features (a map; NHWC turned to NCHW), then
    forward_head(pre_logits=True) (fc7), then its classifier (fc8)."""

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.nhwc = getattr(model, "output_fmt", "NCHW") == "NHWC"
        self.tokens = POOLED_TOKEN if _is_transformer(model) else None
        self.roles = {"pool5": "forward_features: the last map" + (" (its tokens, NHWC, as a grid)" if self.nhwc else ""),
                      "fc7": "forward_head(pre_logits=True): the pooled vector (and the head's norm or hidden layer)"}

    def stem(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        features = self.model.forward_features(x)
        if features.dim() != 4:
            raise PathwayError(f"{type(self.model).__name__}.forward_features gives shape {tuple(features.shape)}, "
                               "not a spatial map, and the model has no ViT-like blocks to cut before")
        return (features.permute(0, 3, 1, 2) if self.nhwc else features), None

    def finish(self, pool5: Tensor, context: Tensor | None) -> Tensor:
        return self.model.forward_head(pool5.permute(0, 2, 3, 1) if self.nhwc else pool5, pre_logits=True)

    def classifier(self) -> list[tuple[str, nn.Module]]:
        return _classifier(self.model)


def _classifier(model: Any) -> list[tuple[str, nn.Module]]:
    head = model.get_classifier()
    if not isinstance(head, nn.Linear):
        raise PathwayError(f"{type(model).__name__}'s classifier (get_classifier()) is {type(head).__name__}, not one "
                           "Linear layer: the atlas needs the logits as one Linear of the pooled vector")
    return [("get_classifier()", head)]


def split(model: nn.Module) -> Split:
    """The Split of a timm model, found from its structure."""
    if not all(hasattr(model, name) for name in ("forward_features", "forward_head", "get_classifier")):
        raise PathwayError(f"{type(model).__name__} has no forward_features / forward_head / get_classifier")
    return TimmViT(model) if _is_vit_like(model) else TimmModel(model)
