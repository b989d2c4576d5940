"""A seeded synthetic dataset with hundreds of fine-grained classes in a few shape
families, for R-FCN-3000 (thesis ch. 4): COCO-format detection images, an
image-level classification split (object crops, no boxes) and held-out classes.

A *family* is a shape (square, disc, triangle, ...), the natural super-class:
every class of a family has its outline. A *class* inside a family differs in
colour, texture (solid, stripes, checks, dots) and a small mark in one corner.
The taxonomy is drawn from ``taxonomy_seed`` alone, so that detection and
classification splits drawn with different seeds share one set of classes.
"""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["FINE_FAMILIES", "fine_grained_taxonomy", "make_synthetic_fine_coco", "make_synthetic_fine_classification"]

FINE_FAMILIES = ("square", "disc", "triangle", "diamond", "cross", "ring", "frame", "half_disc")
_COLOURS = ((230, 40, 40), (40, 200, 60), (50, 80, 230), (240, 220, 40), (230, 60, 220), (40, 220, 230),
            (250, 140, 20), (140, 60, 200), (250, 250, 250), (20, 20, 20), (140, 90, 40), (120, 180, 120))
_TEXTURES = ("solid", "h_stripes", "v_stripes", "checks", "dots")
_MARKS = ("none", "top_left", "top_right", "bottom_left", "bottom_right")
_COMBINATIONS = len(_COLOURS) * len(_TEXTURES) * len(_MARKS)  # classes one family can hold (300)


def fine_grained_taxonomy(num_families: int = 5, classes_per_family: int = 40, seed: int = 0) -> list[dict]:
    """The classes: ``num_families * classes_per_family`` COCO categories.

    Each is ``{"id", "name", "supercategory", "family", "colour", "texture",
    "mark"}``; ``id`` runs ``1..C`` family by family, ``supercategory`` is the
    family's shape name and ``family`` its index in :data:`FINE_FAMILIES`.

    Args:
        num_families: shape families, ``1..8``.
        classes_per_family: fine classes per family, ``1..300`` (12 colours x
            5 textures x 5 marks); 8 x 300 = 2,400 classes at most.
        seed: which combinations each family takes.

    Example:
        >>> from scalekit.datasets.synthetic import fine_grained_taxonomy
        >>> cats = fine_grained_taxonomy(num_families=5, classes_per_family=40)
        >>> len(cats), cats[0]["supercategory"], cats[40]["supercategory"], cats[-1]["id"]
        (200, 'square', 'disc', 200)
    """
    if not 1 <= num_families <= len(FINE_FAMILIES):
        raise ValueError(f"num_families must lie in [1, {len(FINE_FAMILIES)}], got {num_families}")
    if not 1 <= classes_per_family <= _COMBINATIONS:
        raise ValueError(f"classes_per_family must lie in [1, {_COMBINATIONS}], got {classes_per_family}")
    rng = np.random.default_rng(seed)
    cats = []
    for f in range(num_families):
        for combo in rng.permutation(_COMBINATIONS)[:classes_per_family].tolist():
            colour, rest = divmod(combo, len(_TEXTURES) * len(_MARKS))
            texture, mark = divmod(rest, len(_MARKS))
            cid = len(cats) + 1
            cats.append({"id": cid, "name": f"{FINE_FAMILIES[f]}_{cid}", "supercategory": FINE_FAMILIES[f],
                         "family": f, "colour": colour, "texture": texture, "mark": mark})
    return cats


