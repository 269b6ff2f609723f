"""Energy terms: their values on simple inputs, their written-out gradients against autograd,
and their grouping across a batch."""
import pytest
import torch

from generator.engine.terms import (
    L2,
    TV,
    ClassScore,
    ClosedActivity,
    FeatureMatch,
    Step,
    centred_square,
    closed_activity,
    feature_error,
    feature_inversion,
    total_variation,
)
from generator.nets.pathway import Activations


def step_with(images=None, fc8=None, pool5=None, ungated=None, gates=None) -> Step:
    fc8 = torch.zeros(2, 3) if fc8 is None else fc8
    acts = Activations(pool5=pool5, fc6=None, fc7=None, fc8=fc8, ungated=ungated or {})
    return Step(0, 1, images if images is not None else torch.zeros(fc8.shape[0], 3, 4, 4), acts, {}, gates or {})


class FakePathway:
    num_classes = 3
    mean = torch.zeros(1, 3, 1, 1)


def evaluate(terms, step, rows=None, pathway=None):
    return terms[0].group(terms, rows, pathway or FakePathway())(step)


def report(terms, step, rows=None):
    return terms[0].group(terms, rows, FakePathway()).report(step)


def test_class_score_is_minus_the_target_logit_per_sample():
    fc8 = torch.tensor([[1.0, 5.0, -2.0], [0.5, 0.0, 3.0]])
    assert torch.equal(evaluate([ClassScore(1), ClassScore(2)], step_with(fc8=fc8)), torch.tensor([-5.0, -3.0]))
    assert torch.equal(evaluate([2.0 * ClassScore(1), ClassScore(2)], step_with(fc8=fc8)), torch.tensor([-10.0, -3.0]))


def test_class_score_reports_the_target_logit_and_its_probability():
    fc8 = torch.tensor([[1.0, 5.0, -2.0], [0.5, 0.0, 3.0]])
    numbers = report([2.0 * ClassScore(1), ClassScore(2)], step_with(fc8=fc8))
    assert torch.equal(numbers["score"], torch.tensor([5.0, 3.0]))  # the logit, whatever the weight
    assert torch.allclose(numbers["prob"], torch.stack([fc8[0].softmax(0)[1], fc8[1].softmax(0)[2]]))
    assert report([L2(), L2()], step_with()) == {}  # a regularizer reports nothing


def test_class_score_rejects_a_target_the_model_lacks():
    with pytest.raises(ValueError, match="not in"):
        evaluate([ClassScore(7)], step_with())


def test_feature_inversion_is_normalized_squared_error():
    target = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(feature_inversion(target, target), torch.zeros(2))
    assert torch.allclose(feature_inversion(torch.zeros_like(target), target), torch.ones(2))
    assert torch.allclose(feature_error(2 * target, target), torch.ones(2))
    terms = [FeatureMatch(target[0]), 3.0 * FeatureMatch(target[1])]
    value = evaluate(terms, step_with(pool5=torch.zeros_like(target), fc8=torch.zeros(2, 3)))
    assert torch.allclose(value, torch.tensor([1.0, 3.0]))
    errors = report(terms, step_with(pool5=torch.stack([target[0], 2 * target[1]]), fc8=torch.zeros(2, 3)))
    assert torch.allclose(errors["feature_error"], torch.tensor([0.0, 1.0]))  # the unweighted relative error


def test_feature_match_on_a_named_module_reads_the_captured_layer():
    target = torch.ones(2, 5)
    step = step_with()
    step.layers["features.3"] = torch.zeros(2, 5)
    assert torch.allclose(evaluate([FeatureMatch(target[0], "features.3"), FeatureMatch(target[1], "features.3")], step),
                          torch.ones(2))
    assert FeatureMatch(target[0], "features.3").key() != FeatureMatch(target[0]).key()


def test_regularizers_prefer_smooth_mid_grey_images():
    noise = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    grey = torch.full((1, 3, 16, 16), 0.5)
    assert total_variation(grey).item() == 0.0 and total_variation(noise).item() > 0.1
    assert centred_square(grey).item() == 0.0 and centred_square(noise).item() > 0.0
    both = torch.cat([grey, noise])
    assert torch.allclose(evaluate([3.0 * TV(), 3.0 * TV()], step_with(images=both)), 3 * total_variation(both))
    # different weights in one group: one weight per row
    value = evaluate([1.0 * L2(), 5.0 * L2()], step_with(images=torch.cat([noise, noise])))
    assert torch.allclose(value[1], 5 * value[0])


