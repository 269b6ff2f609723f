"""The batched engine on a tiny AlexNet-layout model (96 px in, pool5 6x6, 43 px receptive fields)."""
import math

import pytest
import torch

from generator import optimize
from generator.optimize import Problem, Settings, settings_from, solve
from generator.pathway import Pathway

SIZE = 96


def quick(**overrides) -> Settings:
    values = dict(iterations=15, lr=0.05, l2=1.0, tv=5.0, jitter=0)
    return Settings(**{**values, **overrides})


@pytest.fixture(scope="module")
def pathway(tiny_alexnet) -> Pathway:
    return tiny_alexnet(SIZE)


def test_solve_lowers_the_energy_of_class_and_inversion_problems(pathway):
    target = pathway.trunk(torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5)))[0]
    problems = [Problem(target_class=1, seed=0), Problem(target_feature=target, seed=1)]
    sol_class, sol_inv = solve(pathway, problems, quick(iterations=20), progress=False)
    assert len(sol_class.energy) == 20
    assert sol_class.energy[-1] < sol_class.energy[0]
    assert sol_inv.energy[-1] < sol_inv.energy[0]
    assert 0 < sol_class.prob < 1 and math.isnan(sol_class.feature_error)
    assert math.isnan(sol_inv.prob) and sol_inv.feature_error < 1.0
    assert sol_class.image.shape == (3, SIZE, SIZE) and 0 <= sol_class.image.min() and sol_class.image.max() <= 1


def test_m5_window_limits_the_data_gradient_to_its_receptive_field(pathway):
    """With only pool5 cell (0, 0) open, a far corner pixel gets no gradient: it stays at init."""
    init = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    window = pathway.window_mask(0, 0, 1)
    problems = [Problem(target_class=0, m5=window, init=init), Problem(target_class=0, init=init)]
    windowed, open_ = solve(pathway, problems, quick(iterations=1, l2=0.0, tv=0.0), progress=False)
    far = (slice(None), slice(60, None), slice(60, None))
    near = (slice(None), slice(0, 30), slice(0, 30))
    assert torch.equal(windowed.image[far], init[far])
    assert not torch.equal(open_.image[far], init[far])
    assert not torch.equal(windowed.image[near], init[near])


def test_a_nan_problem_diverges_alone(pathway):
    bad = torch.full(pathway.pool5_shape, float("nan"))
    problems = [Problem(target_feature=bad, seed=0, label="bad"), Problem(target_class=2, seed=1, label="good")]
    bad_sol, good_sol = solve(pathway, problems, quick(), progress=False)
    assert bad_sol.diverged and not good_sol.diverged
    assert torch.isfinite(bad_sol.image).all() and torch.isfinite(good_sol.image).all()
    assert good_sol.energy[-1] < good_sol.energy[0]
    alone = solve(pathway, [problems[1]], quick(), progress=False)[0]
    assert torch.allclose(alone.image, good_sol.image, atol=1e-3)


def test_diverging_midway_freezes_the_last_finite_image(pathway, monkeypatch):
    """An energy that turns NaN at step 5 for sample 0 only: sample 0 keeps its step-5 image."""
    calls = {"n": 0}
    original = optimize.energy.tv

    def flaky_tv(images, weight, beta=2.0):
        calls["n"] += 1
        value = original(images, weight, beta)
        if calls["n"] > 5:
            value = value + torch.tensor([float("nan"), 0.0])
        return value

    monkeypatch.setattr(optimize.energy, "tv", flaky_tv)
    problems = [Problem(target_class=0, seed=0), Problem(target_class=0, seed=1)]
    first, second = solve(pathway, problems, quick(iterations=12, schedule="constant"), progress=False)
    assert first.diverged and not second.diverged
    assert len(first.energy) == 12 and math.isnan(first.energy[5]) and math.isfinite(first.energy[4])
    monkeypatch.setattr(optimize.energy, "tv", original)
    five_steps = solve(pathway, problems[:1], quick(iterations=5, schedule="constant"), progress=False)[0]
    assert torch.allclose(first.image, five_steps.image, atol=1e-3)
    twelve_steps = solve(pathway, problems[1:], quick(iterations=12, schedule="constant"), progress=False)[0]
    assert torch.allclose(second.image, twelve_steps.image, atol=1e-3)


