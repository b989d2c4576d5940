"""AutoFocus (Najibi, Singh and Davis, *AutoFocus: Efficient Multi-Scale
Inference*, ICCV 2019): the thesis' authors' next step after SNIP and SNIPER.
"""
from scalekit.autofocus.chips import focus_chips, label_components
from scalekit.autofocus.head import FocusHead, focus_loss, focus_probability
from scalekit.autofocus.labels import focus_labels, grid_size

__all__ = ["focus_labels", "grid_size", "FocusHead", "focus_loss", "focus_probability", "label_components",
           "focus_chips"]