def test_squared_tv_gradient_is_autograds_of_the_plain_formula():
    images = torch.rand(3, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    dx = images[..., :-1, 1:] - images[..., :-1, :-1]
    dy = images[..., 1:, :-1] - images[..., :-1, :-1]
    assert torch.allclose(total_variation(images), (dx.pow(2) + dy.pow(2)).flatten(1).mean(1))
    assert torch.autograd.gradcheck(total_variation, (images,))


def test_l2_gradient_is_autograds_of_the_plain_formula():
    images = torch.rand(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    centre = (0.4, 0.5, 0.6)
    expected = (images - torch.tensor(centre, dtype=torch.float64).view(1, 3, 1, 1)).pow(2).flatten(1).mean(1)
    assert torch.allclose(centred_square(images, centre), expected)
    assert torch.autograd.gradcheck(lambda x: centred_square(x, centre), (images,))
    assert torch.autograd.gradcheck(lambda x: centred_square(x, 0.5), (images,))


def test_closed_activity_weighs_each_gated_levels_activity_on_its_closed_units():
    pool5 = torch.tensor([[[[1.0, 3.0]]], [[[2.0, 2.0]]]])  # (2, 1, 1, 2)
    fc7 = torch.tensor([[4.0, 8.0], [1.0, 1.0]])
    gates = {"pool5": torch.tensor([[[[1.0, 0.0]]], [[[1.0, 1.0]]]]), "fc7": torch.tensor([[0.0, 1.0], [0.0, 0.0]])}
    step = step_with(ungated={"pool5": pool5, "fc7": fc7}, gates=gates)
    # pool5: the closed unit's mean over the level (3 / 2, nothing closed); fc7: (4 / 2, 2 / 2)
    assert torch.allclose(closed_activity(pool5, gates["pool5"]), torch.tensor([1.5, 0.0]))
    value = evaluate([ClosedActivity({"pool5": 1.0}), ClosedActivity({"pool5": 2.0, "fc7": 10.0})], step)
    assert torch.allclose(value, torch.tensor([1.5, 2 * 0.0 + 10 * 1.0]))
    # a level no problem of the batch gates costs nothing; each group row reads its own problem's rows
    only_fc7 = step_with(ungated={"fc7": fc7}, gates={"fc7": gates["fc7"]})
    assert torch.allclose(evaluate([ClosedActivity({"pool5": 5.0, "fc7": 1.0})], only_fc7, rows=torch.tensor([1])),
                          torch.tensor([1.0]))


def test_terms_compose_with_plus_and_times():
    energy = ClassScore(2) + 30 * L2() + TV()
    assert [type(t) for t in energy] == [ClassScore, L2, TV]
    assert energy[1].weight == 30.0 and (energy + 0.5 * TV())[-1].weight == 0.5


def test_alpha_norm_bounds_the_extremes_and_barely_touches_the_middle():
    from generator.engine.terms import AlphaNorm

    middle, extreme = torch.full((1, 3, 4, 4), 0.6), torch.ones(1, 3, 4, 4)
    value = evaluate([AlphaNorm(), 2.0 * AlphaNorm()], step_with(images=torch.cat([middle, extreme]), fc8=torch.zeros(2, 3)))
    assert value[0] < 1e-5 and torch.isclose(value[1], torch.tensor(2 * 0.5**6))
    assert AlphaNorm(alpha=2.0).key() != AlphaNorm().key()
    images = torch.rand(2, 3, 4, 4, requires_grad=True)
    evaluate([AlphaNorm(alpha=2.0, centre=0.5)] * 2, step_with(images=images)).sum().backward()
    assert torch.allclose(images.grad, 2 * (images - 0.5).detach() / 48)  # the L2 gradient at alpha 2


def test_direction_rewards_the_projection_on_a_unit_direction():
    from generator.engine.terms import Direction

    fc7 = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    step = step_with()
    step.acts.fc7 = fc7
    value = evaluate([Direction(torch.tensor([0.0, 2.0])), 2.0 * Direction(torch.tensor([1.0, 0.0]))], step)
    assert torch.allclose(value, torch.tensor([-4.0, -2.0]))
