"""Evaluation of detections and pseudo segments: tIoU, ActivityNet-style mAP, F1, AEDT, frame accuracy."""

from .detection import (
    DEFAULT_TIOU_THRESHOLDS,
    TABLE_KINDS,
    average_precision,
    evaluate_detections,
    frame_accuracy,
    load_table,
    segment_quality,
    tiou,
)

__all__ = [
    "DEFAULT_TIOU_THRESHOLDS",
    "TABLE_KINDS",
    "average_precision",
    "evaluate_detections",
    "frame_accuracy",
    "load_table",
    "segment_quality",
    "tiou",
]
