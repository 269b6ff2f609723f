"""ModelSpec -> Pathway: torchvision AlexNet/VGG, globally pooled CNNs (ResNet, MobileNet,
EfficientNet, ConvNeXt, RegNet) and vision transformers (ViT, Swin, MaxViT) by name with their
weights, any timm model as `timm:<name>` (timm_models.py), or a user's factory.

Weights are only ever read with `torch.load(..., weights_only=True)`: a checkpoint is data,
never code. Every way loading can fail that a user can fix (no network for the download, a
state_dict for another architecture, a pickled whole model) becomes one ModelError that says
what to do, instead of a traceback.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.resources
import importlib.util
import pickle
import socket
import sys
import urllib.error
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from generator.classtable import class_table, imagenet_classes  # noqa: F401  (re-exported)
from generator.errors import ModelError
from generator.modelspec import ModelSpec, is_weights_path
from generator.nets.families import FAMILY_ROLES, MODEL_FAMILIES, TORCHVISION_MODELS, model_family, supported_families  # noqa: F401  (re-exported)
from generator.nets.fold import channels_last_on_cpu, fold_batchnorm
from generator.nets.pathway import Pathway, PathwayError
from generator.nets.transformers import pathway_for, random_head, torchvision_kwargs

DOWNLOAD_TIMEOUT_S = 30


def torchvision_model_names() -> list[str]:
    import torchvision.models

    return list(torchvision.models.list_models(module=torchvision.models))


def unsupported_reason(name: str) -> str:
    """Why a torchvision model outside MODEL_FAMILIES is refused: what the pathway needs."""
    from generator.nets.pathway import NEEDS

    return f"{NEEDS}. Supported by name: {supported_families()}"


def torchvision_weight_names(name: str) -> list[str]:
    import torchvision.models

    return list(torchvision.models.get_model_weights(name).__members__)


def resolve_device(name: str | torch.device) -> torch.device:
    """`auto` picks CUDA when present; an explicit device that is not available is an error."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {name!r} asked for, but PyTorch sees no CUDA GPU here (use --device cpu or auto)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ModelError("device 'mps' asked for, but it is not available here (use --device cpu or auto)")
    return torch.device(name)


def load_pathway(spec: ModelSpec, device: str | torch.device = "cpu") -> Pathway:
    """Build the model, load its weights, fold its batch norms (fold.py), split it into a Pathway on `device`."""
    model = fold_batchnorm(build_model(spec).eval())
    try:
        pathway = pathway_for(model, mean=spec.mean, std=spec.std, input_size=spec.input_size)
    except PathwayError as exc:
        raise ModelError(f"model {spec.name}: {exc}") from None
    if spec.labels is not None and pathway.num_classes != len(spec.labels):
        raise ModelError(f"model {spec.name} has {pathway.num_classes} outputs but {len(spec.labels)} labels were given")
    expected = len(class_table(spec))
    if spec.labels is None and pathway.num_classes != expected:
        raise ModelError(f"model {spec.name} has {pathway.num_classes} outputs, but without model.labels (--labels) "
                         f"the catalog assumes {expected} classes; give its labels or num_classes")
    return channels_last_on_cpu(pathway.to(resolve_device(device)))


def build_model(spec: ModelSpec) -> nn.Module:
    """The nn.Module with its weights (random init when spec.weights is None)."""
    if spec.name.startswith("timm:"):
        from generator.nets import timm_models

        model = timm_models.build(spec)  # random init, or timm's hub weights for DEFAULT
        hub = spec.weights == timm_models.HUB_WEIGHTS
    elif ":" in spec.name:
        model, hub = _from_factory(spec), False
    else:
        return _from_torchvision(spec)
    if spec.weights is not None and not hub:
        load_weights_file(model, Path(spec.weights))
    return model


def _from_torchvision(spec: ModelSpec) -> nn.Module:
    import torchvision.models

    if spec.name not in TORCHVISION_MODELS:
        if spec.name in torchvision_model_names():
            raise ModelError(f"torchvision's {spec.name} cannot be used: {unsupported_reason(spec.name)}")
        raise ModelError(f"unknown model {spec.name!r}; use a name of the families {supported_families()}, "
                         "or file.py:factory")
    kwargs = {} if spec.num_classes is None else {"num_classes": spec.num_classes}
    kwargs |= torchvision_kwargs(spec.name, spec.input_size, spec.weights)
    model = torchvision.models.get_model(spec.name, weights=None, **kwargs)
    if spec.weights is None:
        random_head(model)
        return model
    if is_weights_path(spec.weights):
        load_weights_file(model, Path(spec.weights))
        return model
    try:
        weights = torchvision.models.get_model_weights(spec.name)[spec.weights]
    except KeyError:
        known = ", ".join(torchvision_weight_names(spec.name))
        raise ModelError(f"unknown weights {spec.weights!r} for {spec.name}; known: {known}, or a state_dict path") from None
    if spec.num_classes not in (None, len(weights.meta["categories"])):
        raise ModelError(f"{spec.name} {spec.weights} has {len(weights.meta['categories'])} classes, "
                         f"not num_classes={spec.num_classes}")
    with _download_guard(f"{spec.name} weights {spec.weights}", weights.url):
        state = weights.get_state_dict(progress=True, weights_only=True, map_location="cpu")
    _load_state(model, state, weights.url)
    return model


