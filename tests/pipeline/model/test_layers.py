import pytest
import torch

from pipeline.model.layers import TABLE1, configure_trainable, parse_layers
from pipeline.model.nets import get_model


def test_table1_settings_parse_and_always_train_the_background():
    assert parse_layers("bg") == {"bg"}
    assert parse_layers("all+fcB") == {"bg", "conv", "fc6", "fc7", "fcB"}
    assert all("bg" in parse_layers(s) for s in TABLE1)
    with pytest.raises(ValueError, match="fc9"):
        parse_layers("fc6+fc9")


def test_untrained_rows_stay_bit_for_bit_under_sgd_with_weight_decay():
    torch.manual_seed(0)
    model = get_model("smallcnn", 6)
    before = model.output.weight.detach().clone(), model.output.bias.detach().clone()
    trained = [0, 1, 2, 6]  # set B = rows 0-2, background = row 6; rows 3-5 are set A
    freezer = configure_trainable(model, parse_layers("fc7+fcB"), trained)
    assert not any(p.requires_grad for p in model.features.parameters())
    assert not model.fc6.weight.requires_grad and model.fc7.weight.requires_grad
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9, weight_decay=5e-4
    )
    for _ in range(3):
        loss = model(torch.randn(8, 3, 32, 32)).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        freezer.zero_grads()
        opt.step()
        freezer.restore()
    w, b = model.output.weight.detach(), model.output.bias.detach()
    assert torch.equal(w[3:6], before[0][3:6]) and torch.equal(b[3:6], before[1][3:6])
    assert not torch.equal(w[:3], before[0][:3]) and not torch.equal(w[6], before[0][6])
