"""A seeded synthetic COCO-format dataset with extreme scale variation, written
to disk as images and a COCO JSON, so that every COCO tool reads it."""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["make_synthetic_coco", "SYNTHETIC_CLASSES"]

SYNTHETIC_CLASSES = ("square", "disc", "triangle")


def _detail(cls: int, xx: np.ndarray, yy: np.ndarray, w: int, h: int, period: int) -> np.ndarray:
    """A pattern with a fixed period in image pixels: large objects show many fine
    lines, small ones few; an up-sampled small object shows coarse ones."""
    half = period / 2
    if cls == 0:
        return (xx % period) < half  # vertical lines
    if cls == 1:
        r = np.sqrt((xx + 0.5 - w / 2) ** 2 + (yy + 0.5 - h / 2) ** 2)
        return (r % period) < half  # rings
    return ((xx // half + yy // half) % 2) == 0  # checkerboard


def _draw(canvas: np.ndarray, cls: int, x: int, y: int, w: int, h: int, rng: np.random.Generator,
          detail: int = 0) -> None:
    yy, xx = np.mgrid[0:h, 0:w]
    if cls == 0:
        inside = np.ones((h, w), dtype=bool)
    elif cls == 1:
        inside = ((xx + 0.5 - w / 2) / (w / 2)) ** 2 + ((yy + 0.5 - h / 2) / (h / 2)) ** 2 <= 1
    else:
        inside = (yy + 0.5) >= h * np.abs((xx + 0.5) / w - 0.5) * 2
    colour = rng.integers(40, 255, 3)
    stripes = ((xx // max(1, w // 6)) % 2 == 0)[..., None] if cls == 0 else 1  # texture per class
    patch = canvas[y : y + h, x : x + w]
    patch[inside] = (colour * np.where(stripes, 1.0, 0.6) if cls == 0 else
                     np.broadcast_to(colour, (h, w, 3)))[inside]
    if detail:
        fine = _detail(cls, xx, yy, w, h, detail) & inside
        patch[fine] = (patch[fine] * 0.45).astype(patch.dtype)


def make_synthetic_coco(root, num_images: int = 50, seed: int = 0, *, min_size: int = 8, max_size: int = 400,
                        objects=(1, 12), image_sizes=((480, 640), (600, 800), (768, 1024), (1000, 750)),
                        detail: int = 0):
    """Write a synthetic detection dataset: images of squares, discs and triangles
    from ``min_size`` to ``max_size`` pixels (log-uniform) over textured clutter.

    Args:
        root: output folder (created); images go to ``root/images``.
        num_images: how many images.
        seed: everything is drawn from this seed.
        min_size, max_size: object size range in pixels.
        objects: (min, max) objects per image.
        image_sizes: ``(height, width)`` choices.
        detail: if positive, objects also carry a class-specific pattern with
            this period in image pixels (lines, rings, checks), so that
            appearance depends on size as in real images: a large object shows
            fine detail that an up-sampled small one lacks (the domain shift of
            thesis §2.3). 0 (default): no pattern. Draws no extra random
            numbers, so boxes and layout are the same either way.

    Returns:
        ``(image_folder, annotation_json_path)``.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    image_dir = os.path.join(root, "images")
    os.makedirs(image_dir, exist_ok=True)
    coco = {"images": [], "annotations": [],
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(SYNTHETIC_CLASSES)]}
    for image_id in range(1, num_images + 1):
        h, w = image_sizes[rng.integers(len(image_sizes))]
        canvas = (rng.normal(110, 25, (h // 8 + 1, w // 8 + 1, 3)).clip(0, 255)).repeat(8, 0).repeat(8, 1)[:h, :w]
        canvas = (canvas + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
        for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
            size = float(np.exp(rng.uniform(np.log(min_size), np.log(min(max_size, min(h, w) - 1)))))
            aspect = float(rng.uniform(0.6, 1.6))
            bw, bh = max(2, int(size * np.sqrt(aspect))), max(2, int(size / np.sqrt(aspect)))
            bw, bh = min(bw, w - 1), min(bh, h - 1)
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            cls = int(rng.integers(len(SYNTHETIC_CLASSES)))
            _draw(canvas, cls, x, y, bw, bh, rng, detail)
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                        "category_id": cls + 1, "bbox": [x, y, bw, bh], "area": bw * bh,
                                        "iscrowd": 0})
        name = f"{image_id:06d}.jpg"
        Image.fromarray(canvas).save(os.path.join(image_dir, name), quality=90)
        coco["images"].append({"id": image_id, "file_name": name, "height": h, "width": w})
    ann = os.path.join(root, "annotations.json")
    with open(ann, "w") as f:
        json.dump(coco, f)
    return image_dir, ann
