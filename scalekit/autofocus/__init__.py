"""AutoFocus (Najibi, Singh and Davis, *AutoFocus: Efficient Multi-Scale
Inference*, ICCV 2019), where the thesis' authors went after SNIP and SNIPER:
predict at a coarse scale where small objects may be (FocusPixels), and run
the finer scales only inside chips around them (FocusChips).

* :func:`focus_labels` — a chip's FocusPixel training labels;
* :class:`FocusHead`, :func:`focus_loss`, :func:`focus_probability` — the
  focus branch on a detector's stride-16 feature map and its loss
  (:class:`scalekit.detection.FocusDetector` trains it with a torchvision detector);
* :func:`focus_chips`, :func:`label_components` — FocusChips from a focus map,
  in tensor operations on the map's device;
* :class:`AutoFocus`, :func:`near_chip_border` — recursive inference, coarse to
  fine, with the pixels processed at each scale.

Depends on :mod:`scalekit.scale` (levels, valid ranges, resizing, the Soft-NMS
merge) and :mod:`scalekit.boxes`; never on torchvision.
"""

from scalekit.autofocus.chips import focus_chips, label_components
from scalekit.autofocus.head import FocusHead, focus_loss, focus_probability
from scalekit.autofocus.inference import AUTOFOCUS_LEVELS, AutoFocus, near_chip_border
from scalekit.autofocus.labels import focus_labels, grid_size

__all__ = ["focus_labels", "grid_size", "FocusHead", "focus_loss", "focus_probability", "label_components",
           "focus_chips", "AutoFocus", "AUTOFOCUS_LEVELS", "near_chip_border"]
