"""Scale-true synthetic objects: every pixel is the average of a pattern that lives in
the object's own coordinates, so a small object is a low-pass (area-down-sampled)
copy of the same object drawn large, as in real images (thesis §2.3, §2.5).

:func:`make_synthetic_coco` draws its optional ``detail`` pattern with a fixed
period in image pixels and samples every pixel at one point: resizing an image
changes each object's texture by the resize factor, and a small object is not a
blurred copy of a large one. Here the pattern's period is a fixed fraction of
the object (``detail`` periods across it) and each pixel integrates it over its
area (supersampled, then area-down-sampled by an integer factor), so a 16-px
object shows the large object's fine lines averaged away, not coarser lines.
"""

from __future__ import annotations

import math

import numpy as np

from scalekit.datasets.synthetic.coco import SYNTHETIC_CLASSES, _clutter, _draw, _scattered_objects

__all__ = ["render_scale_true_object", "make_synthetic_scale_true_coco", "make_synthetic_scale_crops"]

DETAIL_PERIODS = 16  # fine-pattern periods across an object: visible at 64 px, averaged away at 16 px
MIN_SAMPLES = 256  # supersampled points across an object's longer side (at least one per pixel)


def _pattern(cls: int, u: np.ndarray, v: np.ndarray, detail: int) -> tuple[np.ndarray, np.ndarray]:
    """Inside mask and brightness factor of class ``cls`` at object coordinates ``u, v`` (0..1 across
    the box): the shapes of :func:`make_synthetic_coco` (square with 6 coarse stripes, disc,
    triangle), and with ``detail > 0`` the same class patterns (lines, rings, checks) with
    ``detail`` periods across the object, darkened to 0.45."""
    if cls == 0:
        inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
        shade = np.where(np.floor(u * 6) % 2 == 0, 1.0, 0.6)
    elif cls == 1:
        inside = (2 * u - 1) ** 2 + (2 * v - 1) ** 2 <= 1
        shade = np.ones_like(u)
    else:
        inside = (v < 1) & (v >= 2 * np.abs(u - 0.5))
        shade = np.ones_like(u)
    if detail:
        if cls == 0:
            fine = (u * detail) % 1 < 0.5
        elif cls == 1:
            fine = (np.sqrt((u - 0.5) ** 2 + (v - 0.5) ** 2) * detail) % 1 < 0.5
        else:
            fine = (np.floor(2 * detail * u) + np.floor(2 * detail * v)) % 2 == 0
        shade = np.where(fine, shade * 0.45, shade)
    return inside, shade


def _area_down(a: np.ndarray, f: int) -> np.ndarray:
    """``[H*f, W*f, ...] -> [H, W, ...]``: the mean of each ``f x f`` block (area down-sampling by an
    integer factor, what ``F.interpolate(mode="area")`` does for it)."""
    h, w = a.shape[0] // f, a.shape[1] // f
    return a.reshape(h, f, w, f, *a.shape[2:]).mean(axis=(1, 3))


