"""COCO-format detection data through pycocotools."""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["CocoDetection"]


class CocoDetection(Dataset):
    """Images and ``xyxy`` boxes of a COCO-format dataset.

    ``dataset[i]`` is ``(image [3, H, W] float in [0, 1], {"boxes": [N, 4] xyxy
    float32, "labels": [N] int64, "ignore_boxes": [I, 4], "image_id": int})``.
    Labels are contiguous ``1..C`` (0 is background, as torchvision's
    detectors and :mod:`scalekit.heads` expect), numbered in increasing
    category id; ``label_to_category`` and ``category_to_label`` map between
    the two, and ``class_names[label - 1]`` names a label. Crowd annotations
    (``iscrowd=1``) are not objects: they come as ``"ignore_boxes"``, regions a
    detector must learn neither as objects nor as background.
    ``annotations(i)`` gives ``(boxes, labels, (height, width))`` without
    reading the image.

    Every image file is checked to exist when the dataset is built
    (``check_files=True``), and a file whose size differs from the JSON's
    ``height``/``width`` raises a ``ValueError`` when it is read: chips and
    boxes are planned in the JSON's pixels.

    Args:
        root: folder of the image files.
        ann_file: the COCO JSON.
        check_files: check at construction that every image file exists.

    Example:
        >>> import tempfile
        >>> from scalekit.datasets import CocoDetection
        >>> from scalekit.datasets.synthetic import make_synthetic_coco
        >>> root, ann = make_synthetic_coco(tempfile.mkdtemp(), num_images=2, seed=0)
        >>> ds = CocoDetection(root, ann)
        >>> image, target = ds[0]
        >>> image.shape[0], target["boxes"].shape[1], len(ds)
        (3, 4, 2)
        >>> ds.label_to_category[int(target["labels"][0])] in ds.coco.getCatIds()
        True
    """

    def __init__(self, root, ann_file, *, check_files: bool = True) -> None:
        from pycocotools.coco import COCO

        if not os.path.isdir(root):
            raise FileNotFoundError(f"root: no such image folder: {root}")
        if not os.path.isfile(ann_file):
            raise FileNotFoundError(f"ann_file: no such annotation file: {ann_file}")
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                self.coco = COCO(str(ann_file))
            except Exception as exc:  # pycocotools asserts on malformed files
                raise ValueError(f"ann_file {ann_file} is not a valid COCO annotation file: {exc!r}") from exc
        self.root = root
        self.ids = sorted(self.coco.imgs.keys())
        for aid, ann in self.coco.anns.items():
            bbox = ann.get("bbox")
            if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and bbox[2] >= 0 and bbox[3] >= 0):
                raise ValueError(f"ann_file {ann_file}: annotation {aid} has a malformed bbox {bbox!r} "
                                 "(expected [x, y, width, height] with width, height >= 0)")
        cats = sorted(self.coco.getCatIds())
        for aid, ann in self.coco.anns.items():
            if ann.get("category_id") not in self.coco.cats:
                raise ValueError(f"ann_file {ann_file}: annotation {aid} has category_id {ann.get('category_id')!r}, "
                                 f"which is not among the file's categories")
        self.category_to_label = {c: i + 1 for i, c in enumerate(cats)}
        self.label_to_category = {i + 1: c for i, c in enumerate(cats)}
        self.class_names = [self.coco.cats[c].get("name", str(c)) for c in cats]
        if check_files:
            missing = [self.coco.imgs[i]["file_name"] for i in self.ids
                       if not os.path.isfile(os.path.join(root, self.coco.imgs[i]["file_name"]))]
            if missing:
                raise FileNotFoundError(f"root {root}: {len(missing)} of {len(self.ids)} image files named in "
                                        f"{ann_file} do not exist, e.g. {missing[:3]} (check_files=False to skip)")

    @property
    def num_classes(self) -> int:
        """``C``, the number of categories (labels are ``1..C``)."""
        return len(self.label_to_category)

    def __len__(self) -> int:
        return len(self.ids)

    def annotations(self, i: int):
        """``(boxes [N, 4] xyxy, labels [N], (height, width))`` of image ``i``."""
        image_id = self.ids[i]
        info = self.coco.imgs[image_id]
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        labels = torch.as_tensor([self.category_to_label[a["category_id"]] for a in anns], dtype=torch.int64)
        return _xyxy(anns), labels, (int(info["height"]), int(info["width"]))

    def ignore_boxes(self, i: int) -> torch.Tensor:
        """``[I, 4]`` xyxy boxes of image ``i``'s crowd annotations."""
        return _xyxy([a for a in self.coco.imgToAnns.get(self.ids[i], []) if a.get("iscrowd", 0)])

    def __getitem__(self, i: int):
        from PIL import Image

        image_id = self.ids[i]
        path = os.path.join(self.root, self.coco.imgs[image_id]["file_name"])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image {image_id}: no such file: {path}")
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        boxes, labels, size = self.annotations(i)
        if arr.shape[:2] != size:
            raise ValueError(f"image {image_id}: {path} is {arr.shape[0]}x{arr.shape[1]} (HxW) but the annotation "
                             f"file says {size[0]}x{size[1]}; its boxes and chips would be misplaced")
        image = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255)
        return image, {"boxes": boxes, "labels": labels, "ignore_boxes": self.ignore_boxes(i), "image_id": image_id}


def _xyxy(anns) -> torch.Tensor:
    b = np.asarray([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
    b[:, 2:] += b[:, :2]
    return torch.from_numpy(b)
