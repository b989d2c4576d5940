"""The high-resolution small-object set (sliced inference, AutoFocus): read by
pycocotools, objects where they are said to be, and sparse as promised."""

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from scalekit.datasets.synthetic import make_synthetic_small_objects

SIZE = (600, 800)
KW = dict(image_size=SIZE, large_size=(100, 200), spread=(20.0, 50.0))


@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    return make_synthetic_small_objects(str(tmp_path_factory.mktemp("sparse")), num_images=3, seed=1, **KW)


def _boxes(ann):
    data = json.load(open(ann))
    return data, {i["id"]: np.array([a["bbox"] for a in data["annotations"] if a["image_id"] == i["id"]])
                  for i in data["images"]}


def test_pycocotools_reads_it_and_boxes_lie_inside_without_overlap(sparse):
    images, ann = sparse
    coco = COCO(ann)
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) > 20
    data, per_image = _boxes(ann)
    for boxes in per_image.values():
        x, y, w, h = boxes.T
        assert (x >= 0).all() and (y >= 0).all() and (x + w <= SIZE[1]).all() and (y + h <= SIZE[0]).all()
        taken = np.zeros(SIZE, dtype=int)
        for bx, by, bw, bh in boxes:
            taken[by : by + bh, bx : bx + bw] += 1
        assert taken.max() == 1  # no object hides another


def test_sizes_small_in_clusters_and_a_few_large(sparse):
    _, per_image = _boxes(sparse[1])
    for boxes in per_image.values():
        side = np.sqrt(boxes[:, 2] * boxes[:, 3])
        small, large = side[side <= 34], side[side > 34]
        assert 1 <= len(large) <= 3 and (large >= 95).all()
        assert len(small) >= 5 * len(large)
        # most 100-px tiles hold no small object: the clusters are sparse
        centres = boxes[side <= 34, :2] + boxes[side <= 34, 2:] / 2
        tiles = {(int(cx // 100), int(cy // 100)) for cx, cy in centres}
        assert len(tiles) < 0.5 * (SIZE[0] // 100) * (SIZE[1] // 100)


def test_seeded_and_the_dense_variant_is_denser(tmp_path, sparse):
    _, again = make_synthetic_small_objects(str(tmp_path / "again"), num_images=3, seed=1, **KW)
    assert json.load(open(again)) == json.load(open(sparse[1]))
    _, dense = make_synthetic_small_objects(str(tmp_path / "dense"), num_images=3, seed=1, dense=True, **KW)
    assert len(json.load(open(dense))["annotations"]) > 2 * len(json.load(open(sparse[1]))["annotations"])


def test_sizes_that_do_not_fit_are_refused(tmp_path):
    with pytest.raises(ValueError, match="fit the image"):
        make_synthetic_small_objects(str(tmp_path), num_images=1, image_size=(200, 300))
    with pytest.raises(ValueError, match="small"):
        make_synthetic_small_objects(str(tmp_path), num_images=1, small=(1, 8))
