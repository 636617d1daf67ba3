import torch

from pipeline.adapt.rows import adapt, adapt_rows, apply_rows, nearest, with_bias


def _rows():
    """Classifier rows (bias last) of 2 categories with boxes (B) and 2 without (A)."""
    w_cls = torch.tensor([
        [1.0, 0.0, 0.0],   # B0
        [0.0, 1.0, 0.0],   # B1
        [0.9, 0.1, 0.0],   # A0: nearest B0
        [0.1, 0.9, 0.0],   # A1: nearest B1
    ])  # fmt: skip
    w_det = w_cls.clone()
    w_det[0] += torch.tensor([0.5, 0.0, -1.0])  # offset of B0
    w_det[1] += torch.tensor([0.0, 0.3, 2.0])  # offset of B1
    return w_cls, w_det


def test_k1_takes_the_nearest_offset():
    w_cls, w_det = _rows()
    out = adapt_rows(w_cls, w_det, a_rows=[2, 3], b_rows=[0, 1], k=1)
    assert out.neighbours.tolist() == [[0], [1]]
    torch.testing.assert_close(out.rows[0], w_cls[2] + torch.tensor([0.5, 0.0, -1.0]))
    torch.testing.assert_close(out.rows[1], w_cls[3] + torch.tensor([0.0, 0.3, 2.0]))


def test_neighbours_are_chosen_by_the_weights_alone_and_the_offset_moves_the_bias_too():
    w_cls, w_det = _rows()
    w_cls[2, 2] = w_cls[1, 2] = 50.0  # A0's bias as B1's: with it, B1 would be nearest
    w_det[1, 2] = 52.0
    out = adapt_rows(w_cls, w_det, a_rows=[2], b_rows=[0, 1], k=1)
    assert out.neighbours.tolist() == [[0]]  # the paper's metric: fc7 weights, l2-normalised
    torch.testing.assert_close(out.rows[0], w_cls[2] + torch.tensor([0.5, 0.0, -1.0]))


def test_k_equal_to_b_is_the_global_average_offset():
    w_cls, w_det = _rows()
    out = adapt_rows(w_cls, w_det, a_rows=[2, 3], b_rows=[0, 1], k=2)
    mean = torch.tensor([0.25, 0.15, 0.5])
    torch.testing.assert_close(out.rows, w_cls[2:] + mean)
    assert adapt_rows(w_cls, w_det, [2, 3], [0, 1], k=50).rows.allclose(out.rows)


def test_k0_leaves_the_rows_alone():
    w_cls, w_det = _rows()
    assert torch.equal(adapt_rows(w_cls, w_det, [2, 3], [0, 1], k=0).rows, w_cls[2:])


def test_neighbours_use_normalised_rows_and_ties_go_to_the_earlier_row():
    keys = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 0.0]])  # rows 0 and 2: same direction
    order, dist = nearest(torch.tensor([[1.0, 0.1]]), keys, k=2)
    assert order.tolist() == [[0, 2]] and dist[0, 0] == dist[0, 1]


def test_chunking_gives_the_same_rows():
    g = torch.Generator().manual_seed(0)
    w_cls, w_det = torch.randn(60, 9, generator=g), torch.randn(60, 9, generator=g)
    a, b = list(range(20, 60)), list(range(20))
    whole = adapt_rows(w_cls, w_det, a, b, k=3)
    chunked = adapt_rows(w_cls, w_det, a, b, k=3, chunk=7)
    assert torch.equal(whole.neighbours, chunked.neighbours)
    torch.testing.assert_close(whole.rows, chunked.rows)


def test_rows_round_trip_through_a_layer():
    layer = torch.nn.Linear(2, 4)
    rows = torch.arange(6, dtype=torch.float32).view(2, 3)
    apply_rows(layer, [1, 3], rows)
    assert torch.equal(with_bias(layer)[[1, 3]], rows)


def test_inputs_are_left_alone_unless_given_as_out():
    g = torch.Generator().manual_seed(1)
    cls_a, cls_b = torch.randn(6, 4, generator=g), torch.randn(3, 4, generator=g)
    det_b = cls_b + 1.0
    kept = cls_a.clone()
    fresh = adapt(cls_a, cls_b, det_b, k=2, chunk=4)
    assert torch.equal(cls_a, kept)
    in_place = adapt(cls_a, cls_b, det_b, k=2, chunk=4, out=cls_a)
    assert in_place.rows is cls_a and torch.equal(cls_a, fresh.rows)
    torch.testing.assert_close(fresh.rows, kept + 1.0)  # every offset is +1
