import torch

from generator.methods.metrics import colour_distance, colour_distance_per_photo


def flat(rgb: tuple[float, float, float], noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """A 3x16x16 photo of one colour with a little pixel noise."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.tensor(rgb).view(3, 1, 1) + noise * torch.randn(3, 16, 16, generator=generator)).clamp(0, 1)


def test_per_photo_colour_distance_accepts_one_photos_palette_that_the_pooled_one_penalizes():
    # a class of green and blue photos; a picture with exactly the palette of one green photo
    photos = torch.stack([flat((0.2, 0.7, 0.2), seed=1), flat((0.2, 0.7, 0.2), seed=2), flat((0.1, 0.2, 0.8), seed=3)])
    picture = photos[0]
    grey = torch.full((3, 16, 16), 0.5)
    # pooled over the photos, the green picture lacks the blue photo's colour: far from 0
    assert colour_distance(picture, photos) > 0.2
    # against a typical single photo it is (nearly) one of them, and nearer than grey
    assert colour_distance_per_photo(picture, photos) < 0.05
    assert colour_distance_per_photo(grey, photos) > 5 * colour_distance_per_photo(picture, photos)