def render_scale_true_object(cls: int, width: int, height: int, colour, *, detail: int = DETAIL_PERIODS,
                             min_samples: int = MIN_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Draw one object into a ``height x width`` box, each pixel the mean of its area.

    The object is sampled at ``f x f`` points per pixel, ``f = ceil(min_samples / max(width, height))``
    (at least 1), i.e. drawn at high resolution, then area-down-sampled by ``f``. Pattern and shape
    are functions of the object's own coordinates (0..1 across the box), so the result depends on
    the box size only through this low-pass: a box ``k`` times smaller equals the large rendering
    area-down-sampled by ``k`` (up to the sampling error of the supersampling).

    Args:
        cls: class index into :data:`SYNTHETIC_CLASSES` (0 square, 1 disc, 2 triangle).
        width, height: box size in pixels (>= 1).
        colour: 3 RGB values (0..255).
        detail: fine-pattern periods across the object (0: none).
        min_samples: supersampled points across the longer side.

    Returns:
        ``(rgb, coverage)``: float32 ``[height, width, 3]``, the object's colour times its
        coverage (premultiplied), and float32 ``[height, width]``, the fraction of each pixel
        the object covers; composite as ``background * (1 - coverage) + rgb``.

    Example:
        >>> import numpy as np
        >>> rgb, cov = render_scale_true_object(1, 8, 8, (200, 100, 50), detail=0)
        >>> round(float(cov.sum()) / 64, 2)  # a disc covers pi/4 of its box
        0.79
    """
    if cls not in range(len(SYNTHETIC_CLASSES)):
        raise ValueError(f"cls must be in 0..{len(SYNTHETIC_CLASSES) - 1}, got {cls}")
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be >= 1 pixel, got {width} x {height}")
    f = max(1, math.ceil(min_samples / max(width, height)))
    u = (np.arange(width * f) + 0.5) / (width * f)
    v = (np.arange(height * f) + 0.5) / (height * f)
    inside, shade = _pattern(cls, u[None, :], v[:, None], detail)
    cover = inside.astype(np.float32)
    rgb = (cover * shade)[..., None] * np.asarray(colour, dtype=np.float32)
    return _area_down(rgb, f).astype(np.float32), _area_down(cover, f).astype(np.float32)


def _draw_scale_true(canvas: np.ndarray, cls: int, x: int, y: int, w: int, h: int, rng: np.random.Generator,
                     detail: int) -> None:
    colour = rng.integers(40, 255, 3)  # the one draw of make_synthetic_coco's _draw: same boxes, same colours
    rgb, cover = render_scale_true_object(cls, w, h, colour, detail=detail)
    patch = canvas[y : y + h, x : x + w]
    patch[...] = np.rint(patch * (1 - cover[..., None]) + rgb).clip(0, 255).astype(canvas.dtype)


def make_synthetic_scale_true_coco(root, num_images: int = 50, seed: int = 0, *, min_size: int = 8,
                                   max_size: int = 400, objects=(1, 12),
                                   image_sizes=((480, 640), (600, 800), (768, 1024), (1000, 750)),
                                   detail: int = DETAIL_PERIODS):
    """Write :func:`make_synthetic_coco`'s dataset with scale-true objects (thesis §2.3, §2.5).

    Same seed and keywords give the same images' sizes and clutter and the same boxes, classes
    and colours as :func:`make_synthetic_coco` (one layout, log-uniform sizes from ``min_size``
    to ``max_size``, many small objects); only the drawing differs: each object is
    :func:`render_scale_true_object`, its ``detail`` pattern a fixed fraction of the object
    instead of a fixed period in image pixels, its edges and pattern area-averaged. A separate
    function, not a ``render=`` option of :func:`make_synthetic_coco`, so that the older
    generator (and every result made with it) stays exactly as it was and ``detail`` keeps one
    meaning per function (periods per object here, pixels per period there).

    Args:
        root: output folder (created); images go to ``root/images``.
        num_images, seed, min_size, max_size, objects, image_sizes: as :func:`make_synthetic_coco`.
        detail: fine-pattern periods across each object (default 16: a 64-px object shows 4-px
            lines, a 16-px one their average); 0: none.

    Returns:
        ``(image_folder, annotation_json_path)``, COCO format.

    Example:
        >>> import json, tempfile
        >>> from scalekit.datasets.synthetic import make_synthetic_coco, make_synthetic_scale_true_coco
        >>> _, a = make_synthetic_scale_true_coco(tempfile.mkdtemp(), num_images=1, image_sizes=((120, 160),))
        >>> _, b = make_synthetic_coco(tempfile.mkdtemp(), num_images=1, image_sizes=((120, 160),))
        >>> json.load(open(a))["annotations"] == json.load(open(b))["annotations"]
        True
    """
    if detail < 0:
        raise ValueError(f"detail must be >= 0 periods per object, got {detail}")

    def draw(canvas, cls, x, y, bw, bh, rng):
        _draw_scale_true(canvas, cls, x, y, bw, bh, rng, detail)

    return _scattered_objects(root, num_images, seed, draw, min_size=min_size, max_size=max_size, objects=objects,
                              image_sizes=image_sizes)


def make_synthetic_scale_crops(num_images: int, seed: int = 0, *, size: int = 64, resolutions=(48, 32, 24, 16),
                               render: str = "scale_true", detail: int | None = None, fill=(0.55, 0.9)) -> dict:
    """One object per square crop, the same crops at several resolutions: the classification
    set of thesis §2.3 (Fig. 2.4) on the detection data's objects; labels are the classes of
    :data:`SYNTHETIC_CLASSES`, balanced and shuffled.

    Each crop: clutter (:func:`make_synthetic_coco`'s, drawn at ``size``), one object whose box
    side is ``fill`` (uniform) of the crop's, aspect 0.6-1.6 as the detection data, at a random
    place inside, colour as the detection data; both renderers give the same classes, boxes
    and colours for the same seed. The crop at each resolution ``r``:

    * ``render="scale_true"``: the whole crop drawn at ``L`` = the least common multiple of
      ``size`` and ``resolutions`` (times 2 while under ``2 * size``) points per side, the
      object by the pattern of :func:`render_scale_true_object`, then area-down-sampled to
      ``r``: the crop down-sampled, as §2.3 down-samples ImageNet.
    * ``render="today"``: the background the same (area-down-sampled), the object drawn at
      ``r`` by :func:`make_synthetic_coco`'s renderer in its box rounded to whole pixels
      (``detail`` in pixels per period): how a small object of today's detection data looks.

    Args:
        num_images: crops.
        seed: everything is drawn from it.
        size: the full resolution (side in pixels).
        resolutions: the other sides to return (each below ``size``).
        render: ``"scale_true"`` or ``"today"``.
        detail: periods per object for ``scale_true`` (default 16), pixels per period for
            ``today`` (default 6, the examples' setting); 0: no fine pattern.
        fill: (min, max) box side over crop side.

    Returns:
        A dict: ``"images"``, a dict from each side ``r`` (``size`` and each of
        ``resolutions``) to a uint8 ``[N, 3, r, r]`` tensor; ``"labels"``, int64 ``[N]``
        (0-based classes); ``"classes"``, :data:`SYNTHETIC_CLASSES`.

    Example:
        >>> crops = make_synthetic_scale_crops(6, resolutions=(16,))
        >>> crops["images"][64].shape, crops["images"][16].shape, sorted(crops["labels"].tolist())
        (torch.Size([6, 3, 64, 64]), torch.Size([6, 3, 16, 16]), [0, 0, 1, 1, 2, 2])
    """
    import torch

    if render not in ("scale_true", "today"):
        raise ValueError(f"render must be 'scale_true' or 'today', got {render!r}")
    resolutions = tuple(int(r) for r in resolutions)
    if any(not 4 <= r < size for r in resolutions):
        raise ValueError(f"resolutions must lie in [4, size={size}), got {resolutions}")
    if not 0 < fill[0] <= fill[1] <= 1:
        raise ValueError(f"fill must satisfy 0 < min <= max <= 1, got {fill}")
    if detail is None:
        detail = DETAIL_PERIODS if render == "scale_true" else 6
    hi = math.lcm(size, *resolutions)
    while hi < 2 * size:
        hi *= 2
    if hi > 8 * size:
        raise ValueError(f"the resolutions {resolutions} need a {hi}-point grid (their lcm with {size}); "
                         f"choose sides with a smaller common multiple")
    rng = np.random.default_rng(seed)
    k = len(SYNTHETIC_CLASSES)
    labels = rng.permutation(np.arange(num_images) % k)
    sides = (size, *resolutions)
    out = {r: np.empty((num_images, r, r, 3), np.uint8) for r in sides}
    grid = (np.arange(hi) + 0.5) / hi * size  # sample points in full-resolution pixels
    for i, cls in enumerate(labels):
        background = _clutter(rng, size, size).astype(np.float32).repeat(hi // size, 0).repeat(hi // size, 1)
        side = rng.uniform(*fill) * size
        aspect = rng.uniform(0.6, 1.6)
        bw, bh = min(size, side * np.sqrt(aspect)), min(size, side / np.sqrt(aspect))
        x0, y0 = rng.uniform(0, size - bw), rng.uniform(0, size - bh)
        colour = np.random.default_rng([seed, i]).integers(40, 255, 3).astype(np.float32)  # as _draw's below
        if render == "scale_true":
            inside, shade = _pattern(int(cls), (grid[None, :] - x0) / bw, (grid[:, None] - y0) / bh, detail)
            inside &= ((grid[None, :] >= x0) & (grid[None, :] < x0 + bw) & (grid[:, None] >= y0)
                       & (grid[:, None] < y0 + bh))
            canvas = np.where(inside[..., None], (shade[..., None] * colour), background)
            for r in sides:
                out[r][i] = np.rint(_area_down(canvas, hi // r)).clip(0, 255)
        else:
            for r in sides:
                canvas = np.rint(_area_down(background, hi // r)).clip(0, 255).astype(np.uint8)
                s = r / size
                x, y = min(r - 2, round(x0 * s)), min(r - 2, round(y0 * s))
                w, h = max(2, min(r - x, round(bw * s))), max(2, min(r - y, round(bh * s)))
                _draw(canvas, int(cls), x, y, w, h, np.random.default_rng([seed, i]), detail)
                out[r][i] = canvas
    return {"images": {r: torch.from_numpy(out[r]).permute(0, 3, 1, 2).contiguous() for r in sides},
            "labels": torch.from_numpy(labels.astype(np.int64)), "classes": SYNTHETIC_CLASSES}
