"""Scale-true synthetic objects (issue 23, item 2): a small object is the large one
area-down-sampled (torch's ``F.interpolate(mode="area")`` is the reference), today's
renderer is not; the COCO output has make_synthetic_coco's boxes and pycocotools reads
it; the classification crops at a low resolution are the full crops down-sampled."""

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scalekit.datasets.synthetic import (SYNTHETIC_CLASSES, make_synthetic_coco, make_synthetic_scale_crops,
                                         make_synthetic_scale_true_coco, render_scale_true_object)
from scalekit.datasets.synthetic.coco import _draw

COLOUR = (200, 120, 60)


def _area(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """``[H, W, C]`` -> ``[h, w, C]`` by torch's area interpolation (the reference)."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]
    return F.interpolate(t, size=(h, w), mode="area")[0].permute(1, 2, 0).numpy()


def _today(cls, w, h, detail):
    canvas = np.zeros((h, w, 3), np.uint8)
    _draw(canvas, cls, 0, 0, w, h, np.random.default_rng(0), detail)
    return canvas.astype(np.float32)


@pytest.mark.parametrize("cls", range(len(SYNTHETIC_CLASSES)))
@pytest.mark.parametrize("big_w, big_h, w, h", [(192, 144, 24, 18), (400, 300, 20, 15)])
def test_a_small_object_is_the_large_one_area_down_sampled(cls, big_w, big_h, w, h):
    big, big_cover = render_scale_true_object(cls, big_w, big_h, COLOUR)
    small, small_cover = render_scale_true_object(cls, w, h, COLOUR)
    assert big[big_h // 4 : -big_h // 4, big_w // 4 : -big_w // 4].std() > 40  # the large one shows its pattern
    gap = np.abs(_area(big, h, w) - small)  # 0..255; the supersampling's own error (measured: mean <= 1.7)
    assert gap.mean() < 2.0 and gap.max() < 10
    assert np.abs(_area(big_cover[..., None], h, w)[..., 0] - small_cover).max() < 0.05
    # today's renderer, its fine pattern at 6 px per period: the small object is not the large one blurred
    today_gap = np.abs(_area(_today(cls, big_w, big_h, 6), h, w) - _today(cls, w, h, 6))
    assert today_gap.mean() > 25  # measured 27-47


def test_the_pattern_scales_with_the_object_and_edges_are_area_averaged():
    rgb, _ = render_scale_true_object(0, 64, 64, COLOUR, detail=16)
    # 16 periods across 64 px: dark lines 2 px wide every 4 px, in the object's frame
    assert np.allclose(rgb[10, :8, 0], [200 * 0.45] * 2 + [200] * 2 + [200 * 0.45] * 2 + [200] * 2)
    _, disc = render_scale_true_object(1, 5, 5, COLOUR, detail=0)
    assert 0.05 < disc[0, 0] < 0.5 and disc[2, 2] == 1  # a corner pixel partly covered, the centre fully
    assert abs(disc.sum() / 25 - np.pi / 4) < 0.01


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="cls must be in 0..2, got 3"):
        render_scale_true_object(3, 8, 8, COLOUR)
    with pytest.raises(ValueError, match="width and height must be >= 1 pixel, got 0 x 8"):
        render_scale_true_object(0, 0, 8, COLOUR)
    with pytest.raises(ValueError, match="render must be 'scale_true' or 'today', got 'x'"):
        make_synthetic_scale_crops(3, render="x")
    with pytest.raises(ValueError, match=r"resolutions must lie in \[4, size=64\), got \(64,\)"):
        make_synthetic_scale_crops(3, resolutions=(64,))
    with pytest.raises(ValueError, match="need a .*-point grid"):
        make_synthetic_scale_crops(3, resolutions=(63, 61))


def test_coco_output_has_make_synthetic_coco_boxes_and_pycocotools_reads_it(tmp_path):
    from PIL import Image
    from pycocotools.coco import COCO

    kw = {"num_images": 6, "seed": 5, "image_sizes": ((240, 320), (300, 400)), "min_size": 6, "max_size": 200}
    images, ann = make_synthetic_scale_true_coco(str(tmp_path / "true"), **kw)
    _, old_ann = make_synthetic_coco(str(tmp_path / "old"), **kw, detail=6)
    with open(ann) as f, open(old_ann) as g:
        new, old = json.load(f), json.load(g)
    assert new == old  # same images, boxes, classes: the box statistics are the generator's own
    sizes = np.sqrt([a["area"] for a in new["annotations"]])
    assert len(sizes) > 20 and (sizes < 32).mean() > 1 / 3  # log-uniform 6..200: many small objects
    coco = COCO(ann)
    assert sorted(coco.getCatIds()) == [1, 2, 3] and len(coco.getAnnIds()) == len(sizes)
    first = coco.loadImgs(1)[0]
    picture = np.asarray(Image.open(os.path.join(images, first["file_name"]))).astype(np.float32)
    before = np.asarray(Image.open(os.path.join(str(tmp_path / "old"), "images", first["file_name"]))).astype(np.float32)
    assert picture.shape == (first["height"], first["width"], 3)
    # the same clutter outside the objects (up to JPEG), other pixels inside them
    objects = np.zeros(picture.shape[:2], bool)
    for a in coco.loadAnns(coco.getAnnIds(imgIds=1)):
        x, y, w, h = a["bbox"]
        objects[y : y + h, x : x + w] = True
    assert np.abs(picture - before)[~objects].mean() < 3 < np.abs(picture - before)[objects].mean()


def test_scale_true_crops_are_the_full_crops_down_sampled_and_todays_are_not():
    true = make_synthetic_scale_crops(12, seed=3, resolutions=(32, 16))
    today = make_synthetic_scale_crops(12, seed=3, resolutions=(32, 16), render="today")
    assert sorted(true["labels"].tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    for crops, far in ((true, False), (today, True)):
        full = crops["images"][64].float()
        for r in (32, 16):
            gap = (F.interpolate(full, size=r, mode="area") - crops["images"][r].float()).abs().mean()
            assert (gap > 4) if far else (gap < 0.6), (r, float(gap))
    assert torch.equal(make_synthetic_scale_crops(12, seed=3, resolutions=(32, 16))["images"][16], true["images"][16])
