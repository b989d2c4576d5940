"""A seeded synthetic COCO-format dataset with extreme scale variation, written
to disk as images and a COCO JSON, so that every COCO tool reads it."""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["make_synthetic_coco", "make_synthetic_small_objects", "SYNTHETIC_CLASSES"]

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


def _clutter(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """``[h, w, 3]`` uint8 background: 8-px blocks of random grey-brown plus pixel noise."""
    canvas = (rng.normal(110, 25, (h // 8 + 1, w // 8 + 1, 3)).clip(0, 255)).repeat(8, 0).repeat(8, 1)[:h, :w]
    return (canvas + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)


def _new_dataset(root) -> tuple[str, dict]:
    image_dir = os.path.join(root, "images")
    os.makedirs(image_dir, exist_ok=True)
    return image_dir, {"images": [], "annotations": [],
                       "categories": [{"id": i + 1, "name": n} for i, n in enumerate(SYNTHETIC_CLASSES)]}


def _add_object(coco: dict, image_id: int, cls: int, x: int, y: int, w: int, h: int) -> None:
    coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": cls + 1,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})


def _add_image(coco: dict, image_dir: str, image_id: int, canvas: np.ndarray) -> None:
    from PIL import Image

    name = f"{image_id:06d}.jpg"
    Image.fromarray(canvas).save(os.path.join(image_dir, name), quality=90)
    coco["images"].append({"id": image_id, "file_name": name, "height": canvas.shape[0], "width": canvas.shape[1]})


def _write_json(root, coco: dict) -> str:
    ann = os.path.join(root, "annotations.json")
    with open(ann, "w") as f:
        json.dump(coco, f)
    return ann


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
    def draw(canvas, cls, x, y, bw, bh, rng):
        _draw(canvas, cls, x, y, bw, bh, rng, detail)

    return _scattered_objects(root, num_images, seed, draw, min_size=min_size, max_size=max_size, objects=objects,
                              image_sizes=image_sizes)


def _scattered_objects(root, num_images: int, seed: int, draw, *, min_size, max_size, objects, image_sizes):
    """The layout of :func:`make_synthetic_coco` (image sizes, clutter, object count, log-uniform sizes,
    aspect, place, class), each object drawn by ``draw(canvas, cls, x, y, w, h, rng)``; one copy of
    the layout for every renderer, so that renderers that draw as many random numbers give the same boxes."""
    rng = np.random.default_rng(seed)
    image_dir, coco = _new_dataset(root)
    for image_id in range(1, num_images + 1):
        h, w = image_sizes[rng.integers(len(image_sizes))]
        canvas = _clutter(rng, h, w)
        for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
            size = float(np.exp(rng.uniform(np.log(min_size), np.log(min(max_size, min(h, w) - 1)))))
            aspect = float(rng.uniform(0.6, 1.6))
            bw, bh = max(2, int(size * np.sqrt(aspect))), max(2, int(size / np.sqrt(aspect)))
            bw, bh = min(bw, w - 1), min(bh, h - 1)
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            cls = int(rng.integers(len(SYNTHETIC_CLASSES)))
            draw(canvas, cls, x, y, bw, bh, rng)
            _add_object(coco, image_id, cls, x, y, bw, bh)
        _add_image(coco, image_dir, image_id, canvas)
    return image_dir, _write_json(root, coco)


def make_synthetic_small_objects(root, num_images: int = 10, seed: int = 0, *, image_size=(1500, 2000),
                                 clusters=(2, 5), per_cluster=(5, 25), spread=(40.0, 120.0), small=(4, 32),
                                 large=(1, 3), large_size=(120, 400), dense: bool = False):
    """Write a high-resolution small-object dataset (aerial, drone or microscopy
    images in miniature): large images where tiny objects gather in a few sparse
    clusters and a few large objects lie elsewhere, so that most of the image
    holds no small object — the setting of sliced inference and AutoFocus.

    Objects are the squares, discs and triangles of :func:`make_synthetic_coco`
    on the same clutter. Per image: ``clusters`` (min, max) cluster centres,
    uniform over the image; per cluster ``per_cluster`` (min, max) objects
    whose centres are Gaussian around it with a standard deviation drawn from
    ``spread`` (pixels); their sizes are log-uniform in ``small`` (sqrt of area,
    pixels); then ``large`` (min, max) objects of ``large_size``. A candidate
    that overlaps an object already placed (any shared pixel) is redrawn up to
    20 times, then left out, so that no object hides another.
    ``dense=True`` is the crowded variant: 4x the clusters, 2x the objects per
    cluster, half the spread.

    Args:
        root: output folder (created); images go to ``root/images``.
        num_images: how many images.
        seed: everything is drawn from this seed.
        image_size: ``(height, width)`` of every image.

    Returns:
        ``(image_folder, annotation_json_path)``, COCO format.

    Example:
        >>> import json, tempfile
        >>> from scalekit.datasets.synthetic import make_synthetic_small_objects
        >>> images, ann = make_synthetic_small_objects(tempfile.mkdtemp(), num_images=1, image_size=(300, 400),
        ...                                            large_size=(60, 120))
        >>> sizes = [(a["bbox"][2] * a["bbox"][3]) ** 0.5 for a in json.load(open(ann))["annotations"]]
        >>> sum(s <= 32 for s in sizes) > sum(s > 32 for s in sizes)
        True
    """
    h, w = (int(v) for v in image_size)
    if dense:
        clusters = (4 * clusters[0], 4 * clusters[1])
        per_cluster = (2 * per_cluster[0], 2 * per_cluster[1])
        spread = (spread[0] / 2, spread[1] / 2)
    if min(small) < 2 or small[0] > small[1] or max(small[1], large_size[1]) >= min(h, w):
        raise ValueError(f"object sizes must satisfy 2 <= small[0] <= small[1] and fit the image {image_size}, "
                         f"got small={small}, large_size={large_size}")
    rng = np.random.default_rng(seed)
    image_dir, coco = _new_dataset(root)
    for image_id in range(1, num_images + 1):
        canvas = _clutter(rng, h, w)
        taken = np.zeros((h, w), dtype=bool)
        wanted = []  # (size range, centre or None)
        for _ in range(int(rng.integers(clusters[0], clusters[1] + 1))):
            cx, cy, sd = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(*spread)
            wanted += [(small, (cx, cy, sd))] * int(rng.integers(per_cluster[0], per_cluster[1] + 1))
        wanted += [(large_size, None)] * int(rng.integers(large[0], large[1] + 1))
        for sizes, centre in wanted:
            for _ in range(20):
                size = float(np.exp(rng.uniform(np.log(sizes[0]), np.log(sizes[1]))))
                aspect = float(rng.uniform(0.6, 1.6))
                bw, bh = max(2, round(size * np.sqrt(aspect))), max(2, round(size / np.sqrt(aspect)))
                bw, bh = min(bw, w - 1), min(bh, h - 1)
                if centre is None:
                    x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                else:
                    cx, cy, sd = centre
                    x = int(np.clip(round(rng.normal(cx, sd) - bw / 2), 0, w - bw))
                    y = int(np.clip(round(rng.normal(cy, sd) - bh / 2), 0, h - bh))
                if not taken[y : y + bh, x : x + bw].any():
                    break
            else:
                continue
            taken[y : y + bh, x : x + bw] = True
            cls = int(rng.integers(len(SYNTHETIC_CLASSES)))
            _draw(canvas, cls, x, y, bw, bh, rng)
            _add_object(coco, image_id, cls, x, y, bw, bh)
        _add_image(coco, image_dir, image_id, canvas)
    return image_dir, _write_json(root, coco)