def _mask(family: int, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    u, v = (xx + 0.5) / w * 2 - 1, (yy + 0.5) / h * 2 - 1  # [-1, 1] across the box
    name = FINE_FAMILIES[family]
    if name == "square":
        return np.ones((h, w), dtype=bool)
    if name == "disc":
        return u ** 2 + v ** 2 <= 1
    if name == "triangle":
        return (v + 1) / 2 >= np.abs(u)
    if name == "diamond":
        return np.abs(u) + np.abs(v) <= 1
    if name == "cross":
        return (np.abs(u) <= 0.4) | (np.abs(v) <= 0.4)
    if name == "ring":
        r = u ** 2 + v ** 2
        return (r <= 1) & (r >= 0.3)
    if name == "frame":
        return (np.abs(u) >= 0.5) | (np.abs(v) >= 0.5)
    return (u ** 2 + v ** 2 <= 1) & (v >= -0.1) | ((np.abs(u) <= 1) & (v >= 0.6))  # half_disc: a bowl on a bar


def _render(canvas: np.ndarray, cat: dict, x: int, y: int, w: int, h: int, rng: np.random.Generator) -> None:
    inside = _mask(cat["family"], h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    colour = np.clip(np.asarray(_COLOURS[cat["colour"]], dtype=np.float64) + rng.normal(0, 10, 3), 0, 255)
    period = max(2, min(h, w) // 5)
    texture = _TEXTURES[cat["texture"]]
    if texture == "solid":
        dark = np.zeros((h, w), dtype=bool)
    elif texture == "h_stripes":
        dark = (yy // period) % 2 == 1
    elif texture == "v_stripes":
        dark = (xx // period) % 2 == 1
    elif texture == "checks":
        dark = ((yy // period) + (xx // period)) % 2 == 1
    else:
        dark = ((yy % (2 * period)) < period // 2 + 1) & ((xx % (2 * period)) < period // 2 + 1)
    patch = np.where(dark[..., None], colour * 0.45, colour)
    mark = _MARKS[cat["mark"]]
    if mark != "none":
        m = max(2, min(h, w) // 4)
        top = mark.startswith("top")
        left = mark.endswith("left")
        ys = slice(int(h * 0.15), int(h * 0.15) + m) if top else slice(h - int(h * 0.15) - m, h - int(h * 0.15))
        xs = slice(int(w * 0.15), int(w * 0.15) + m) if left else slice(w - int(w * 0.15) - m, w - int(w * 0.15))
        bright = colour.mean() < 128
        patch[ys, xs] = 255.0 if bright else 0.0
        inside = inside.copy()
        inside[ys, xs] = True
    region = canvas[y:y + h, x:x + w]
    region[inside] = patch[inside]


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    coarse = rng.normal(110, 25, (h // 8 + 1, w // 8 + 1, 3)).clip(0, 255).repeat(8, 0).repeat(8, 1)[:h, :w]
    return (coarse + rng.normal(0, 10, (h, w, 3))).clip(0, 255)


def _check_classes(classes, cats) -> list[dict]:
    if classes is None:
        return cats
    ids = {c["id"]: c for c in cats}
    chosen = [int(c) for c in classes]
    unknown = [c for c in chosen if c not in ids]
    if unknown or not chosen:
        raise ValueError(f"classes must be a non-empty list of category ids in 1..{len(cats)}, got {unknown or chosen}")
    return [ids[c] for c in sorted(set(chosen))]


def make_synthetic_fine_coco(root, num_images: int = 100, seed: int = 0, *, num_families: int = 5,
                             classes_per_family: int = 40, taxonomy_seed: int = 0, classes=None,
                             image_size: tuple[int, int] = (128, 128), objects: tuple[int, int] = (1, 4),
                             object_size: tuple[int, int] = (24, 56)):
    """Write a COCO-format detection set of fine-grained classes (images + JSON).

    Objects are placed without overlapping much (IoU below 0.1 with earlier ones).
    The JSON lists every class of the taxonomy (:func:`fine_grained_taxonomy`)
    as a category with its family as ``supercategory``, whether or not
    ``classes`` lets it be drawn, so that splits share category ids.

    Args:
        root: output folder (created); images go to ``root/images``.
        num_images: how many images.
        seed: the images' content.
        num_families, classes_per_family, taxonomy_seed: the taxonomy.
        classes: category ids that may be drawn (default: all); a detector's
            training split leaves the held-out classes out.
        image_size: ``(height, width)``.
        objects: (min, max) objects per image.
        object_size: (min, max) side of an object's box in pixels (log-uniform).

    Returns:
        ``(image_folder, annotation_json_path)``.

    Example:
        >>> import tempfile
        >>> from scalekit.datasets import CocoDetection
        >>> from scalekit.datasets.synthetic import make_synthetic_fine_coco
        >>> images, ann = make_synthetic_fine_coco(tempfile.mkdtemp(), num_images=3, classes=[1, 2, 41])
        >>> ds = CocoDetection(images, ann)
        >>> ds.num_classes, sorted({int(l) for i in range(3) for l in ds.annotations(i)[1]}) <= [1, 2, 41]
        (200, True)
    """
    from PIL import Image

    cats = fine_grained_taxonomy(num_families, classes_per_family, taxonomy_seed)
    drawable = _check_classes(classes, cats)
    h, w = image_size
    lo, hi = object_size
    if not 2 <= lo <= hi < min(h, w):
        raise ValueError(f"object_size must satisfy 2 <= min <= max < min(image_size) = {min(h, w)}, got {object_size}")
    if not 0 <= objects[0] <= objects[1]:
        raise ValueError(f"objects must be (min, max) with 0 <= min <= max, got {objects}")
    rng = np.random.default_rng(seed)
    image_dir = os.path.join(root, "images")
    os.makedirs(image_dir, exist_ok=True)
    coco = {"images": [], "annotations": [], "categories": cats}
    for image_id in range(1, num_images + 1):
        canvas = _background(rng, h, w)
        placed = []
        for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
            for _attempt in range(20):
                size = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
                aspect = float(rng.uniform(0.75, 1.33))
                bw = int(min(w - 1, max(2, size * np.sqrt(aspect))))
                bh = int(min(h - 1, max(2, size / np.sqrt(aspect))))
                x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                if all(_iou((x, y, bw, bh), p) < 0.1 for p in placed):
                    break
            else:
                continue
            cat = drawable[int(rng.integers(len(drawable)))]
            _render(canvas, cat, x, y, bw, bh, rng)
            placed.append((x, y, bw, bh))
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                        "category_id": cat["id"], "bbox": [x, y, bw, bh], "area": bw * bh,
                                        "iscrowd": 0})
        name = f"{image_id:06d}.png"
        Image.fromarray(canvas.astype(np.uint8)).save(os.path.join(image_dir, name))
        coco["images"].append({"id": image_id, "file_name": name, "height": h, "width": w})
    ann = os.path.join(root, "annotations.json")
    with open(ann, "w") as f:
        json.dump(coco, f)
    return image_dir, ann


def make_synthetic_fine_classification(root, per_class: int = 10, seed: int = 0, *, num_families: int = 5,
                                       classes_per_family: int = 40, taxonomy_seed: int = 0, classes=None,
                                       crop_size: int = 40):
    """Write an image-level classification split: one object per crop and its class label.

    The object fills 60-95% of the crop's side at a random place, over the
    same clutter as the detection images. The labels file is
    ``{"categories": [...], "images": [{"id", "file_name", "category_id",
    "height", "width", "bbox"}]}`` (COCO's image and category records, no
    annotations). ``bbox`` is the object's ``[x, y, w, h]``, as ImageNet's
    classification images carry a box (thesis §4.4.1): classification
    readers ignore it, a detector trained on classification images uses it.

    Args:
        root: output folder (created); crops go to ``root/images``.
        per_class: crops per class.
        seed: the crops' content.
        num_families, classes_per_family, taxonomy_seed: the taxonomy
            (as :func:`make_synthetic_fine_coco`).
        classes: category ids to write crops of (default: all).
        crop_size: side of the square crops in pixels.

    Returns:
        ``(image_folder, labels_json_path)``.

    Example:
        >>> import json, tempfile
        >>> from scalekit.datasets.synthetic import make_synthetic_fine_classification
        >>> images, labels = make_synthetic_fine_classification(tempfile.mkdtemp(), per_class=2, classes=[3, 7])
        >>> sorted(r["category_id"] for r in json.load(open(labels))["images"])
        [3, 3, 7, 7]
    """
    from PIL import Image

    cats = fine_grained_taxonomy(num_families, classes_per_family, taxonomy_seed)
    drawable = _check_classes(classes, cats)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    if crop_size < 8:
        raise ValueError(f"crop_size must be >= 8 pixels, got {crop_size}")
    rng = np.random.default_rng(seed)
    image_dir = os.path.join(root, "images")
    os.makedirs(image_dir, exist_ok=True)
    records = []
    for cat in drawable:
        for _ in range(per_class):
            canvas = _background(rng, crop_size, crop_size)
            bw = int(crop_size * rng.uniform(0.6, 0.95))
            bh = int(crop_size * rng.uniform(0.6, 0.95))
            x, y = int(rng.integers(0, crop_size - bw + 1)), int(rng.integers(0, crop_size - bh + 1))
            _render(canvas, cat, x, y, bw, bh, rng)
            rid = len(records) + 1
            name = f"{rid:07d}.png"
            Image.fromarray(canvas.astype(np.uint8)).save(os.path.join(image_dir, name))
            records.append({"id": rid, "file_name": name, "category_id": cat["id"], "height": crop_size,
                            "width": crop_size, "bbox": [x, y, bw, bh]})
    path = os.path.join(root, "labels.json")
    with open(path, "w") as f:
        json.dump({"categories": cats, "images": records}, f)
    return image_dir, path


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter)
