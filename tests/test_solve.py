"""The engine's loop on a tiny AlexNet-layout model (96 px in, pool5 6x6, 43 px receptive fields)."""
import math

import pytest
import torch

from generator.engine import solve as solve_module
from generator.engine import terms as terms_module
from generator.engine.patch_prior import PatchPrior
from generator.engine.settings import RAW_PIXELS, Settings, SettingsError, settings_from
from generator.engine.solve import Problem, solve
from generator.engine.terms import L2, TV, ClassScore, ClosedActivity, Direction, FeatureMatch, closed_activity

SIZE = 96


def quick(**overrides) -> Settings:
    """Raw pixels, no transforms: these tests check the loop's mechanics, pixel by pixel."""
    return Settings(**{**RAW_PIXELS, "iterations": 15, "lr": 0.05, "jitter": 0, **overrides})


def class_terms(target: int, l2: float = 1.0, tv: float = 5.0) -> list:
    return ClassScore(target) + l2 * L2() + tv * TV()


@pytest.fixture(scope="module")
def pathway(tiny_alexnet):
    return tiny_alexnet(size=SIZE)


def window(pathway, top: int, left: int, size: int) -> torch.Tensor:
    mask = torch.zeros(pathway.pool5_shape)
    mask[:, top : top + size, left : left + size] = 1.0
    return mask


def test_solve_lowers_the_energy_of_class_and_inversion_problems(pathway):
    target = pathway.trunk(torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5)))[0]
    problems = [Problem(class_terms(1), seed=0), Problem(FeatureMatch(target) + 5.0 * TV(), seed=1)]
    sol_class, sol_inv = solve(pathway, problems, quick(iterations=20), progress=False)
    assert len(sol_class.energy) == 20
    assert sol_class.energy[-1] < sol_class.energy[0]
    assert sol_inv.energy[-1] < sol_inv.energy[0]
    # each problem holds the numbers its own terms report (regularizers report none)
    assert set(sol_class.numbers) == {"score", "prob"} and set(sol_inv.numbers) == {"feature_error"}
    assert 0 < sol_class.numbers["prob"] < 1 and sol_inv.numbers["feature_error"] < 1.0
    with torch.no_grad():
        fc8 = pathway(sol_class.image[None]).fc8[0]
    assert sol_class.numbers["score"] == pytest.approx(float(fc8[1]), rel=1e-5)  # the final image, untransformed
    assert sol_class.image.shape == (3, SIZE, SIZE) and 0 <= sol_class.image.min() and sol_class.image.max() <= 1


def test_problems_with_different_term_sets_share_one_batch(pathway):
    """A problem's picture is the same alone or beside problems with other terms."""
    settings = quick(iterations=10)
    alone = solve(pathway, [Problem(class_terms(2), seed=3)], settings, progress=False)[0]
    target = pathway.trunk(torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)))[0]
    mixed = solve(pathway, [Problem([FeatureMatch(target)], seed=0), Problem(class_terms(2), seed=3),
                            Problem([ClassScore(1)], seed=4)], settings, progress=False)
    assert torch.allclose(mixed[1].image, alone.image, atol=1e-3)


def test_a_feature_match_on_a_trunk_module_inverts_that_layer(pathway):
    image = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        target = pathway.features[:4](pathway.normalize(image))[0]
    solution = solve(pathway, [Problem([FeatureMatch(target, "features.3")], seed=0)], quick(iterations=30), progress=False)[0]
    assert solution.numbers["feature_error"] < 0.8 and solution.energy[-1] < 0.7 * solution.energy[0]
    assert not pathway.features[3]._forward_hooks  # the capture hook is removed afterwards


def test_m5_window_limits_the_data_gradient_to_its_receptive_field(pathway):
    """With only pool5 cell (0, 0) open, a far corner pixel gets no gradient: it stays at init."""
    init = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    problems = [Problem([ClassScore(0)], gates={"pool5": window(pathway, 0, 0, 1)}, init=init),
                Problem([ClassScore(0)], init=init)]
    windowed, open_ = solve(pathway, problems, quick(iterations=1), progress=False)
    far = (slice(None), slice(60, None), slice(60, None))
    near = (slice(None), slice(0, 30), slice(0, 30))
    assert torch.equal(windowed.image[far], init[far])
    assert not torch.equal(open_.image[far], init[far])
    assert not torch.equal(windowed.image[near], init[near])


