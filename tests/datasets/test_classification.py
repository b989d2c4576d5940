"""Classification crops: the split as written by the synthetic generator, and boxes cut out of a detection set."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scalekit.datasets import CocoDetection, crops_from_boxes, read_classification
from scalekit.datasets.synthetic import make_synthetic_coco, make_synthetic_fine_classification


def test_read_classification_returns_the_listed_images_and_categories(tmp_path):
    images, labels = make_synthetic_fine_classification(str(tmp_path), per_class=2, num_families=2,
                                                        classes_per_family=2)
    crops, cats = read_classification(images, labels, size=24)
    records = json.load(open(labels))["images"]
    assert cats.tolist() == [r["category_id"] for r in records]
    assert crops.shape == (len(records), 3, 24, 24) and crops.dtype == torch.uint8
    assert crops.float().std() > 5  # pictures, not blanks
    records[0]["file_name"] = "missing.png"
    json.dump({"images": records}, open(tmp_path / "bad.json", "w"))
    with pytest.raises(FileNotFoundError, match=r"missing.png \(images\[0\]"):
        read_classification(images, str(tmp_path / "bad.json"), size=24)


def test_crops_from_boxes_cut_each_box_and_cap_each_class(tmp_path):
    data = CocoDetection(*make_synthetic_coco(str(tmp_path), num_images=4, seed=1, objects=(3, 5)))
    crops, cats = crops_from_boxes(data, size=16, per_class=2, seed=0)
    assert max(cats.tolist().count(c) for c in set(cats.tolist())) <= 2
    # the first crop is the first usable box of the first image in the seeded order
    first = int(np.random.default_rng(0).permutation(len(data))[0])
    image, target = data[first]
    x1, y1, x2, y2 = (int(round(v)) for v in target["boxes"][0].tolist())
    expected = F.interpolate(image[None, :, y1:y2, x1:x2], size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.equal(crops[0], (expected[0] * 255).round().clamp(0, 255).to(torch.uint8))
    assert cats[0] == data.label_to_category[int(target["labels"][0])]
