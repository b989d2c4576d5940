"""One rule for what counts as an image in scalekit's image-taking helpers
(:class:`~scalekit.scale.Pyramid`, :func:`~scalekit.drawing.draw_detections`):
a ``[C, H, W]`` tensor, a PIL image or a file path, as a float tensor in ``[0, 1]``."""

from __future__ import annotations

import os
import sys

import torch
from torch import Tensor

__all__ = ["as_float_image", "as_image_tensor", "to_float_image"]

# Integer dtypes whose full range maps to [0, 1], as torchvision.transforms.v2.functional.to_dtype(scale=True).
_SCALED = {torch.uint8: 255.0, torch.uint16: 65535.0}


def _is_pil(image) -> bool:
    pil = sys.modules.get("PIL.Image")  # a PIL image cannot exist unless PIL is imported
    return pil is not None and isinstance(image, pil.Image)


def as_float_image(image, name: str = "image") -> Tensor:
    """``[C, H, W]`` float image in ``[0, 1]`` from a tensor, a PIL image or a file path.

    * a float tensor is returned as it is (its values are the caller's business);
    * a ``uint8`` tensor (what ``torchvision.io.read_image`` returns) becomes
      ``float32`` divided by 255 (``uint16``: by 65535), as torchvision's
      ``to_dtype(..., scale=True)``; other integer and bool tensors are refused
      with a ``TypeError``: their range is unknown;
    * a PIL image or a path (``str`` / ``os.PathLike``) is read with Pillow and
      converted to RGB, ``float32`` in ``[0, 1]``.

    It is :func:`to_float_image` of :func:`as_image_tensor`; a caller that
    converts parts of a large image (the slices of
    :func:`scalekit.slicing.sliced_detect`) calls the two apart.

    Example:
        >>> import torch
        >>> as_float_image(torch.tensor([[[0, 51, 255]]], dtype=torch.uint8))
        tensor([[[0.0000, 0.2000, 1.0000]]])
    """
    return to_float_image(as_image_tensor(image, name), name)


def as_image_tensor(image, name: str = "image") -> Tensor:
    """``[C, H, W]`` tensor of the image's own pixel values, not yet converted to float:
    a tensor as it is (checked: 3-D, ``H, W > 0``, a dtype :func:`to_float_image`
    takes), a PIL image or a path as ``uint8`` RGB (a quarter of its float size).

    Example:
        >>> import torch
        >>> as_image_tensor(torch.zeros(3, 2, 2, dtype=torch.uint8)).dtype
        torch.uint8
    """
    if isinstance(image, (str, os.PathLike)):
        if not os.path.isfile(image):
            raise FileNotFoundError(f"{name}: no such image file: {os.fspath(image)!r}")
        from PIL import Image

        with Image.open(image) as im:
            return _from_pil(im)
    if _is_pil(image):
        return _from_pil(image)
    if not isinstance(image, Tensor):
        hint = (" (a numpy array: torch.from_numpy(array).permute(2, 0, 1) for an H x W x C one)"
                if type(image).__module__ == "numpy" else "")
        raise TypeError(f"{name} must be a [C, H, W] tensor, a PIL image or an image file path, "
                        f"got {type(image).__name__}{hint}")
    if image.dim() != 3 or image.shape[-1] == 0 or image.shape[-2] == 0:
        raise ValueError(f"{name} must be a [C, H, W] tensor with H, W > 0, got shape {list(image.shape)}")
    _check_dtype(image, name)
    return image


def _check_dtype(image: Tensor, name: str) -> None:
    if not (image.is_floating_point() or image.dtype in _SCALED):
        raise TypeError(f"{name} must be a float tensor in [0, 1] or a uint8 (or uint16) tensor of pixel values, "
                        f"got {image.dtype}: its range is unknown; convert it yourself, e.g. image.float() / 255")


def to_float_image(image: Tensor, name: str = "image") -> Tensor:
    """The float image in ``[0, 1]`` of a tensor :func:`as_image_tensor` returned (or a
    crop of it): a float tensor as it is, ``uint8`` / ``uint16`` as ``float32`` divided
    by 255 / 65535 (torchvision's ``to_dtype(..., scale=True)``).

    Example:
        >>> import torch
        >>> to_float_image(torch.tensor([[[0, 65535]]], dtype=torch.uint16))
        tensor([[[0., 1.]]])
    """
    if image.is_floating_point():
        return image
    _check_dtype(image, name)
    return image.to(torch.float32).div_(_SCALED[image.dtype])


def _from_pil(im) -> Tensor:
    import numpy as np

    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)