def test_a_nan_problem_diverges_alone(pathway):
    bad = torch.full(pathway.pool5_shape, float("nan"))
    problems = [Problem([FeatureMatch(bad)], seed=0, label="bad"), Problem(class_terms(2), seed=1, label="good")]
    bad_sol, good_sol = solve(pathway, problems, quick(), progress=False)
    assert bad_sol.diverged and not good_sol.diverged
    assert torch.isfinite(bad_sol.image).all() and torch.isfinite(good_sol.image).all()
    assert good_sol.energy[-1] < good_sol.energy[0]
    alone = solve(pathway, [problems[1]], quick(), progress=False)[0]
    assert torch.allclose(alone.image, good_sol.image, atol=1e-3)


def test_diverging_midway_freezes_the_last_finite_image(pathway, monkeypatch):
    """An energy that turns NaN at step 5 for sample 0 only: sample 0 keeps its step-5 image."""
    calls = {"n": 0}
    original = terms_module.total_variation

    def flaky_tv(images, beta=2.0):
        calls["n"] += 1
        value = original(images, beta)
        return value + torch.tensor([float("nan"), 0.0]) if calls["n"] > 5 else value

    monkeypatch.setattr(terms_module, "total_variation", flaky_tv)
    problems = [Problem(class_terms(0), seed=0), Problem(class_terms(0), seed=1)]
    first, second = solve(pathway, problems, quick(iterations=12, schedule="constant"), progress=False)
    assert first.diverged and not second.diverged
    assert len(first.energy) == 12 and math.isnan(first.energy[5]) and math.isfinite(first.energy[4])
    monkeypatch.setattr(terms_module, "total_variation", original)
    five_steps = solve(pathway, problems[:1], quick(iterations=5, schedule="constant"), progress=False)[0]
    assert torch.allclose(first.image, five_steps.image, atol=1e-3)
    twelve_steps = solve(pathway, problems[1:], quick(iterations=12, schedule="constant"), progress=False)[0]
    assert torch.allclose(second.image, twelve_steps.image, atol=1e-3)


# Batch vs alone: same maths, but BLAS sums in a different order; Adam can turn 1e-7 float noise
# in a near-zero gradient into a visible step, so compare within 1e-3 (one step is lr = 0.05).
def test_same_seed_same_image_and_batch_does_not_matter(pathway):
    settings = quick(jitter=3)
    one = solve(pathway, [Problem(class_terms(3), seed=7)], settings, progress=False)[0]
    again = solve(pathway, [Problem(class_terms(3), seed=7)], settings, progress=False)[0]
    assert torch.equal(one.image, again.image)
    problems = [Problem(class_terms(0), seed=1), Problem(class_terms(3), seed=7), Problem(class_terms(2), seed=9)]
    batch = solve(pathway, problems, settings, progress=False)
    assert torch.allclose(batch[1].image, one.image, atol=1e-3)
    assert not torch.allclose(batch[0].image, one.image, atol=1e-2)


def test_keep_mask_holds_pixels_fixed(pathway):
    init = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    keep = torch.ones(1, SIZE, SIZE)
    keep[:, 30:60, 30:60] = 0
    sol = solve(pathway, [Problem(class_terms(1), init=init, keep=keep)], quick(jitter=2), progress=False)[0]
    held = keep.expand(3, -1, -1).bool()
    assert torch.equal(sol.image[held], init[held])
    assert not torch.equal(sol.image[~held], init[~held])


