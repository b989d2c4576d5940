"""FocusChips: connected components against a slow breadth-first search, and the
whole chip procedure against a slow transcription of the released mask-based loop
(fill the chips into the mask, find its regions again, until nothing changes)."""

from collections import deque

import pytest
import torch
from hypothesis import given, strategies as st

from scalekit.autofocus import focus_chips, label_components

try:
    import scipy.ndimage as ndimage
except ImportError:  # scipy is not in the venv: the breadth-first search is the reference
    ndimage = None


def bfs_components(mask):
    """Lists of cells of each 8-connected component, by breadth-first search."""
    h, w = len(mask), len(mask[0]) if mask else 0
    seen, comps = set(), []
    for y in range(h):
        for x in range(w):
            if mask[y][x] and (y, x) not in seen:
                comp, queue = [], deque([(y, x)])
                seen.add((y, x))
                while queue:
                    cy, cx = queue.popleft()
                    comp.append((cy, cx))
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            ny, nx = cy + dy, cx + dx
                            if 0 <= ny < h and 0 <= nx < w and mask[ny][nx] and (ny, nx) not in seen:
                                seen.add((ny, nx))
                                queue.append((ny, nx))
                comps.append(comp)
    return comps


def partition(labels):
    groups = {}
    for (y, x), v in zip(((y, x) for y in range(labels.shape[0]) for x in range(labels.shape[1])),
                         labels.flatten().tolist()):
        if v:
            groups.setdefault(v, set()).add((y, x))
    return sorted(sorted(g) for g in groups.values())


masks = st.integers(1, 14).flatmap(lambda h: st.integers(1, 14).flatmap(
    lambda w: st.lists(st.lists(st.booleans(), min_size=w, max_size=w), min_size=h, max_size=h)))


@given(mask=masks)
def test_components_equal_a_breadth_first_search(mask):
    labels = label_components(torch.tensor(mask))
    expected = sorted(sorted(c) for c in bfs_components(mask))
    assert partition(labels) == expected
    assert sorted(set(labels.flatten().tolist()) - {0}) == list(range(1, len(expected) + 1))
    if ndimage is not None:
        _, n = ndimage.label(mask, structure=[[1, 1, 1]] * 3)
        assert n == len(expected)


def test_a_long_snake_is_one_component():
    mask = torch.zeros(21, 21, dtype=torch.bool)
    mask[::2] = True
    for i, row in enumerate(range(1, 21, 2)):
        mask[row, 20 if i % 2 == 0 else 0] = True
    labels = label_components(mask)
    assert int(labels.max()) == 1 and bool((labels[mask] == 1).all())


