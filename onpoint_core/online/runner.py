"""Glue the online_eval stage calls: stream the test videos, score them, time the engine."""

from __future__ import annotations

import time

import numpy as np

from ..evaluation import evaluate_detections, precision_recall_curves
from .engine import StreamingEngine, stream_videos

EVAL_SUBSET = "test"


def engine_for(model, meta, online_cfg):
    """The streaming engine with the `online` settings (config.OnlineCfg)."""
    return StreamingEngine(model, meta, score_threshold=online_cfg.score_threshold, nms_iou=online_cfg.nms_iou,
                           tiou_floor_seconds=online_cfg.tiou_floor_seconds, precision=online_cfg.precision)


def stream_subset(engine, dataset, subset=EVAL_SUBSET, batch_size=64, progress=True):
    """Proposals of every video of `subset`, all streamed together in batches of streams."""
    ids = dataset.video_ids(subset)
    features = {v: np.asarray(dataset.features(v), dtype=np.float32) for v in ids}
    durations = {v: float(dataset.video(v)["duration"]) for v in ids}
    began = time.perf_counter()
    proposals = stream_videos(engine, features, durations, batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - began
    steps = int(sum(len(f) for f in features.values()))
    return proposals, {"videos": len(ids), "steps": steps, "seconds": seconds,
                       "steps_per_second_batched": steps / seconds if seconds else None, "stream_batch": batch_size}


def single_stream_speed(engine, features, steps=256):
    """Steps/s of one stream pushing real features one step at a time (after a short warm-up)."""
    features = np.asarray(features[:steps], dtype=np.float32)
    rate = 1.0
    engine.start([rate])
    for row in features[:8]:
        engine.push_arrays(row[None])
    engine.start([rate])
    began = time.perf_counter()
    for row in features:
        engine.push_arrays(row[None])
    seconds = time.perf_counter() - began
    return len(features) / seconds if seconds else None


def score(dataset, proposals, subset=EVAL_SUBSET):
    """The evaluator's metrics on `subset` (HR-Pro's ambiguous-segment rule where the dataset has them)."""
    videos = dataset.video_ids(subset)
    gt = dataset.segments[dataset.segments.video_id.isin(videos)].reset_index(drop=True)
    result = evaluate_detections(gt, proposals, ambiguous=dataset.ambiguous, videos=videos)
    curves = precision_recall_curves(gt, proposals, ambiguous=dataset.ambiguous, videos=videos)
    return result, curves


def summary_metrics(result):
    """The headline numbers for metrics JSON (dvc exp show columns); per-class AP goes elsewhere."""
    keep = ("mAP", "avg_0.1_0.5", "avg_0.3_0.7", "avg_0.1_0.7", "f1_0.5", "precision_0.5",
            "recall_0.5", "aedt", "num_gt", "num_pred")
    return {k: result[k] for k in keep if k in result}
