"""The catalog's engine settings become the standard terms and transforms."""
from generator.engine import recipes
from generator.engine.decorrelated import Decorrelated
from generator.engine.pad_rotate import Pad, RandomRotate
from generator.engine.params import Pixels
from generator.engine.settings import Settings
from generator.engine.terms import L2, TV, AlphaNorm
from generator.engine.transforms import Jitter, RandomScale


def test_regularizers_follow_the_settings_weights():
    terms = recipes.regularizers(Settings(l2=2.0, tv=3.0, alpha_norm=4.0), centre=(0.4, 0.5, 0.6))
    assert [(type(t), t.weight) for t in terms] == [(L2, 2.0), (AlphaNorm, 4.0), (TV, 3.0)]
    assert terms[0].centre == (0.4, 0.5, 0.6)
    assert recipes.regularizers(Settings(l2=0.0, tv=0.0)) == []


def test_transforms_follow_the_settings():
    assert recipes.transforms(Settings(pad=0, scale=0.0, jitter=0, rotate=0.0)) == []
    assert recipes.transforms(Settings(pad=0, jitter=3, scale=0.1, rotate=0.0)) == [RandomScale(0.9, 1.1), Jitter(3)]
    robust = recipes.transforms(Settings(pad=8, jitter=4, scale=0.05, rotate=10.0))
    assert robust == [Pad(8), RandomScale(0.95, 1.05), Jitter(4), RandomRotate(10.0)]  # Lucid's order


def test_parameterization_follows_the_settings():
    assert isinstance(recipes.parameterization(Settings(param="pixels")), Pixels)
    colour, fourier = (recipes.parameterization(Settings(param=p)) for p in ("colour", "fourier"))
    assert isinstance(colour, Decorrelated) and not colour.fourier
    assert isinstance(fourier, Decorrelated) and fourier.fourier


def test_no_prior_term_without_a_database_or_weight():
    assert recipes.prior(None, Settings()) == []
    assert recipes.prior(object(), Settings(prior_weight=0.0)) == []
