"""The catalog's engine settings become the standard terms and transforms."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from generator.engine import recipes
from generator.engine.decorrelated import Decorrelated
from generator.engine.pad_rotate import Pad, RandomRotate
from generator.engine.params import Pixels
from generator.engine.settings import RAW_PIXELS, Settings, SettingsError
from generator.engine.terms import L2, TV, AlphaNorm
from generator.engine.transforms import KNOBS, Jitter, RandomScale


def test_regularizers_follow_the_settings_weights():
    terms = recipes.regularizers(Settings(l2=2.0, tv=3.0, alpha_norm=4.0), centre=(0.4, 0.5, 0.6))
    assert [(type(t), t.weight) for t in terms] == [(L2, 2.0), (AlphaNorm, 4.0), (TV, 3.0)]
    assert terms[0].centre == (0.4, 0.5, 0.6)
    assert recipes.regularizers(Settings(l2=0.0, tv=0.0)) == []
    assert terms[2].beta == 2.0 and recipes.regularizers(Settings(l2=0.0, tv_beta=1.0))[0].beta == 1.0
    with pytest.raises(SettingsError, match="tv_beta"):
        Settings(tv_beta=0.0)


def test_a_sparse_tv_spares_an_edge_and_has_a_gradient_on_a_flat_image():
    import torch

    from generator.engine.terms import total_variation

    edge = torch.zeros(1, 3, 16, 16)
    edge[..., 8:] = 1.0  # one step of height 1
    ramp = torch.linspace(0, 1, 16).expand(1, 3, 16, 16).contiguous()  # the same rise spread over the width
    assert float(total_variation(edge, 2.0)) > 5 * float(total_variation(ramp, 2.0))  # the square punishes the edge
    assert float(total_variation(edge, 1.0)) < 1.1 * float(total_variation(ramp, 1.0))  # beta 1: the same rise, the same cost
    flat = torch.full((1, 3, 8, 8), 0.5, requires_grad=True)
    total_variation(flat, 0.8).sum().backward()
    assert flat.grad is not None and bool(torch.isfinite(flat.grad).all())


def test_transforms_follow_the_settings():
    assert recipes.transforms(Settings(pad=0, scale=0.0, jitter=0, rotate=0.0)) == []
    assert recipes.transforms(Settings(pad=0, jitter=3, scale=0.1, rotate=0.0)) == [RandomScale(0.9, 1.1), Jitter(3)]
    robust = recipes.transforms(Settings(pad=8, jitter=4, scale=0.05, rotate=10.0))
    assert robust == [Pad(8), RandomScale(0.95, 1.05), Jitter(4), RandomRotate(10.0)]  # Lucid's order


def test_parameterization_follows_the_settings():
    assert isinstance(recipes.parameterization(Settings(param="pixels")), Pixels)
    colour, fourier = (recipes.parameterization(Settings(param=p)) for p in ("colour", "fourier"))
    assert isinstance(colour, Decorrelated) and not colour.fourier
    assert isinstance(fourier, Decorrelated) and fourier.fourier and fourier.decay == 1.0
    assert recipes.parameterization(Settings(fourier_decay=0.5)).decay == 0.5
    with pytest.raises(SettingsError):
        Settings(fourier_decay=-1.0)


def test_no_prior_term_without_a_database_or_weight():
    assert recipes.prior(None, Settings()) == []
    assert recipes.prior(object(), Settings(prior_weight=0.0)) == []


def test_the_raw_pixel_profile_keeps_only_the_jitter():
    assert RAW_PIXELS == {"param": "pixels", "pad": 0, "scale": 0.0, "rotate": 0.0}
    settings = Settings(**RAW_PIXELS)
    assert recipes.transforms(settings) == [Jitter(4)] and isinstance(recipes.parameterization(settings), Pixels)


def test_each_transform_knob_is_a_settings_field_with_its_default():
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    for knob in KNOBS:
        assert fields[knob.name].default == knob.default and type(knob.default).__name__ == fields[knob.name].type
    with pytest.raises(SettingsError, match=r"engine.scale: must be in \[0, 1\)"):
        Settings(scale=1.0)
    with pytest.raises(SettingsError, match="engine.pad: must be >= 0"):
        Settings(pad=-1)


NEW_TRANSFORM = '''
from dataclasses import dataclass

import generator.engine.transforms as transforms


@dataclass(frozen=True)
class Flip:
    chance: float

    def __call__(self, images, generator):
        return images.flip(-1)


transforms.KNOBS = (*transforms.KNOBS, transforms.Knob("flip", 0.5, Flip, "mirror the batch (0: off)", below=1.0))

from generator.engine import recipes
from generator.engine.settings import Settings, SettingsError, settings_from

assert Settings().flip == 0.5 and settings_from({"flip": 0.25}).flip == 0.25
assert recipes.transforms(Settings())[-1] == Flip(0.5)
assert not any(isinstance(t, Flip) for t in recipes.transforms(Settings(flip=0.0)))
try:
    Settings(flip=2.0)
except SettingsError as exc:
    assert "engine.flip: must be in [0, 1)" in str(exc)
else:
    raise AssertionError("flip 2.0 accepted")
print("ok")
'''


def test_a_new_transform_is_one_knob_in_transforms_py():
    """Declaring a knob is all a transform needs: Settings (the catalog's `engine:` section) takes
    the field and its range check from it, and the recipe builds the transform (in a fresh
    interpreter: Settings is made when its module loads)."""
    run = subprocess.run([sys.executable, "-c", NEW_TRANSFORM], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_a_setting_at_its_neutral_value_leaves_the_pictures_keys_alone():
    from generator.engine.settings import NEUTRAL, identity

    plain = dataclasses.asdict(Settings())
    for name in NEUTRAL:
        plain.pop(name)
    assert identity(Settings()) == plain  # the keys an atlas built before the setting existed
    assert identity(Settings(fourier_decay=0.5))["fourier_decay"] == 0.5  # another value is a new picture
