"""The diversity term (Lucid's): each problem's mean style similarity to the rest of its set,
lowered by solve, and only within a set."""
import torch

from generator.engine.settings import Settings
from generator.engine.solve import Problem, solve
from generator.engine.terms import TV, ClassScore, Diversity, Step, style_vectors
from generator.nets.pathway import Activations


def step_with_pool5(pool5: torch.Tensor) -> Step:
    count = len(pool5)
    acts = Activations(pool5=pool5, fc6=None, fc7=torch.zeros(count, 1), fc8=torch.zeros(count, 1))
    return Step(0, 1, torch.zeros(count, 3, 8, 8), acts, {})


def similarities(terms, pool5):
    group = terms[0].group(terms, None, _Device())
    return group(step_with_pool5(pool5))


class _Device:
    mean = torch.zeros(3)


def test_style_is_the_gram_of_a_map_and_the_values_of_a_vector():
    maps = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    shuffled = maps.flatten(2)[:, :, torch.randperm(16)].view(2, 3, 4, 4)
    assert torch.allclose(style_vectors(maps), style_vectors(shuffled), atol=1e-6)  # where things are is not style
    vectors = torch.tensor([[3.0, 4.0]])
    assert torch.allclose(style_vectors(vectors), torch.tensor([[0.6, 0.8]]))


def test_each_problem_pays_its_mean_similarity_to_the_others_of_its_set():
    base = torch.rand(1, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    other = torch.rand(1, 4, 3, 3, generator=torch.Generator().manual_seed(2))
    pool5 = torch.cat([base, base * 2, other])  # the first two have one style
    values = similarities([Diversity("pool5", weight=2.0)] * 3, pool5)
    cos = float(style_vectors(base) @ style_vectors(other).T)
    assert torch.allclose(values, 2.0 * torch.tensor([(1 + cos) / 2, (1 + cos) / 2, cos]), atol=1e-5)
    alone = similarities([Diversity("pool5")], base)
    assert float(alone) == 0.0  # a set of one costs nothing


def test_solve_sets_a_set_apart_and_leaves_other_sets_alone(tiny_alexnet):
    pathway = tiny_alexnet(size=64)
    settings = Settings(iterations=30, lr=0.05, param="pixels", jitter=0)

    def pictures(weight: float, among: list[str]) -> torch.Tensor:
        # four problems of one class from nearby starts (noise of std 0.1 around grey)
        problems = [Problem([ClassScore(0), 0.01 * TV(), Diversity("pool5", among=a, weight=weight)], seed=i)
                    for i, a in enumerate(among)]
        return torch.stack([s.image for s in solve(pathway, problems, settings, progress=False)])

    def similarity(images: torch.Tensor) -> float:
        with torch.no_grad():
            vectors = style_vectors(pathway(images).pool5)
        cos = vectors @ vectors.T
        return float((cos.sum() - cos.diagonal().sum()) / (len(cos) * (len(cos) - 1)))

    sets = ["a", "a", "b", "c"]
    without = pictures(0.0, sets)
    pushed = pictures(5.0, sets)
    assert similarity(pushed[:2]) < similarity(without[:2]) - 0.05  # the set of two is set apart
    # a set of one has no one to differ from: its picture is the one solved without the term
    assert torch.allclose(pushed[2], without[2], atol=1e-5)
    assert torch.allclose(pushed[3], without[3], atol=1e-5)


def test_a_centre_leaves_out_what_the_set_shares():
    shared, own = torch.tensor([5.0, 5.0, 0.0, 0.0]), torch.eye(4)[2:]
    vectors = shared + own  # two vectors, alike through what they share, orthogonal in what they do not
    assert float(similarities([Diversity("pool5")] * 2, vectors)[0]) > 0.9
    centred = similarities([Diversity("pool5", centre=shared)] * 2, vectors)
    assert torch.allclose(centred, torch.zeros(2), atol=1e-6)
