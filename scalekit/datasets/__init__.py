"""Real data: COCO-format detection datasets read with pycocotools, directories
of annotated untrimmed videos (:func:`read_video_dataset`, :func:`read_video`),
and classification crops (:func:`read_classification`, :func:`crops_from_boxes`).

The seeded synthetic generators used by tests, benchmarks and examples live in
:mod:`scalekit.datasets.synthetic`; nothing here depends on them.
"""

from scalekit.datasets.classification import crops_from_boxes, read_classification
from scalekit.datasets.coco import CocoDetection
from scalekit.datasets.video import read_video, read_video_dataset

__all__ = ["CocoDetection", "read_video_dataset", "read_video", "read_classification", "crops_from_boxes"]