def test_closed_activity_quiets_the_units_a_code_closes(pathway):
    """A mask only gates; with ClosedActivity the engine also drives the closed units down."""
    init = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        m5 = (pathway.trunk(init[None])[0] > 0).float()
    m5[:, :3] = 0.0  # close the top half of pool5 too
    problems = [Problem(class_terms(2), gates={"pool5": m5}, init=init),
                Problem(class_terms(2) + [ClosedActivity({"pool5": 50.0})], gates={"pool5": m5}, init=init)]
    gated, forbidden = solve(pathway, problems, quick(iterations=25), progress=False)

    def closed(image):
        with torch.no_grad():
            return float(closed_activity(pathway.trunk(image[None]), m5)[0])

    assert closed(forbidden.image) < 0.5 * closed(gated.image)
    assert forbidden.numbers["score"] > 0.5 * gated.numbers["score"]  # still the class: the open units carry it


def test_a_problem_keeps_the_first_report_of_each_number_in_its_terms_order(pathway):
    target = pathway.trunk(torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4)))[0]
    problems = [Problem([ClassScore(2), FeatureMatch(target), ClassScore(1)], seed=0),
                Problem([ClassScore(1), 2.0 * ClassScore(3)], seed=1)]
    solutions = solve(pathway, problems, quick(iterations=2), progress=False)
    with torch.no_grad():
        fc8 = pathway(torch.stack([s.image for s in solutions])).fc8
    assert [s.numbers["score"] for s in solutions] == pytest.approx([float(fc8[0, 2]), float(fc8[1, 1])], rel=1e-5)
    assert set(solutions[0].numbers) == {"score", "prob", "feature_error"} and "feature_error" not in solutions[1].numbers


def test_gates_are_per_problem_and_named_by_level(pathway):
    """A problem's fc7 gate reaches its own picture only; a level the pathway lacks is refused."""
    settings = quick(iterations=3)
    alone = solve(pathway, [Problem(class_terms(1), seed=2)], settings, progress=False)[0]
    closed = solve(pathway, [Problem(class_terms(1), gates={"fc7": torch.zeros(32)}, seed=1),
                             Problem(class_terms(1), seed=2)], settings, progress=False)
    assert torch.allclose(closed[1].image, alone.image, atol=1e-4)
    assert closed[0].numbers["score"] == pytest.approx(float(pathway.fc8.bias[1]), abs=1e-5)  # nothing reaches fc8
    with pytest.raises(ValueError, match="a gate at fc8, but this pathway gates pool5, fc6, fc7"):
        solve(pathway, [Problem(class_terms(1), gates={"fc8": torch.ones(4)})], settings, progress=False)


def test_patch_prior_pulls_patches_toward_the_database(pathway):
    from generator.engine.patch_database import PatchDatabase, normalized_patches

    generator = torch.Generator().manual_seed(6)
    smooth = torch.nn.functional.interpolate(torch.rand(4, 3, 12, 12, generator=generator), size=SIZE, mode="bilinear")
    database = PatchDatabase.from_images(smooth, patch=5, stride=4, max_patches=2000)
    problems = [Problem(class_terms(1), seed=0), Problem(class_terms(1) + [50.0 * PatchPrior(database, rematch_every=5)], seed=0)]
    plain, with_prior = solve(pathway, problems, quick(iterations=20), progress=False)

    def prior_distance(image):
        patches = normalized_patches(image[None], 5, 4)[0]
        return (patches - database.match(patches)).pow(2).mean().item()

    assert prior_distance(with_prior.image) < 0.7 * prior_distance(plain.image)


def test_optimizer_and_schedule_are_injectable(pathway):
    seen = []

    def sgd(params, lr):
        seen.append(lr)
        return torch.optim.SGD(params, lr=lr)

    problem = Problem(class_terms(1), seed=0)
    solution = solve(pathway, [problem], quick(iterations=5), optimizer=sgd, schedule=lambda step: 0.5, progress=False)[0]
    adam = solve(pathway, [problem], quick(iterations=5), progress=False)[0]
    assert seen == [0.5] and not torch.allclose(solution.image, adam.image)


def test_a_problem_without_terms_is_refused(pathway):
    with pytest.raises(ValueError, match="at least one term"):
        solve(pathway, [Problem([])], quick(), progress=False)


