"""scalekit: building blocks for detecting objects and actions under extreme scale variation.

The blocks come from the four systems of Bharat Singh's thesis *Detecting Objects
and Actions with Deep Learning* (UMD 2018): SNIP, SNIPER, R-FCN-3000 and MSB-RNN.

``import scalekit`` does not import torchvision: :mod:`scalekit.detection`, the
one layer that needs it (the ``detection`` extra), is imported on first use
(``scalekit.detection`` or ``import scalekit.detection``).
"""

import importlib

from scalekit import autofocus, boxes, chips, datasets, drawing, evaluation, heads, ops, scale, sequence, video

__version__ = "0.1.0"
__all__ = ["autofocus", "boxes", "chips", "datasets", "drawing", "evaluation", "heads", "ops", "scale", "sequence",
           "video", "__version__"]

_LAZY = ("detection",)  # needs torchvision: imported when first asked for, not by `import scalekit`


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"scalekit.{name}")
    raise AttributeError(f"module 'scalekit' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