# Batch vs alone: same maths, but BLAS sums in a different order; Adam can turn 1e-7 float noise
# in a near-zero gradient into a visible step, so compare within 1e-3 (one step is lr = 0.05).
def test_same_seed_same_image_and_batch_does_not_matter(pathway):
    settings = quick(jitter=3)
    one = solve(pathway, [Problem(target_class=3, seed=7)], settings, progress=False)[0]
    again = solve(pathway, [Problem(target_class=3, seed=7)], settings, progress=False)[0]
    assert torch.equal(one.image, again.image)
    batch = solve(
        pathway,
        [Problem(target_class=0, seed=1), Problem(target_class=3, seed=7), Problem(target_class=2, seed=9)],
        settings,
        progress=False,
    )
    assert torch.allclose(batch[1].image, one.image, atol=1e-3)
    assert not torch.allclose(batch[0].image, one.image, atol=1e-2)


def test_keep_mask_holds_pixels_fixed(pathway):
    init = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    keep = torch.ones(1, SIZE, SIZE)
    keep[:, 30:60, 30:60] = 0
    sol = solve(pathway, [Problem(target_class=1, init=init, keep=keep)], quick(jitter=2), progress=False)[0]
    held = keep.expand(3, -1, -1).bool()
    assert torch.equal(sol.image[held], init[held])
    assert not torch.equal(sol.image[~held], init[~held])


def test_closed_weights_quiet_the_units_a_code_closes(pathway):
    """A mask only gates; with closed_weights the engine also drives the closed units down."""
    init = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        m5 = (pathway.trunk(init[None])[0] > 0).float()
    m5[:, :3] = 0.0  # close the top half of pool5 too
    problems = [Problem(target_class=2, m5=m5, init=init), Problem(target_class=2, m5=m5, init=init, closed_weights=(50.0, 0.0, 0.0))]
    gated, forbidden = solve(pathway, problems, quick(iterations=25), progress=False)

    def closed(image):
        with torch.no_grad():
            return float(pathway(image[None], m5=m5, closed_activity=True).closed[0, 0])

    assert closed(forbidden.image) < 0.5 * closed(gated.image)
    assert forbidden.score > 0.5 * gated.score  # still the class: the open units carry it


def test_patch_prior_pulls_patches_toward_the_database(pathway):
    from generator.prior import PatchDatabase, normalized_patches

    generator = torch.Generator().manual_seed(6)
    smooth = torch.nn.functional.interpolate(torch.rand(4, 3, 12, 12, generator=generator), size=SIZE, mode="bilinear")
    database = PatchDatabase.from_images(smooth, patch=5, stride=4, max_patches=2000)
    problems = [Problem(target_class=1, seed=0), Problem(target_class=1, seed=0, prior=database)]
    plain, with_prior = solve(pathway, problems, quick(iterations=20, prior_weight=50.0, rematch_every=5, prior_stride=None), progress=False)

    def prior_distance(image):
        patches = normalized_patches(image[None], 5, 4)[0]
        return (patches - database.match(patches)).pow(2).mean().item()

    assert prior_distance(with_prior.image) < 0.7 * prior_distance(plain.image)


def test_settings_from_rejects_unknown_fields():
    assert settings_from({"iterations": 5}, lr=0.1) == Settings(iterations=5, lr=0.1)
    with pytest.raises(ValueError, match="itertions"):
        settings_from({"itertions": 5})


def test_problem_needs_exactly_one_target(pathway):
    with pytest.raises(ValueError, match="exactly one"):
        solve(pathway, [Problem()], quick(), progress=False)


def test_real_model_reaches_its_class(shared_pathway):
    sol = solve(shared_pathway, [Problem(target_class=4, seed=0)], settings_from(iterations=12), progress=False)[0]
    assert sol.energy[-1] < sol.energy[0] and sol.prob > 0.5


def test_prior_weight_ramp_is_off_then_linear_then_full():
    from generator.optimize import prior_weight_at

    settings = Settings(iterations=11, prior_weight=100.0, prior_start=0.2, prior_full=0.6)
    weights = [prior_weight_at(step, settings) for step in range(11)]
    assert weights[:2] == [0.0, 0.0]
    assert weights[4] == pytest.approx(50.0)
    assert weights[6:] == [100.0] * 5
    assert prior_weight_at(0, Settings(prior_weight=100.0)) == 100.0
