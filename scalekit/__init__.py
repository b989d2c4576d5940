"""scalekit: building blocks for detecting objects and actions under extreme scale variation.

The blocks come from the four systems of Bharat Singh's thesis *Detecting Objects
and Actions with Deep Learning* (UMD 2018): SNIP, SNIPER, R-FCN-3000 and MSB-RNN.
"""

from scalekit import boxes, chips, datasets, detection, evaluation, heads, ops, scale, sequence, video

__version__ = "0.1.0"
__all__ = ["boxes", "chips", "datasets", "detection", "evaluation", "heads", "ops", "scale", "sequence", "video",
           "__version__"]
