"""The fine-grained synthetic data: classes of one family share a shape and differ in
appearance, splits drawn with different seeds share the taxonomy, held-out classes
stay out of a split that leaves them out."""

import json

import numpy as np
import pytest
from PIL import Image

from scalekit.datasets import CocoDetection
from scalekit.datasets.synthetic import (FINE_FAMILIES, fine_grained_taxonomy, make_synthetic_fine_classification,
                                         make_synthetic_fine_coco)


def test_taxonomy_size_families_and_uniqueness():
    cats = fine_grained_taxonomy(num_families=8, classes_per_family=150, seed=3)
    assert len(cats) == 1200 and [c["id"] for c in cats] == list(range(1, 1201))
    assert {c["supercategory"] for c in cats} == set(FINE_FAMILIES)
    # inside a family no two classes look alike
    looks = [(c["family"], c["colour"], c["texture"], c["mark"]) for c in cats]
    assert len(set(looks)) == len(looks)
    assert fine_grained_taxonomy(8, 150, seed=3) == cats  # seeded
    assert fine_grained_taxonomy(8, 150, seed=4) != cats


@pytest.mark.parametrize("kwargs, match", [({"num_families": 9}, "num_families"),
                                           ({"classes_per_family": 301}, "classes_per_family")])
def test_taxonomy_rejects_what_it_cannot_draw(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fine_grained_taxonomy(**kwargs)


def _pixels(image_dir, record, box):
    x, y, w, h = (int(v) for v in box)
    im = np.asarray(Image.open(f"{image_dir}/{record['file_name']}").convert("RGB"), dtype=np.float64)
    return im[y:y + h, x:x + w]


def test_detection_split_draws_only_the_allowed_classes_inside_their_boxes(tmp_path):
    images, ann = make_synthetic_fine_coco(tmp_path, num_images=12, seed=1, classes=[1, 2, 45], objects=(2, 3))
    coco = json.load(open(ann))
    assert len(coco["categories"]) == 200  # every class listed, whether drawn or not
    drawn = {a["category_id"] for a in coco["annotations"]}
    assert drawn <= {1, 2, 45} and len(coco["annotations"]) >= 20
    ds = CocoDetection(images, ann)
    image, target = ds[0]
    assert image.shape == (3, 128, 128)
    # the object is where its box says: its box differs from the clutter around it
    records = {r["id"]: r for r in coco["images"]}
    for a in coco["annotations"][:10]:
        inside = _pixels(images, records[a["image_id"]], a["bbox"])
        bg = np.asarray(Image.open(f"{images}/{records[a['image_id']]['file_name']}"), dtype=np.float64)
        assert np.abs(inside.mean((0, 1)) - bg.mean((0, 1))).max() > 5 or inside.std() > bg.std()


def test_classes_of_one_family_share_the_outline_and_differ_in_appearance(tmp_path):
    cats = fine_grained_taxonomy()
    images, labels = make_synthetic_fine_classification(tmp_path, per_class=1, seed=0, classes=[1, 2, 43],
                                                        crop_size=64)
    assert cats[0]["family"] == cats[1]["family"] != cats[42]["family"]
    from scalekit.datasets.synthetic.fine import _mask, _render

    def draw(cat):
        canvas = np.full((40, 40, 3), 128.0)
        _render(canvas, cat, 0, 0, 40, 40, np.random.default_rng(0))
        return canvas

    a, b = draw(cats[0]), draw(cats[1])
    assert (_mask(cats[0]["family"], 40, 40) == _mask(cats[1]["family"], 40, 40)).all()
    assert (_mask(cats[0]["family"], 40, 40) != _mask(cats[42]["family"], 40, 40)).mean() > 0.1
    assert np.abs(a - b).mean() > 10  # same family, another look
    records = json.load(open(labels))["images"]
    assert [r["category_id"] for r in records] == [1, 2, 43]
    assert Image.open(f"{images}/{records[0]['file_name']}").size == (64, 64)


def test_seeds_change_images_but_not_the_taxonomy(tmp_path):
    _, a1 = make_synthetic_fine_coco(tmp_path / "a", num_images=3, seed=1)
    _, a2 = make_synthetic_fine_coco(tmp_path / "b", num_images=3, seed=1)
    _, a3 = make_synthetic_fine_coco(tmp_path / "c", num_images=3, seed=2)
    j1, j2, j3 = (json.load(open(p)) for p in (a1, a2, a3))
    assert j1 == j2 and j1["categories"] == j3["categories"] and j1["annotations"] != j3["annotations"]


@pytest.mark.parametrize("kwargs, match", [({"classes": [0]}, "classes"), ({"classes": [201]}, "classes"),
                                           ({"object_size": (10, 200)}, "object_size"),
                                           ({"objects": (3, 1)}, "objects")])
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_fine_coco(tmp_path, num_images=1, **kwargs)


def test_each_crop_carries_the_box_its_object_was_drawn_in(tmp_path):
    from scalekit.datasets.synthetic.fine import _mask

    solid = [6, 25]  # solid texture, no mark: the object is one flat colour over noisy clutter
    images, labels = make_synthetic_fine_classification(tmp_path, per_class=3, seed=1, classes=solid, crop_size=48)
    cats = fine_grained_taxonomy()
    for r in json.load(open(labels))["images"]:
        x, y, w, h = r["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 48 and y + h <= 48
        assert int(0.6 * 48) <= min(w, h) and max(w, h) <= 0.95 * 48
        im = np.asarray(Image.open(f"{images}/{r['file_name']}"), dtype=np.float64)
        inside = _mask(cats[r["category_id"] - 1]["family"], h, w)
        assert im[y:y + h, x:x + w][inside].std(0).max() < 1  # the flat object fills its outline in the box
        shifted = im[y:y + h, x + 1:x + w + 1] if x + w < 48 else im[y:y + h, x - 1:x + w - 1]
        assert shifted[inside].std(0).max() > 1  # one pixel off, the clutter shows