def reference_chips(focus, h, w, threshold, dilation, min_chip, stride):
    """The released loop, slowly: threshold, dilate, regions' boxes grown to min_chip cells
    (integer centring, shifted inside the grid), filled into the mask, regions again, until
    the boxes stop changing; then pixels, clipped to the image."""
    gh, gw = -(-h // stride), -(-w // stride)
    threshold = float(torch.tensor(threshold, dtype=torch.float32))  # compared in the map's float32, as torch does
    on = [[float(focus[y][x]) >= threshold for x in range(gw)] for y in range(gh)]
    before = dilation // 2
    mask = [[any(on[yy][xx] for yy in range(y - before, y - before + dilation) if 0 <= yy < gh
                 for xx in range(x - before, x - before + dilation) if 0 <= xx < gw)
             for x in range(gw)] for y in range(gh)]

    def grown(comp):
        ys, xs = [c[0] for c in comp], [c[1] for c in comp]
        box = []
        for lo, hi, extent in ((min(xs), max(xs) + 1, gw), (min(ys), max(ys) + 1, gh)):
            size = hi - lo
            new = max(size, min_chip)
            start = lo + size // 2 - new // 2
            if start + new > extent:
                start = max(extent - new, 0)
            start = max(start, 0)
            box.append((start, min(start + new, extent)))
        return (box[0][0], box[1][0], box[0][1], box[1][1])

    boxes = None
    while True:
        new = sorted(grown(c) for c in bfs_components(mask))
        if new == boxes:
            break
        boxes = new
        for x1, y1, x2, y2 in boxes:
            for y in range(y1, y2):
                for x in range(x1, x2):
                    mask[y][x] = True
    return sorted((x1 * stride, y1 * stride, min(x2 * stride, w), min(y2 * stride, h)) for x1, y1, x2, y2 in boxes)


@st.composite
def focus_maps(draw):
    h, w = draw(st.integers(16, 200)), draw(st.integers(16, 200))
    stride = draw(st.sampled_from([8, 16]))
    gh, gw = -(-h // stride), -(-w // stride)
    cells = draw(st.lists(st.tuples(st.integers(0, gh - 1), st.integers(0, gw - 1), st.floats(0, 1)), max_size=8))
    focus = torch.zeros(gh + draw(st.integers(0, 2)), gw + draw(st.integers(0, 2)))  # maybe padded
    for y, x, p in cells:
        focus[y, x] = p
    return focus, h, w, stride


@given(m=focus_maps(), threshold=st.sampled_from([0.02, 0.2, 0.5]), dilation=st.integers(1, 4),
       min_chip=st.integers(1, 6))
def test_chips_equal_the_released_mask_loop_and_never_touch(m, threshold, dilation, min_chip):
    focus, h, w, stride = m
    chips = focus_chips(focus, (h, w), threshold=threshold, dilation=dilation, min_chip=min_chip, stride=stride)
    ours = sorted(tuple(int(v) for v in c) for c in chips.tolist())
    assert ours == reference_chips(focus.tolist(), h, w, threshold, dilation, min_chip, stride)
    # no two chips overlap, nor touch
    for i, a in enumerate(ours):
        for b in ours[i + 1:]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1], (a, b)
    # every FocusPixel of the image lies in a chip; chips lie in the image
    gh, gw = -(-h // stride), -(-w // stride)
    for y, x in (focus[:gh, :gw] >= threshold).nonzero().tolist():
        assert any(c[0] <= x * stride < c[2] and c[1] <= y * stride < c[3] for c in ours)
    for x1, y1, x2, y2 in ours:
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert x2 - x1 > min(min_chip * stride, w) - stride and y2 - y1 > min(min_chip * stride, h) - stride


def test_released_settings_on_a_hand_case():
    focus = torch.zeros(50, 75)  # a 800 x 1200 image at stride 16
    focus[10, 10] = 0.03          # over 0.02: one cell, 3 x 3 after dilation, grown to 16 cells
    focus[10, 30] = 0.01          # under the threshold
    focus[40, 70] = 0.5           # near the right edge: shifted inside
    chips = focus_chips(focus, (800, 1200))
    assert chips.tolist() == [[32.0, 32.0, 288.0, 288.0], [944.0, 512.0, 1200.0, 768.0]]
    # two regions whose grown chips overlap become one
    focus[10, 24] = 0.5
    assert focus_chips(focus, (800, 1200)).tolist() == [[32.0, 32.0, 512.0, 288.0], [944.0, 512.0, 1200.0, 768.0]]


def test_empty_map_gives_no_chip_and_a_short_map_is_refused():
    assert focus_chips(torch.zeros(4, 4), (64, 64)).shape == (0, 4)
    with pytest.raises(ValueError, match="focus must cover"):
        focus_chips(torch.zeros(3, 4), (64, 64))
    with pytest.raises(ValueError, match="dilation"):
        focus_chips(torch.zeros(4, 4), (64, 64), dilation=0)


@pytest.mark.cuda
def test_chips_run_on_the_map_s_device(device):
    focus = torch.zeros(50, 75, device=device)
    focus[10, 10] = 0.5
    chips = focus_chips(focus, (800, 1200))
    assert chips.device == focus.device and chips.cpu().tolist() == [[32.0, 32.0, 288.0, 288.0]]
