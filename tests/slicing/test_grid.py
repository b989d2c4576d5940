"""slice_grid equals SAHI's get_slice_bboxes (sahi.slicing), window for window and in order."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scalekit.slicing import slice_grid

sahi_slicing = pytest.importorskip("sahi.slicing", reason="SAHI is the reference for the grid (pip install sahi)")


@settings(max_examples=300, deadline=None)
@given(height=st.integers(1, 3000), width=st.integers(1, 3000), slice_h=st.integers(16, 700),
       slice_w=st.integers(16, 700), overlap_h=st.floats(0, 0.95), overlap_w=st.floats(0, 0.95))
def test_grid_equals_sahi(height, width, slice_h, slice_w, overlap_h, overlap_w):
    ours = slice_grid(height, width, (slice_h, slice_w), (overlap_h, overlap_w))
    theirs = sahi_slicing.get_slice_bboxes(height, width, slice_h, slice_w, False, overlap_h, overlap_w)
    assert ours.tolist() == theirs


@pytest.mark.parametrize("size,overlap", [(512, 0.2), (640, 0.25), (256, 0.0), (100, 0.5)])
def test_grid_equals_sahi_on_large_images(size, overlap):
    for h, w in [(4000, 6000), (1500, 2000), (512, 512), (513, 511)]:
        ours = slice_grid(h, w, size, overlap)
        assert ours.tolist() == sahi_slicing.get_slice_bboxes(h, w, size, size, False, overlap, overlap)


def test_grid_covers_the_image_and_stays_inside():
    windows = slice_grid(1000, 1700, 300, 0.2)
    covered = torch.zeros(1000, 1700, dtype=torch.bool)
    for x1, y1, x2, y2 in windows.tolist():
        assert 0 <= x1 < x2 <= 1700 and 0 <= y1 < y2 <= 1000 and (x2 - x1, y2 - y1) == (300, 300)
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    # 60-px overlap: starts 240 apart; the last column shifted back to end at 1700
    assert sorted({x1 for x1, *_ in windows.tolist()}) == [0, 240, 480, 720, 960, 1200, 1400]


def test_an_image_smaller_than_the_slice_is_one_window():
    assert slice_grid(50, 70, 512).tolist() == [[0, 0, 70, 50]]
