"""Classification crops for R-FCN-3000's first step (thesis §4.3): a classifier
whose class-mean features are clustered into super-classes, trained on a
classification split or on crops cut from a detection set's boxes."""

from __future__ import annotations

import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["read_classification", "crops_from_boxes"]


def read_classification(image_dir: str, labels_json: str, size: int) -> tuple[Tensor, Tensor]:
    """Every image of a classification split, resized to ``size x size``.

    The split is ``{"images": [{"file_name", "category_id"}, ...]}`` in
    ``labels_json`` with the files in ``image_dir`` (what
    :func:`~scalekit.datasets.synthetic.make_synthetic_fine_classification` writes).

    Returns:
        ``(images [N, 3, size, size] uint8, category ids [N] int64)``, in file order.

    Example:
        >>> import tempfile
        >>> from scalekit.datasets import read_classification
        >>> from scalekit.datasets.synthetic import make_synthetic_fine_classification
        >>> split = make_synthetic_fine_classification(tempfile.mkdtemp(), per_class=1, num_families=2,
        ...                                            classes_per_family=2)
        >>> images, cats = read_classification(*split, size=32)
        >>> images.shape, images.dtype, cats.tolist()
        (torch.Size([4, 3, 32, 32]), torch.uint8, [1, 2, 3, 4])
    """
    from PIL import Image

    with open(labels_json) as f:
        records = json.load(f).get("images", [])
    images, cats = [], []
    for k, r in enumerate(records):
        if not isinstance(r, dict) or "file_name" not in r or "category_id" not in r:
            raise ValueError(f"{labels_json}: images[{k}] must have 'file_name' and 'category_id', got {r!r}")
        path = os.path.join(image_dir, r["file_name"])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such image {path} (images[{k}] of {labels_json})")
        with Image.open(path) as im:
            im = im.convert("RGB").resize((size, size))
            images.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1))
        cats.append(int(r["category_id"]))
    if not images:
        raise ValueError(f"{labels_json} lists no images")
    return torch.stack(images), torch.tensor(cats)


def crops_from_boxes(dataset, size: int, per_class: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Ground-truth boxes of a detection dataset cut out as classification crops:
    a classification split where a dataset has none.

    Images are visited in a seeded random order; each box at least 2 px wide
    and high is cut at whole-pixel corners and resized (bilinear) to ``size x
    size``, until each category has ``per_class`` crops.

    Args:
        dataset: a :class:`~scalekit.datasets.CocoDetection` (its
            ``label_to_category`` names the categories).
        size: side of the crops.
        per_class: crops per category, at most.
        seed: the visiting order.

    Returns:
        ``(images [N, 3, size, size] uint8, category ids [N] int64)``.
    """
    rng = np.random.default_rng(seed)
    images, cats, count = [], [], {}
    for i in rng.permutation(len(dataset)).tolist():
        image, target = dataset[i]
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            cat = dataset.label_to_category[label]
            if count.get(cat, 0) >= per_class or box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            patch = F.interpolate(image[None, :, y1:y2, x1:x2], size=(size, size), mode="bilinear", align_corners=False)
            images.append((patch[0] * 255).round().clamp(0, 255).to(torch.uint8))
            cats.append(cat)
            count[cat] = count.get(cat, 0) + 1
    if not images:
        raise ValueError("the dataset has no boxes of at least 2 x 2 pixels to cut classification crops from")
    return torch.stack(images), torch.tensor(cats)
