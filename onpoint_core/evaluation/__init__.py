"""Evaluation of detections and pseudo segments: tIoU, ActivityNet-style mAP, F1, AEDT, frame accuracy."""

from .detection import (
    DEFAULT_TIOU_THRESHOLDS,
    TABLE_KINDS,
    average_precision,
    check_labels,
    evaluate_detections,
    frame_accuracy,
    load_class_list,
    load_table,
    precision_recall_curves,
    segment_quality,
    tiou,
)

__all__ = [
    "DEFAULT_TIOU_THRESHOLDS",
    "TABLE_KINDS",
    "average_precision",
    "check_labels",
    "evaluate_detections",
    "frame_accuracy",
    "load_class_list",
    "load_table",
    "precision_recall_curves",
    "segment_quality",
    "tiou",
]