def ensure_weights(spec: ModelSpec) -> None:
    """Fetch torchvision weights now (a no-op when cached or local), so an offline build fails
    in seconds with a clear message instead of after loading images."""
    if spec.weights is None or ":" in spec.name or is_weights_path(spec.weights):
        return
    import torchvision.models

    try:
        weights = torchvision.models.get_model_weights(spec.name)[spec.weights]
    except (KeyError, ValueError):
        return  # load_pathway reports it
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if cached.is_file():
        return
    cached.parent.mkdir(parents=True, exist_ok=True)
    with _download_guard(f"{spec.name} weights {spec.weights}", weights.url):
        torch.hub.download_url_to_file(weights.url, str(cached), progress=True)


@contextlib.contextmanager
def _download_guard(what: str, url: str) -> Iterator[None]:
    """Turn a failed download into a ModelError that says how to work offline."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        yield
    except (urllib.error.URLError, ConnectionError, TimeoutError, socket.error) as exc:
        reason = getattr(exc, "reason", exc)
        file_name = Path(url).name
        raise ModelError(
            f"downloading {what} from {url} failed ({reason}): this needs network access. "
            f"Offline, fetch {file_name} on a machine with network and pass the local file: "
            f"--weights /path/to/{file_name} (or model.weights in catalog.yaml), or copy it to "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'}/; `atlas demo` works with no network at all"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _from_factory(spec: ModelSpec) -> nn.Module:
    """Call `path/file.py:factory` or `package.module:factory` (with num_classes when given)."""
    target, factory_name = spec.name.rsplit(":", 1)
    factory = _import_factory(target, factory_name)
    kwargs = {} if spec.num_classes is None else {"num_classes": spec.num_classes}
    try:
        model = factory(**kwargs)
    except (Exception, SystemExit) as exc:  # SystemExit: model code that calls sys.exit()
        raise ModelError(f"{spec.name}({', '.join(f'{k}={v}' for k, v in kwargs.items())}) failed: "
                         f"{_exception_text(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{spec.name} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _exception_text(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"the model code called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _import_factory(target: str, factory_name: str) -> Callable[..., nn.Module]:
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise ModelError(f"model file {path} not found")
            module_name = "atlas_user_model_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
            module_spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
            sys.modules[module_name] = module
            module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(target)
    except ModelError:
        raise
    except (Exception, SystemExit) as exc:  # SystemExit: a model file that calls sys.exit()
        raise ModelError(f"cannot import {target}: {_exception_text(exc)}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ModelError(f"{target} has no function {factory_name!r}")
    return factory


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a file, read with weights_only=True (also unwraps {"state_dict": ...}),
    or from a .safetensors file (the format of timm's and Hugging Face's hubs)."""
    if not path.is_file():
        raise ModelError(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{path} is not a plain state_dict: torch.load(weights_only=True) refused it ({first_line}). "
            "It probably holds a pickled model object, which could run code when loaded; re-save it "
            "with torch.save(model.state_dict(), path)"
        ) from None
    except Exception as exc:
        raise ModelError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from None
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return state


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ModelError(f"reading {path} needs the safetensors package (it comes with timm): pip install safetensors") from None
    try:
        return load_file(str(path))
    except Exception as exc:
        raise ModelError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from None


def load_weights_file(model: nn.Module, path: Path) -> None:
    _load_state(model, read_state_dict(path), str(path))


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict(strict) with a message that lists what does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("shape mismatches (file vs model)", mismatched)):
            if keys:
                shown = ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")
                parts.append(f"{title}: {shown}")
        raise ModelError(f"the weights in {source} are for another architecture than {type(model).__name__}: "
                         + "; ".join(parts))
    model.load_state_dict(state)


def model_digest(spec: ModelSpec) -> str:
    """A short identity of the model's weights for cache keys: the file's bytes, or the enum name."""
    h = hashlib.sha256(spec.name.encode())
    if spec.weights is None:
        h.update(b"random-init")
    elif is_weights_path(spec.weights) and Path(spec.weights).is_file():
        with open(spec.weights, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        h.update(str(spec.weights).encode())
    h.update(repr((spec.num_classes, spec.input_size, spec.mean, spec.std)).encode())
    return h.hexdigest()[:16]
