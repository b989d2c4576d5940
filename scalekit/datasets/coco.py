"""COCO-format detection data through pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
import math
import numbers
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

    The annotation file is checked when the dataset is built, and anything
    malformed raises a ``ValueError`` that names the file, the entry and what
    is wrong: every image needs a unique ``id``, a ``file_name`` and positive
    whole ``height`` and ``width``; every category a unique ``id``; every
    annotation a unique ``id``, an ``image_id`` among the images, a
    ``category_id`` among the categories and a ``bbox`` of four finite numbers
    ``[x, y, width, height]`` with ``width, height >= 0`` (NaN and infinite
    boxes are refused, never passed on). Every image file is checked to exist
    (``check_files=True``), and a file whose size differs from the JSON's
    ``height``/``width`` raises a ``ValueError`` when it is read: chips and
    boxes are planned in the JSON's pixels.

    ``transforms(image, target) -> (image, target)`` is applied to every item
    after it is read, as torchvision's v2 transforms are called: with
    torchvision installed, the image arrives as a ``tv_tensors.Image`` and
    ``"boxes"`` and ``"ignore_boxes"`` as ``tv_tensors.BoundingBoxes`` (XYXY,
    ``canvas_size`` the image's), so that flips, crops and resizes move them
    with the pixels; the dataset returns plain tensors again (``boxes``
    float32) and checks that there is still one label per box. Chip planning
    (:meth:`annotations`, :class:`~scalekit.chips.ChipDataset`) sees the
    untransformed annotations.

    Args:
        root: folder of the image files.
        ann_file: the COCO JSON.
        check_files: check at construction that every image file exists.
        transforms: optional ``(image, target) -> (image, target)`` callable,
            e.g. ``torchvision.transforms.v2.RandomHorizontalFlip()``.

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

    def __init__(self, root, ann_file, *, check_files: bool = True, transforms=None) -> None:
        from pycocotools.coco import COCO

        if not os.path.isdir(root):
            raise FileNotFoundError(f"root: no such image folder: {root}")
        if not os.path.isfile(ann_file):
            raise FileNotFoundError(f"ann_file: no such annotation file: {ann_file}")
        if transforms is not None and not callable(transforms):
            raise TypeError(f"transforms must be a callable (image, target) -> (image, target), "
                            f"got {type(transforms).__name__}")
        data = _read_json(ann_file)
        _check_coco(data, ann_file)
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()
        self.root = root
        self.transforms = transforms
        self.ids = sorted(self.coco.imgs.keys())
        cats = sorted(self.coco.getCatIds())
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
        target = {"boxes": boxes, "labels": labels, "ignore_boxes": self.ignore_boxes(i), "image_id": image_id}
        if self.transforms is not None:
            image, target = _apply(self.transforms, image, target, image_id)
        return image, target


def _apply(transforms, image, target, image_id):
    """``transforms(image, target)`` with torchvision's tv_tensors where torchvision is installed."""
    try:
        from torchvision import tv_tensors
    except Exception:  # no torchvision: a plain (image, target) callable
        tv_tensors = None
    if tv_tensors is not None:
        size = tuple(image.shape[-2:])
        image = tv_tensors.Image(image)
        target = dict(target)
        for key in ("boxes", "ignore_boxes"):
            target[key] = tv_tensors.BoundingBoxes(target[key], format="XYXY", canvas_size=size)
    out = transforms(image, target)
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], dict)):
        raise TypeError(f"image {image_id}: transforms must return (image, target dict), got {type(out).__name__}")
    image, target = out
    if isinstance(image, torch.Tensor):
        image = image.as_subclass(torch.Tensor)
    target = dict(target)
    for key in ("boxes", "ignore_boxes"):
        if key in target:
            target[key] = torch.as_tensor(target[key]).as_subclass(torch.Tensor).to(torch.float32).reshape(-1, 4)
    if "labels" in target and "boxes" in target and len(target["labels"]) != len(target["boxes"]):
        raise ValueError(f"image {image_id}: after transforms there are {len(target['boxes'])} boxes but "
                         f"{len(target['labels'])} labels; a transform that drops boxes must drop their labels "
                         "(torchvision's SanitizeBoundingBoxes does)")
    return image, target


