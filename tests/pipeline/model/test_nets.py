import pytest
import torch
from torchvision.models import alexnet as tv_alexnet

from pipeline.model.checkpoints import load_model, save_model
from pipeline.model.nets import CategoryMap, get_model, load_imagenet_weights


def test_output_rows_are_categories_then_background():
    model = get_model("smallcnn", 5)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 6)
    cmap = CategoryMap(("n1", "n2", "n3", "n4", "n5"))
    assert cmap.background_row == 5 and cmap.rows(["n4", "n1"]) == [3, 0]
    assert cmap.row_of("__background__") == 5


def test_alexnet_takes_torchvision_imagenet_weights_with_a_new_output_layer():
    model = get_model("alexnet", 3)
    state = tv_alexnet(weights=None).state_dict()
    loaded = load_imagenet_weights(model, state)
    assert "fc6.weight" in loaded and "fc7.weight" in loaded
    assert torch.equal(model.fc6.weight, state["classifier.1.weight"])
    assert model(torch.zeros(1, 3, 227, 227)).shape == (1, 4)


def test_weights_of_the_wrong_shape_are_refused():
    state = tv_alexnet(weights=None).state_dict()
    state["classifier.1.weight"] = torch.zeros(10, 10)
    with pytest.raises(ValueError, match="fc6.weight"):
        load_imagenet_weights(get_model("alexnet", 3), state)


def test_checkpoint_round_trip_keeps_the_category_map(tmp_path):
    model = get_model("smallcnn", 2)
    url = str(tmp_path / "m.pt")
    save_model(url, model, "smallcnn", CategoryMap(("a", "b")), kind="cls")
    again, cmap, payload = load_model(url)
    assert cmap.wnids == ("a", "b") and payload["kind"] == "cls"
    before, after = model.state_dict(), again.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
