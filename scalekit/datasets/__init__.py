"""Detection data: COCO-format datasets (pycocotools) and a seeded synthetic
generator with extreme scale variation, used by tests, benchmarks and examples."""

from scalekit.datasets.coco import CocoDetection
from scalekit.datasets.synthetic import SYNTHETIC_CLASSES, make_synthetic_coco
from scalekit.datasets.synthetic_fine import (FINE_FAMILIES, fine_grained_taxonomy, make_synthetic_fine_classification,
                                              make_synthetic_fine_coco)
from scalekit.datasets.synthetic_video import (SHOPPING_ACTIONS, SYNTHETIC_ACTIONS, make_synthetic_shopping,
                                               make_synthetic_video, save_video_dataset)

__all__ = ["CocoDetection", "make_synthetic_coco", "SYNTHETIC_CLASSES", "make_synthetic_video", "SYNTHETIC_ACTIONS",
           "make_synthetic_shopping", "SHOPPING_ACTIONS", "save_video_dataset",
           "make_synthetic_fine_coco", "make_synthetic_fine_classification", "fine_grained_taxonomy", "FINE_FAMILIES"]