def _read_json(ann_file):
    try:
        with open(ann_file, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"ann_file {ann_file} is not valid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"ann_file {ann_file} is not UTF-8 text: {exc}") from exc


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_coco(data, ann_file) -> None:
    """Raise a ``ValueError`` naming the first malformed entry of a COCO dict."""
    where = f"ann_file {ann_file}"
    if not isinstance(data, dict):
        raise ValueError(f"{where}: a COCO file is a JSON object with 'images', 'annotations' and 'categories', "
                         f"got a JSON {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data and key == "annotations":
            continue
        if not isinstance(data.get(key), list):
            raise ValueError(f"{where}: '{key}' must be a list, got "
                             f"{'nothing' if key not in data else type(data[key]).__name__}")
    images = {}
    for k, img in enumerate(data["images"]):
        if not isinstance(img, dict):
            raise ValueError(f"{where}: images[{k}] must be an object, got {type(img).__name__}")
        iid = img.get("id")
        name = f"images[{k}] (id {iid!r})"
        if not _is_int(iid):
            raise ValueError(f"{where}: images[{k}] needs an integer 'id', got {iid!r}")
        if iid in images:
            raise ValueError(f"{where}: image id {iid} appears twice (images[{images[iid][0]}] and images[{k}])")
        if not isinstance(img.get("file_name"), str) or not img["file_name"]:
            raise ValueError(f"{where}: {name} needs a 'file_name' string, got {img.get('file_name')!r}")
        for key in ("height", "width"):
            v = img.get(key)
            if not (_is_real(v) and math.isfinite(v) and v > 0 and float(v).is_integer()):
                raise ValueError(f"{where}: images[{k}] (id {iid}, {img['file_name']}) needs a positive whole '{key}', "
                                 f"got {'nothing' if key not in img else repr(v)}")
        images[iid] = (k, img["file_name"])
    cats = set()
    for k, cat in enumerate(data["categories"]):
        cid = cat.get("id") if isinstance(cat, dict) else None
        if not _is_int(cid):
            raise ValueError(f"{where}: categories[{k}] needs an integer 'id', got {cat!r}")
        if cid in cats:
            raise ValueError(f"{where}: category id {cid} appears twice")
        cats.add(cid)
    anns = {}
    for k, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict):
            raise ValueError(f"{where}: annotations[{k}] must be an object, got {type(ann).__name__}")
        aid, iid = ann.get("id"), ann.get("image_id")
        if not _is_int(aid):
            raise ValueError(f"{where}: annotations[{k}] needs an integer 'id', got {aid!r}")
        if not _is_int(iid) or iid not in images:
            raise ValueError(f"{where}: annotation {aid} has image_id {iid!r}, which is not among the file's images")
        name = f"annotation {aid} (image {iid}, {images[iid][1]})"
        if aid in anns:
            j, other = anns[aid]
            raise ValueError(f"{where}: annotation id {aid} appears twice (annotations[{j}] of image {other} and "
                             f"annotations[{k}] of image {iid}); pycocotools would keep one and lose the other")
        anns[aid] = (k, iid)
        if not _is_int(ann.get("category_id")) or ann["category_id"] not in cats:
            raise ValueError(f"{where}: {name} has category_id {ann.get('category_id')!r}, "
                             f"which is not among the file's categories")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_is_real(v) for v in bbox)):
            raise ValueError(f"{where}: {name} has a malformed bbox {bbox!r} "
                             "(expected [x, y, width, height] with width, height >= 0)")
        if not all(math.isfinite(v) for v in bbox):
            raise ValueError(f"{where}: {name} has a non-finite bbox {bbox!r}")
        if bbox[2] < 0 or bbox[3] < 0:
            raise ValueError(f"{where}: {name} has a malformed bbox {bbox!r} "
                             "(expected [x, y, width, height] with width, height >= 0)")
        if ann.get("iscrowd", 0) not in (0, 1):
            raise ValueError(f"{where}: {name} has iscrowd {ann.get('iscrowd')!r}, expected 0 or 1")


def _xyxy(anns) -> torch.Tensor:
    b = np.asarray([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
    b[:, 2:] += b[:, :2]
    return torch.from_numpy(b)
