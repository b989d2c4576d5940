"""SNIP's sub-image chips (thesis §2.6.2): every coverable box ends up fully inside a chip."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scalekit.chips import snip_chips as _snip_chips


def snip_chips(*args, **kwargs):
    """The windows (level pixels) of the chips, ``[K, 4]``."""
    chips = _snip_chips(*args, **kwargs)
    return torch.stack([c.window for c in chips]) if chips else torch.zeros(0, 4)


def _inside(boxes, chips):
    """[N, K] box n fully inside chip k."""
    return ((chips[None, :, 0] <= boxes[:, None, 0]) & (boxes[:, None, 2] <= chips[None, :, 2])
            & (chips[None, :, 1] <= boxes[:, None, 1]) & (boxes[:, None, 3] <= chips[None, :, 3]))


@st.composite
def scenes(draw):
    h = draw(st.integers(200, 2200))
    w = draw(st.integers(200, 2200))
    n = draw(st.integers(0, 25))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    wh = np.exp(rng.uniform(np.log(4), np.log(1300), (n, 2)))
    wh = np.minimum(wh, [w, h])
    xy = rng.uniform(0, 1, (n, 2)) * ([w, h] - wh)
    boxes = torch.tensor(np.concatenate([xy, xy + wh], 1), dtype=torch.float32).reshape(-1, 4)
    return boxes, (h, w), draw(st.integers(0, 1000))


@settings(deadline=None)
@given(scenes())
def test_every_coverable_box_is_inside_a_chip_and_chips_lie_in_the_image(scene):
    boxes, (h, w), seed = scene
    chips = snip_chips(boxes, (h, w), 1000, generator=seed)
    fits = ((boxes[:, 2] - boxes[:, 0]) <= min(1000, w)) & ((boxes[:, 3] - boxes[:, 1]) <= min(1000, h))
    if len(chips):
        assert (chips[:, 0] >= 0).all() and (chips[:, 1] >= 0).all()
        assert (chips[:, 2] <= w + 1e-3).all() and (chips[:, 3] <= h + 1e-3).all()
        sides = chips[:, 2:] - chips[:, :2]
        assert torch.allclose(sides, torch.tensor([float(min(1000, w)), float(min(1000, h))]).expand_as(sides))
        assert _inside(boxes[fits], chips).any(1).all()
    else:
        assert not fits.any()
    # greedy: every chip adds at least one box that no earlier chip covered
    covered = torch.zeros(len(boxes), dtype=torch.bool)
    for k in range(len(chips)):
        new = _inside(boxes, chips[k : k + 1])[:, 0] & fits & ~covered
        assert new.any()
        covered |= new


def test_a_cluster_takes_one_chip_and_far_groups_one_each():
    cluster = torch.tensor([[100.0, 100, 130, 130], [400, 300, 430, 350], [700, 600, 720, 650]])
    assert len(snip_chips(cluster, (1400, 2000), generator=0)) == 1
    far = torch.cat([cluster, cluster + torch.tensor([1200.0, 0, 1200, 0])])
    assert len(snip_chips(far, (1400, 2000), generator=0)) == 2


def test_an_image_no_larger_than_a_chip_is_one_chip_and_nothing_to_cover_is_none():
    boxes = torch.tensor([[10.0, 10, 40, 40], [500, 500, 700, 700]])
    assert snip_chips(boxes, (800, 900), generator=0).tolist() == [[0.0, 0.0, 900.0, 800.0]]
    assert snip_chips(torch.zeros(0, 4), (1400, 2000), generator=0).shape == (0, 4)


def test_boxes_larger_than_a_chip_are_left_out():
    boxes = torch.tensor([[0.0, 0, 1200, 300], [1500, 1000, 1520, 1020]])
    chips = snip_chips(boxes, (1400, 2000), generator=0)
    assert len(chips) == 1 and _inside(boxes, chips)[:, 0].tolist() == [False, True]


def test_seeded_and_varies_with_the_seed():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 1800, (30, 2))
    boxes = torch.tensor(np.concatenate([xy, xy + 20], 1), dtype=torch.float32)
    a, b = snip_chips(boxes, (1900, 1900), generator=5), snip_chips(boxes, (1900, 1900), generator=5)
    assert torch.equal(a, b)
    assert any(not torch.equal(a, snip_chips(boxes, (1900, 1900), generator=s)) for s in range(6, 12))


def test_many_candidates_snap_to_the_borders():
    # one box in the top-left corner: the chip covering it touches the left and top borders
    chips = snip_chips(torch.tensor([[0.0, 0, 30, 30]]), (1400, 2000), generator=1)
    assert chips[0, :2].tolist() == [0.0, 0.0]


def test_chips_are_chips_in_original_pixels_with_the_boxes_inside():
    boxes = torch.tensor([[20.0, 20, 60, 60], [1500, 1200, 1530, 1230]])
    chips = _snip_chips(boxes, (1400, 2000), 1000, generator=0, level=0, scale=2.0)
    assert all(c.level == 0 and c.scale == 2.0 and c.kind == "pos" for c in chips)
    for c in chips:
        torch.testing.assert_close(c.box * 2.0, c.window)
        assert (c.box[2:] - c.box[:2]).tolist() == [500.0, 500.0]
        assert c.gt_index.tolist() == _inside(boxes, c.window[None])[:, 0].nonzero().flatten().tolist()
    assert sorted(i for c in chips for i in c.gt_index.tolist()) == [0, 1]


@pytest.mark.parametrize("boxes, match", [
    (torch.tensor([[0.0, 0, float("nan"), 10]]), "finite"),
    (torch.tensor([[50.0, 0, 10, 10]]), "x2 >= x1"),  # reversed: refused, as ChipGenerator refuses it
])
def test_nan_and_reversed_boxes_are_refused(boxes, match):
    with pytest.raises(ValueError, match=match):
        _snip_chips(boxes, (100, 100), 50, generator=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(boxes=torch.zeros(3)), "boxes"),
    (dict(image_size=(0, 10)), "image_size"),
    (dict(chip_size=0), "chip_size"),
    (dict(num_candidates=0), "num_candidates"),
])
def test_bad_input_names_the_argument(kwargs, match):
    args = dict(boxes=torch.zeros(1, 4), image_size=(100, 100), chip_size=50, num_candidates=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        _snip_chips(**args)


def test_numpy_scalars_are_numbers():
    chips = _snip_chips(torch.tensor([[10.0, 10, 20, 20]]), (np.int64(300), np.int64(400)), np.int64(100),
                        np.int64(5), generator=0, scale=np.float32(2.0))
    assert len(chips) == 1


def test_a_box_reaching_past_the_image_is_left_out_and_sampling_ends():
    boxes = torch.tensor([[1990.0, 100, 2030, 140], [100.0, 100, 130, 130]])
    chips = snip_chips(boxes, (1400, 2000), num_candidates=1, generator=0)
    assert _inside(boxes, chips)[1].any() and not _inside(boxes, chips)[0].any()
