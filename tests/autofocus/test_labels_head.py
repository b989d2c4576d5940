"""FocusPixel labels against the released AutoFocus label rule on hand cases, and
the focus head's loss: ignored cells learn nothing."""

import math

import pytest
import torch

from scalekit.autofocus import FocusHead, focus_labels, focus_loss, focus_probability


def original_rule(boxes, chip, stride=16, low=5.0, small=64.0, high=90.0):
    """A slow transcription of the released rule's semantics (SNIPER master,
    anchor_worker's FocusPixel mask), for a square chip of side ``chip`` at 512:
    boxes are clipped to the chip, rounded, taken in order; each marks the cells
    floor(x1/s) .. ceil(x2/s) inclusive: 1 if low < size < small, -1 if size <= low
    or small <= size < high, untouched otherwise; a later box overwrites."""
    n = chip // stride
    out = [[0] * n for _ in range(n)]
    for x1, y1, x2, y2 in boxes:
        x1, y1, x2, y2 = (min(max(round(v), 0), chip) for v in (x1, y1, x2, y2))
        size = math.sqrt((x2 - x1) * (y2 - y1))
        flag = 1 if low < size < small else (-1 if size <= low or small <= size < high else 0)
        if flag == 0:
            continue
        for cx in range(int(x1 / stride), min(math.ceil(x2 / stride) + 1, n)):
            for cy in range(int(y1 / stride), min(math.ceil(y2 / stride) + 1, n)):
                out[cy][cx] = flag
    return torch.tensor(out)


HAND_CASES = {
    "small object": [[100.0, 100, 130, 130]],
    "tiny, small, mid, large apart": [[4.0, 4, 8, 8], [200, 40, 240, 80], [40, 300, 110, 370], [300, 300, 500, 500]],
    "just under and at each threshold": [[0.0, 0, 5, 5], [48, 0, 54, 5], [100, 0, 164, 64], [200, 0, 263, 64],
                                         [300, 200, 390, 290], [100, 400, 189, 490]],
    "on the chip's right and bottom edges": [[496.0, 496, 512, 512], [480, 0, 512, 30]],
}


@pytest.mark.parametrize("case", sorted(HAND_CASES))
def test_labels_equal_the_released_rule_on_hand_cases(case):
    boxes = torch.tensor(HAND_CASES[case])
    assert torch.equal(focus_labels(boxes, (512, 512)), original_rule(HAND_CASES[case], 512))


def test_a_small_object_marks_its_cells_and_one_more_right_and_below():
    labels = focus_labels(torch.tensor([[100.0, 100, 130, 130]]), (512, 512))
    expected = torch.zeros(32, 32, dtype=torch.int64)
    expected[6:10, 6:10] = 1  # floor(100 / 16) = 6 .. ceil(130 / 16) = 9 inclusive
    assert torch.equal(labels, expected)


def test_threshold_edges():
    def label(size):
        return int(focus_labels(torch.tensor([[200.0, 200, 200 + size, 200 + size]]), (512, 512))[13, 13])

    assert [label(s) for s in (5.0, 5.01, 63.99, 64.0, 89.99, 90.0, 200.0)] == [-1, 1, 1, -1, -1, 0, 0]


def test_thresholds_scale_with_the_chip():
    box = torch.tensor([[0.0, 0, 40, 40]])  # 40 px: small at 512 (< 64), mid at 256 (>= 32)
    assert int(focus_labels(box, (512, 512))[0, 0]) == 1
    assert int(focus_labels(box, (256, 256))[0, 0]) == -1
    assert int(focus_labels(box * 2, (1024, 1024))[0, 0]) == 1  # the same scene at twice the resolution
    assert int(focus_labels(torch.tensor([[0.0, 0, 4, 4]]), (1024, 1024))[0, 0]) == -1  # tiny: <= 10 px at 1024


def test_positive_wins_where_the_original_depends_on_order():
    small, mid = [100.0, 100, 130, 130], [120, 120, 190, 190]
    cell = (7, 7)
    assert int(original_rule([small, mid], 512)[cell]) == -1  # the later box overwrites
    assert int(original_rule([mid, small], 512)[cell]) == 1
    for order in ([small, mid], [mid, small]):
        assert int(focus_labels(torch.tensor(order), (512, 512))[cell]) == 1


def test_objects_outside_the_chip_mark_nothing():
    # the original clips such a box to a zero-size box on the edge and ignores the cells there
    assert int(original_rule([[-50.0, 100, -10, 140]], 512)[7, 0]) == -1
    assert bool((focus_labels(torch.tensor([[-50.0, 100, -10, 140]]), (512, 512)) == 0).all())


def test_grid_of_a_non_multiple_chip_and_a_partly_visible_object():
    labels = focus_labels(torch.tensor([[-100.0, 0, 20, 20]]), (100, 200))  # its visible part is 20 x 20
    assert labels.shape == (7, 13)
    assert labels[:3, :3].eq(1).all() and labels.sum() == 9


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="boxes"):
        focus_labels(torch.tensor([[0.0, 0, math.nan, 1]]), (64, 64))
    with pytest.raises(ValueError, match="ignore_below < small <= ignore_until"):
        focus_labels(torch.zeros(0, 4), (64, 64), small=100, ignore_until=90)
    with pytest.raises(TypeError, match="image_size"):
        focus_labels(torch.zeros(0, 4), 64)
    with pytest.raises(ValueError, match="stride"):
        focus_labels(torch.zeros(0, 4), (64, 64), stride=0)


def test_ignored_cells_get_zero_gradient_and_the_loss_is_the_mean_over_labelled_cells():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 4, 5, requires_grad=True)
    labels = torch.randint(-1, 2, (2, 4, 5))
    loss = focus_loss(logits, labels)
    loss.backward()
    ignored = labels == -1
    grad = logits.grad.permute(0, 2, 3, 1)  # [B, H, W, 2]
    assert bool((grad[ignored] == 0).all())
    assert bool((grad[~ignored].abs().sum(-1) > 0).all())
    log_p = logits.detach().log_softmax(1).permute(0, 2, 3, 1)[~ignored]
    expected = -log_p.gather(1, labels[~ignored][:, None]).mean()
    assert torch.allclose(loss, expected)


def test_all_ignored_gives_zero_loss_not_nan():
    logits = torch.randn(1, 2, 3, 3, requires_grad=True)
    loss = focus_loss(logits, -torch.ones(1, 3, 3, dtype=torch.int64))
    loss.backward()
    assert float(loss.detach()) == 0.0 and bool((logits.grad == 0).all())


def test_focus_loss_refuses_other_labels():
    with pytest.raises(ValueError, match="labels"):
        focus_loss(torch.zeros(1, 2, 1, 1), torch.tensor([[[2]]]))
    with pytest.raises(ValueError, match="labels"):
        focus_loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 3, dtype=torch.int64))


def test_head_layers_and_probability():
    head = FocusHead(32, mid_channels=64)
    kinds = [(m.kernel_size, m.out_channels) for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert kinds == [((3, 3), 64), ((1, 1), 64), ((1, 1), 2)]
    logits = head(torch.rand(1, 32, 5, 6))
    assert torch.allclose(focus_probability(logits), logits.softmax(1)[:, 1])
    with pytest.raises(ValueError, match="features"):
        head(torch.rand(1, 31, 5, 6))