def test_settings_reject_unknown_fields_and_bad_values():
    assert settings_from({"iterations": 5}, lr=0.1) == Settings(iterations=5, lr=0.1)
    with pytest.raises(SettingsError, match="itertions"):
        settings_from({"itertions": 5})
    for bad in ({"iterations": 0}, {"iterations": -5}, {"iterations": "lots"}, {"lr": float("nan")},
                {"jitter_seed": 10**23}, {"schedule": "fast"}, {"extra": {}}, {"tv": -1.0}):
        with pytest.raises(SettingsError):
            settings_from(bad)


def test_real_model_reaches_its_class(shared_pathway):
    settings = settings_from(iterations=12)
    sol = solve(shared_pathway, [Problem(class_terms(4, 30.0, 300.0), seed=0)], settings, progress=False)[0]
    assert sol.energy[-1] < sol.energy[0] and sol.numbers["prob"] > 0.5


def test_the_engine_knows_no_method():
    from pathlib import Path

    for module in Path(solve_module.__file__).parent.glob("*.py"):
        source = module.read_text().lower()
        for name in ("generator.methods", "hierarchy", "topic", "ensemble", "location", "classviz", "completion",
                     "m5", "m6", "m7", "closed_activity="):
            assert name not in source, f"{module.name} mentions {name}"


def input_sides(pathway, problems, settings) -> list[int]:
    """The side of the image the net saw at each grad-enabled forward of a solve."""
    sides: list[int] = []
    handle = pathway.register_forward_pre_hook(
        lambda module, inputs: sides.append(inputs[0].shape[-1]) if torch.is_grad_enabled() else None)
    try:
        solve(pathway, problems, settings, progress=False)
    finally:
        handle.remove()
    return sides


@pytest.fixture(scope="module")
def pooled():
    """A globally pooled net (random-init resnet18 at 96 px), which takes any input size."""
    from generator.catalog import ModelSpec
    from generator.nets.models import load_pathway

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return load_pathway(ModelSpec("resnet18", num_classes=4, input_size=SIZE))


def test_coarse_steps_show_the_net_a_smaller_image_first(pooled, pathway):
    from generator.engine.meter import IterationCounter

    settings = quick(iterations=10, coarse_size=64, coarse_until=0.6)
    counter = IterationCounter(pooled)
    assert input_sides(pooled, [Problem(class_terms(1), seed=0)], settings) == [64] * 6 + [SIZE] * 4
    counter.close()
    # 10 image-iterations, 6 of them of (64/96)^2 = 4/9 of a full-size image's pixels
    assert counter.images == 10 and counter.full_size == pytest.approx(6 * 4 / 9 + 4)
    # a map to match needs the full input's map size: no coarse steps
    target = pooled.trunk(torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5)))[0]
    problems = [Problem(class_terms(1), seed=0), Problem([FeatureMatch(target)], seed=1)]
    assert input_sides(pooled, problems, settings) == [SIZE] * 10
    # a direction in a map (a unit at one position) is the map's size; one in a vector is not
    at_a_position = torch.zeros(pooled.pool5_shape).flatten()
    at_a_position[0] = 1.0
    fc7 = pooled(torch.zeros(1, 3, SIZE, SIZE)).fc7[0]
    assert input_sides(pooled, [Problem([Direction(at_a_position, "pool5")], seed=0)], settings) == [SIZE] * 10
    assert input_sides(pooled, [Problem([Direction(torch.ones_like(fc7), "fc7")], seed=0)], settings) == [64] * 6 + [SIZE] * 4
    # an fc head on a flattened pool5 takes only its own size: the engine keeps to it
    assert input_sides(pathway, [Problem(class_terms(1), seed=0)], settings) == [SIZE] * 10
    with pytest.raises(SettingsError):
        Settings(coarse_until=1.5)


