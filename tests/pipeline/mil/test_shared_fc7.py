"""The fc7 option of ``lsda mil`` on a tiny network."""

import numpy as np
import torch

from pipeline.mil.shared_fc7 import fc6_activations, refit_fc7
from pipeline.model.nets import smallcnn
from pipeline.model.preprocess import fc7_features

MEAN = (120.0, 120.0, 120.0)


def _problem(dim: int, n: int = 96, seed: int = 0):
    """Activations around 3 centres, labelled with rows 0, 2 and the background, 4."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(3, dim, generator=g)
    label = torch.randint(3, (n,), generator=g)
    x = torch.relu(centres[label] + 0.1 * torch.randn(n, dim, generator=g))
    return x, torch.tensor([0, 2, 4])[label]


def test_fc6_activations_are_fc7s_input():
    torch.manual_seed(0)
    model = smallcnn(4)
    windows = np.random.default_rng(1).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    acts = fc6_activations(model, windows, MEAN)
    assert acts.shape == (5, model.fc6.out_features) and (acts >= 0).all()
    assert torch.allclose(
        torch.relu(model.fc7(acts)), fc7_features(model, windows, MEAN), atol=1e-5
    )


def test_the_refit_moves_fc7_and_the_fitted_rows_only_and_lowers_the_loss():
    torch.manual_seed(0)
    model = smallcnn(4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _problem(model.fc6.out_features)
    losses = refit_fc7(model, x, y, [0, 2, 4], 4, steps=200, lr=1e-3, fg=16, bg=16, seed=0)
    after = model.state_dict()
    assert all(
        torch.equal(before[k], after[k]) for k in before if k.startswith(("features", "fc6"))
    )
    assert not torch.equal(before["fc7.weight"], after["fc7.weight"])
    for key in ("output.weight", "output.bias"):  # rows 1 and 3 are outside the softmax
        assert torch.equal(before[key][[1, 3]], after[key][[1, 3]])
        assert not torch.equal(before[key][[0, 2, 4]], after[key][[0, 2, 4]])
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])


def test_the_same_seed_gives_the_same_weights_and_leaves_the_callers_generator():
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = smallcnn(4)
        x, y = _problem(model.fc6.out_features)
        torch.manual_seed(123)
        refit_fc7(model, x, y, [0, 2, 4], 4, steps=20, lr=1e-3, fg=8, bg=8, seed=5)
        drawn = torch.rand(1)
        torch.manual_seed(123)
        assert torch.equal(drawn, torch.rand(1))  # as if the refit had drawn nothing
        weights.append(model.fc7.weight.clone())
    assert torch.equal(*weights)
