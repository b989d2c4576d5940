"""Evaluation: temporal action detection (mid-point hit, temporal IoU), COCO
detection through pycocotools (and its bootstrap over images), proposal recall by object size, and how well a
clustering recovers known groups.

Every convention that changes a number (interval ends, AP interpolation, tIoU
thresholds, size bins) is an explicit, documented argument.
"""

from scalekit.evaluation.bootstrap import bootstrap_coco_ap, coco_image_matches, paired_bootstrap, paired_difference
from scalekit.evaluation.clustering import adjusted_rand_index, cluster_purity
from scalekit.evaluation.coco import coco_evaluate, to_coco_results
from scalekit.evaluation.readers import read_activitynet, read_class_segments, read_segments_csv, read_thumos14
from scalekit.evaluation.recall import proposal_recall
from scalekit.evaluation.temporal import (
    ACTIVITYNET_THRESHOLDS,
    THUMOS14_THRESHOLDS,
    average_precision,
    clips_to_detections,
    midpoint_map,
    tiou_map,
)

__all__ = [
    "average_precision", "clips_from_scores", "clips_to_detections", "midpoint_map", "tiou_map",
    "coco_evaluate", "to_coco_results", "coco_image_matches", "bootstrap_coco_ap", "paired_difference", "paired_bootstrap",
    "proposal_recall", "adjusted_rand_index", "cluster_purity",
    "read_class_segments", "read_segments_csv", "read_activitynet", "read_thumos14",
    "ACTIVITYNET_THRESHOLDS", "THUMOS14_THRESHOLDS",
]


def __getattr__(name: str):
    # clips_from_scores moved to scalekit.sequence (inference post-processing of the
    # sequence layer); the old import path still works, without importing that layer eagerly.
    if name == "clips_from_scores":
        from scalekit.sequence.clips import clips_from_scores

        return clips_from_scores
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
