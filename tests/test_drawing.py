"""draw_detections: the pixels of the picture (issue 21, item 6)."""

import numpy as np
import pytest
import torch
from PIL import Image

from scalekit.chips import Chip
from scalekit.drawing import CHIP_COLOURS, DETECTION_COLOURS, GROUND_TRUTH_COLOUR, IGNORE_COLOUR, draw_detections


def _where(picture, colour):
    """``[H, W]`` bool: pixels of exactly that colour."""
    return (picture == torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1)).all(0)


def _background(h=100, w=140):
    return torch.full((3, h, w), 0.25)  # 64 grey, none of the palettes' colours


DETECTIONS = {"boxes": torch.tensor([[10.0, 10, 50, 60], [70, 60, 90, 90]]),
              "scores": torch.tensor([0.9, 0.1]), "labels": torch.tensor([1, 2])}


def test_ignore_regions_are_hatched_inside_their_box_and_nowhere_else():
    ignore = torch.tensor([[80.0, 5, 130, 45]])
    picture = draw_detections(_background(), ignore_boxes=ignore)
    assert picture.dtype == torch.uint8 and picture.shape == (3, 100, 140)
    mask = _where(picture, IGNORE_COLOUR)
    inside = torch.zeros_like(mask)
    inside[5:46, 80:131] = True  # the box and its outline (PIL draws the x2, y2 pixels too)
    assert not (mask & ~inside).any()  # the ignore colour only where the ignore box is
    assert mask[5, 80:131].all() and mask[5:46, 130].all()  # outlined
    fraction = mask[inside].float().mean()
    assert 0.25 < fraction < 0.6  # hatched (lines and gaps), not filled
    assert (picture[:, inside & ~mask] == 64).all()  # the picture shows between the lines
    assert (picture[:, ~inside] == 64).all()


def test_detections_above_the_threshold_in_their_label_colour_with_ground_truth_and_chips():
    chips = [Chip(level=1, scale=1.0, box=torch.tensor([2.0, 2, 120, 95]), kind="pos"),
             Chip(level=2, scale=1.0, box=torch.tensor([0.0, 0, 139, 99]), kind="neg")]
    gt = torch.tensor([[20.0, 70, 40, 90]])
    picture = draw_detections(_background(), DETECTIONS, ground_truth=gt, chips=chips, class_names=["cat", "dog"],
                              score_threshold=0.3)
    colour_1 = _where(picture, DETECTION_COLOURS[1])
    assert colour_1[10, 10:50].all() and colour_1[59, 10:50].all()  # top and bottom edges of the 0.9 "cat"
    assert not _where(picture, DETECTION_COLOURS[2]).any()  # the 0.1 "dog" is below the threshold
    assert _where(picture, GROUND_TRUTH_COLOUR)[70, 20:41].all()
    assert _where(picture, CHIP_COLOURS[1])[2, 30:120].all()  # the positive chip's top edge
    assert _where(picture, CHIP_COLOURS[2])[0, 60:139].all()  # the negative chip's
    # everything drawn lies on these lines or the label text: the box interiors stay grey
    assert (picture[:, 25:45, 15:45] == 64).all()


def test_inputs_and_saving(tmp_path):
    image = _background()
    as_uint8 = (image * 255).round().to(torch.uint8)
    a = draw_detections(image, DETECTIONS, score_threshold=0.0, path=tmp_path / "a.png")
    b = draw_detections(as_uint8, DETECTIONS, score_threshold=0.0)
    assert torch.equal(a, b)
    saved = torch.from_numpy(np.array(Image.open(tmp_path / "a.png"))).permute(2, 0, 1)
    assert torch.equal(saved, a)
    c = draw_detections(str(tmp_path / "a.png"))  # a path: the picture as it was saved
    assert torch.equal(c, a)
    grey = draw_detections(torch.zeros(1, 10, 12))
    assert grey.shape == (3, 10, 12) and (grey == 0).all()
    capped = draw_detections(image, DETECTIONS, score_threshold=0.0, max_detections=1)
    assert not _where(capped, DETECTION_COLOURS[2]).any()


@pytest.mark.parametrize("kwargs, match", [
    (dict(detections={"boxes": torch.tensor([[0.0, 0, float("nan"), 5]])}), r"detections\['boxes'\]\[0\] is not finite"),
    (dict(ignore_boxes=torch.tensor([[10.0, 10, 5, 20]])), r"ignore_boxes\[0\] .* x2 < x1 .*box_convert"),
    (dict(ground_truth=torch.zeros(2, 5)), r"ground_truth must be an \[N, 4\] tensor"),
    (dict(detections={"boxes": torch.zeros(2, 4), "scores": torch.ones(3)}), "one entry per box"),
    (dict(detections=torch.zeros(2, 4)), "detections must be a dict with 'boxes'"),
    (dict(chips=[1, 2]), "chips must be Chip objects"),
    (dict(width=0), "width must be an int >= 1"),
    (dict(score_threshold=float("nan")), "score_threshold must be a number"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        draw_detections(torch.zeros(3, 20, 20), **kwargs)
