"""Seeded synthetic data: fixtures for demos, tests, benchmarks and the example
reproductions, kept apart from the real-data readers of :mod:`scalekit.datasets`.

Every generator writes (or returns) the same formats a real dataset has, so the
code that reads them is the code that reads real data: COCO JSON and images for
detection (:func:`make_synthetic_coco` with extreme scale variation,
:func:`make_synthetic_fine_coco` with a fine-grained taxonomy,
:func:`make_synthetic_small_objects` with tiny objects in sparse clusters on
large images, :func:`make_synthetic_scale_true_coco` with objects whose detail
scales with them, so a small object is a blurred copy of a large one; its
classification crops at several resolutions, :func:`make_synthetic_scale_crops`), untrimmed videos
with action segments for MSB-RNN (:func:`make_synthetic_video`,
:func:`make_synthetic_shopping`).
"""

from scalekit.datasets.synthetic.coco import SYNTHETIC_CLASSES, make_synthetic_coco, make_synthetic_small_objects
from scalekit.datasets.synthetic.fine import (FINE_FAMILIES, fine_grained_taxonomy, make_synthetic_fine_classification,
                                              make_synthetic_fine_coco)
from scalekit.datasets.synthetic.scale_true import (make_synthetic_scale_crops, make_synthetic_scale_true_coco,
                                                    render_scale_true_object)
from scalekit.datasets.synthetic.video import (SHOPPING_ACTIONS, SYNTHETIC_ACTIONS, make_synthetic_shopping,
                                               make_synthetic_video, save_video_dataset)

__all__ = ["make_synthetic_coco", "make_synthetic_small_objects", "SYNTHETIC_CLASSES", "make_synthetic_video", "SYNTHETIC_ACTIONS",
           "make_synthetic_shopping", "SHOPPING_ACTIONS", "save_video_dataset",
           "make_synthetic_fine_coco", "make_synthetic_fine_classification", "fine_grained_taxonomy", "FINE_FAMILIES",
           "make_synthetic_scale_true_coco", "make_synthetic_scale_crops", "render_scale_true_object"]