def pool5_gates_seen(pooled, gate: torch.Tensor, settings: Settings) -> list[torch.Tensor]:
    """The pool5 gate the head gets at each step of one gated problem's solve (and its final evaluation)."""
    seen: list[torch.Tensor] = []
    original = pooled.head

    def head(pool5, gates=None, context=None):
        if gates:  # not the engine's own probe of a smaller size
            seen.append(gates["pool5"][0].clone())
        return original(pool5, gates, context)

    pooled.head = head
    try:
        solve(pooled, [Problem(class_terms(1), gates={"pool5": gate}, seed=0)], settings, progress=False)
    finally:
        del pooled.head
    return seen


def test_a_gated_map_is_gated_at_the_coarse_size_too(pooled):
    gate = window(pooled, 0, 0, 2)  # the top-left 2x2 of a 3x3 map: at 64 px the map is 2x2
    seen = pool5_gates_seen(pooled, gate, quick(iterations=10, coarse_size=64, coarse_until=0.6))
    assert len(seen) == 11  # 10 steps and the final evaluation
    assert seen[0].shape[1:] == (2, 2) and torch.allclose(seen[0][0], torch.tensor([[1.0, 0.5], [0.5, 0.25]]))
    assert all(torch.equal(g, gate) for g in seen[6:])  # the full-size steps and the final images: the gate itself


def test_mid_steps_follow_the_coarse_ones_at_their_own_size(pooled):
    from generator.engine.meter import IterationCounter
    from generator.engine.settings import identity

    settings = quick(iterations=10, coarse_size=48, coarse_until=0.4, mid_size=64, mid_until=0.7)
    counter = IterationCounter(pooled)
    assert input_sides(pooled, [Problem(class_terms(1), seed=0)], settings) == [48] * 4 + [64] * 3 + [SIZE] * 3
    counter.close()
    assert counter.full_size == pytest.approx(4 * (48 / SIZE) ** 2 + 3 * (64 / SIZE) ** 2 + 3)
    # a mid stage alone starts at the first step; a size not below the input's is no stage
    assert input_sides(pooled, [Problem(class_terms(1), seed=0)], quick(iterations=4, mid_size=64, mid_until=0.5)) \
        == [64] * 2 + [SIZE] * 2
    assert input_sides(pooled, [Problem(class_terms(1), seed=0)], quick(iterations=4, mid_size=SIZE, mid_until=0.5)) \
        == [SIZE] * 4
    # a gated map's gate is averaged down to the mid size's map (a 3x3 window map at 96 px is 2x2 at 64)
    gate = window(pooled, 0, 0, 2)
    seen = pool5_gates_seen(pooled, gate, quick(iterations=4, mid_size=64, mid_until=0.5))
    assert seen[0].shape[1:] == (2, 2) and torch.equal(seen[2], gate)
    # mid steps that would end before the coarse ones do are none
    early = quick(iterations=10, coarse_size=48, coarse_until=0.6, mid_size=64, mid_until=0.5)
    assert input_sides(pooled, [Problem(class_terms(1), seed=0)], early) == [48] * 6 + [SIZE] * 4
    with pytest.raises(SettingsError):
        Settings(mid_until=1.5)
    # unset, the stage is not in a picture's key: nothing built before it goes stale
    assert "mid_size" not in identity(Settings()) and identity(Settings(mid_size=160, mid_until=0.8))["mid_size"] == 160


def test_coarse_steps_still_reach_the_class(pooled):
    full, coarse = (solve(pooled, [Problem(class_terms(1), seed=0)], quick(iterations=30, **extra), progress=False)[0]
                    for extra in ({}, {"coarse_size": 64, "coarse_until": 0.5}))
    start = solve(pooled, [Problem(class_terms(1), seed=0)], quick(iterations=1, lr=1e-9), progress=False)[0]
    gained = full.numbers["score"] - start.numbers["score"]
    # on this random net the coarse steps' gain carries over to the full size only in part (0.33 of the
    # full-size solve's gain measured); on the shared mobilenet-v2 it is a gain: docs/speed.md#coarse-steps
    assert coarse.numbers["score"] - start.numbers["score"] > 0.2 * gained > 0


