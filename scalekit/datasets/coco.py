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
    float32, "labels": [N] int64 category ids, "image_id": int})``; crowd
    annotations are left out. ``annotations(i)`` gives ``(boxes, labels,
    (height, width))`` without reading the image.

    Args:
        root: folder of the image files.
        ann_file: the COCO JSON.

    Example:
        >>> import tempfile
        >>> from scalekit.datasets import CocoDetection, make_synthetic_coco
        >>> root, ann = make_synthetic_coco(tempfile.mkdtemp(), num_images=2, seed=0)
        >>> ds = CocoDetection(root, ann)
        >>> image, target = ds[0]
        >>> image.shape[0], target["boxes"].shape[1], len(ds)
        (3, 4, 2)
    """

    def __init__(self, root, ann_file) -> None:
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

    def __len__(self) -> int:
        return len(self.ids)

    def annotations(self, i: int):
        """``(boxes [N, 4] xyxy, labels [N], (height, width))`` of image ``i``."""
        image_id = self.ids[i]
        info = self.coco.imgs[image_id]
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        b = np.asarray([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        b[:, 2:] += b[:, :2]
        labels = torch.as_tensor([a["category_id"] for a in anns], dtype=torch.int64)
        return torch.from_numpy(b), labels, (int(info["height"]), int(info["width"]))

    def __getitem__(self, i: int):
        from PIL import Image

        image_id = self.ids[i]
        path = os.path.join(self.root, self.coco.imgs[image_id]["file_name"])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image {image_id}: no such file: {path}")
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        image = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255)
        boxes, labels, _ = self.annotations(i)
        return image, {"boxes": boxes, "labels": labels, "image_id": image_id}
