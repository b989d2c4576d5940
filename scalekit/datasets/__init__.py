"""Detection data: COCO-format datasets read with pycocotools.

The seeded synthetic generators used by tests, benchmarks and examples live in
:mod:`scalekit.datasets.synthetic`; nothing here depends on them.
"""

from scalekit.datasets.coco import CocoDetection

__all__ = ["CocoDetection"]