def test_the_optimizer_is_a_setting(pathway):
    adam_run, nadam_run = (solve(pathway, [Problem(class_terms(1), seed=0)], quick(optimizer=name), progress=False)[0]
                           for name in ("adam", "nadam"))
    assert nadam_run.energy[-1] < nadam_run.energy[0]
    assert not torch.equal(adam_run.image, nadam_run.image)  # NAdam's Nesterov step is another path
    with pytest.raises(SettingsError):
        Settings(optimizer="sgd")



def test_detail_steps_move_the_raw_pixels_after_the_fourier_steps(pooled):
    from generator.engine.meter import IterationCounter
    from generator.methods.metrics import high_frequency_share

    base = {"param": "fourier", "iterations": 12, "lr": 0.02, "coarse_size": 64, "coarse_until": 0.5}
    problems = [Problem(class_terms(1, tv=0.0), seed=0), Problem(class_terms(2, tv=0.0), seed=1)]
    start = torch.stack([solve_module.initial_image(p, SIZE, 0.1) for p in problems])
    fourier = solve(pooled, problems, quick(**base), progress=False)
    counter = IterationCounter(pooled)
    sides = input_sides(pooled, problems, quick(**base, detail_steps=8, detail_lr=0.02))
    counter.close()
    assert sides == [64] * 6 + [SIZE] * 14  # the detail steps see the full size
    assert counter.images == 2 * 20
    detailed = solve(pooled, problems, quick(**base, detail_steps=8, detail_lr=0.02), progress=False)
    for before, after in zip(fourier, detailed):
        assert len(after.energy) == 20 and after.energy[:12] == pytest.approx(before.energy, rel=1e-5)
        assert after.energy[-1] < before.energy[-1]  # the pixel steps go on lowering the energy
    # what the Fourier steps changed is smooth; what the pixel steps changed has the fine detail
    coarse_change = torch.stack([s.image for s in fourier]) - start
    fine_change = torch.stack([a.image - b.image for a, b in zip(detailed, fourier)])
    assert (high_frequency_share(fine_change) > 2 * high_frequency_share(coarse_change)).all()
    with pytest.raises(SettingsError):
        Settings(detail_steps=-1)
    with pytest.raises(SettingsError):
        Settings(detail_lr=0.0)


def test_bf16_autocast_runs_the_net_in_bfloat16_and_the_terms_in_float32(pathway, monkeypatch):
    """`autocast: bf16`: the net's forward during the steps in bfloat16, what the terms read (its
    outputs and hooked layers) in float32, the final numbers from a float32 pass."""
    seen: list[tuple] = []
    real = terms_module._FeatureMatchGroup.__call__
    monkeypatch.setattr(terms_module._FeatureMatchGroup, "__call__",
                        lambda self, step: seen.append((step.layer(self.name).dtype, torch.is_autocast_enabled("cpu")))
                        or real(self, step))
    with torch.no_grad():
        target = pathway.features[:4](pathway.normalize(torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))))[0]
    problems = [Problem(class_terms(1), seed=0), Problem([FeatureMatch(target, "features.3"), 5.0 * TV()], seed=1)]
    plain = solve(pathway, problems, quick(iterations=20), progress=False)
    assert {dtype for dtype, _ in seen} == {torch.float32}
    seen.clear()
    halved = solve(pathway, problems, quick(iterations=20, autocast="bf16"), progress=False)
    assert seen and {dtype for dtype, _ in seen} == {torch.float32} and not any(inside for _, inside in seen)
    for a, b in zip(plain, halved):
        assert b.image.dtype == torch.float32 and b.energy[-1] < b.energy[0]
        assert not torch.equal(a.image, b.image)  # the net did run in bfloat16
        assert a.energy[0] - b.energy[-1] > 0.5 * (a.energy[0] - a.energy[-1])  # and got as far, near enough
    with torch.no_grad():
        assert halved[0].numbers["score"] == pytest.approx(float(pathway(halved[0].image[None]).fc8[0, 1]), rel=1e-5)
    with pytest.raises(SettingsError, match="autocast"):
        Settings(autocast="fp16")
