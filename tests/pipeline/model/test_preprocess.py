import torch

from pipeline.model.preprocess import PIXEL_SCALE, normalise, to_input

MEAN = (10.0, 20.0, 30.0)


def test_normalise_subtracts_the_mean_per_channel_and_scales():
    x = torch.tensor(MEAN).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    assert torch.equal(normalise(x, MEAN), torch.zeros(2, 3, 4, 4))
    assert normalise(x + PIXEL_SCALE, MEAN).eq(1).all()


def test_evaluation_input_is_the_centre_crop_without_mirroring():
    images = torch.arange(2 * 6 * 6 * 3, dtype=torch.uint8).view(2, 6, 6, 3)
    x = to_input(images, 4, MEAN, train=False)
    want = normalise(images[:, 1:5, 1:5].permute(0, 3, 1, 2).float(), MEAN)
    assert x.shape == (2, 3, 4, 4) and torch.equal(x, want)


def test_training_input_is_a_seeded_crop_and_mirror():
    images = torch.randint(0, 255, (8, 6, 6, 3), dtype=torch.uint8)
    a = to_input(images, 4, MEAN, True, torch.Generator().manual_seed(1))
    b = to_input(images, 4, MEAN, True, torch.Generator().manual_seed(1))
    c = to_input(images, 4, MEAN, True, torch.Generator().manual_seed(2))
    assert a.shape == (8, 3, 4, 4) and torch.equal(a, b) and not torch.equal(a, c)
