"""Perfect heads through the real streaming engine: what the decode and the online NMS allow.

An oracle replaces the student with a module that outputs, at every step, the training targets
of that step: the point targets (`mode="point"`, the distillation-free decode) or the anchor
assignment (`mode="instance"`, OAT's decode). Its proposals go through the same `StreamingEngine`
(decode, online NMS, emission rule) as a trained model's, so the score it reaches is the ceiling
the inference path puts on a run, and a decode that misplaces segments shows up as a low oracle
score however well a model learns.

How the oracle knows where it is: its "features" are two numbers per step, the video's index and
the step's index; the module reads them from the newest row of the window, the row of the current
step, so it still sees nothing after now.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..student.targets import instance_targets, point_targets
from .engine import StreamingEngine, stream_videos

CONFIDENT = 30.0       # logit margin of the oracle's class (softmax probability 1 - ~1e-13)


def _onehot_logits(classes, num_out):
    """T x M class indices -> T x M x num_out logits whose softmax is (almost exactly) one-hot."""
    logits = np.zeros(classes.shape + (num_out,), np.float32)
    np.put_along_axis(logits, classes[..., None], CONFIDENT, axis=-1)
    return logits


def _soft_logits(targets):
    """T x M x num_out soft targets (rows sum to 1) -> logits whose softmax equals them."""
    return np.log(np.maximum(targets, 1e-13)).astype(np.float32)


class Oracle(nn.Module):
    """Per video, per step, the outputs a perfect model of `mode` would give (see module doc)."""

    def __init__(self, outputs):
        super().__init__()
        self._dummy = nn.Parameter(torch.zeros(1))      # the engine reads the device from a parameter
        self.outputs = outputs                           # [{name: T x ... tensor}] per video

    def forward(self, windows, heads="inference"):
        newest = windows[:, -1, :].round().long()
        video, step = newest[:, 0].tolist(), newest[:, 1].tolist()
        names = self.outputs[0].keys()
        return {name: torch.stack([self.outputs[v][name][t] for v, t in zip(video, step)]) for name in names}


def oracle_tables(videos, anchors, num_classes, mode):
    """Per video the perfect outputs of `mode`; videos: dicts with n_steps, duration, and
    `points`/`point_labels` (mode "point") or `segments`/`segment_labels` (mode "instance"), seconds."""
    tables = []
    for video in videos:
        n, rate = int(video["n_steps"]), video["n_steps"] / video["duration"]
        if mode == "point":
            classes, offset, _ = point_targets(n, anchors, np.asarray(video["points"]) * rate,
                                               video["point_labels"], num_classes)
            tables.append({"point_logits": torch.from_numpy(_onehot_logits(classes, num_classes + 1)),
                           "point_offset": torch.from_numpy(offset)})
        elif mode == "instance":
            classes, regression, _ = instance_targets(n, anchors, np.asarray(video["segments"]) * rate,
                                                      video["segment_labels"], num_classes)
            tables.append({"class_logits": torch.from_numpy(_soft_logits(classes)),
                           "regression": torch.from_numpy(regression)})
        else:
            raise ValueError(f"unknown oracle mode {mode!r} (expected 'point' or 'instance')")
    return tables


def stream_oracle(videos, anchors, classes, mode, window, score_threshold=0.1, nms_iou=0.3,
                  tiou_floor_seconds=1.0, progress=False):
    """Proposals of the oracle of `mode` on `videos` (see oracle_tables), through the real engine."""
    model = Oracle(oracle_tables(videos, anchors, len(classes), mode))
    meta = {"config": {"window": window, "feature_dim": 2, "num_classes": len(classes), "anchors": list(anchors)},
            "classes": list(classes), "variant": {"inference": mode}}
    engine = StreamingEngine(model, meta, score_threshold=score_threshold, nms_iou=nms_iou,
                             tiou_floor_seconds=tiou_floor_seconds, device="cpu")
    features = {video["video_id"]: np.stack([np.full(video["n_steps"], i), np.arange(video["n_steps"])], 1)
                .astype(np.float32) for i, video in enumerate(videos)}
    durations = {video["video_id"]: float(video["duration"]) for video in videos}
    return stream_videos(engine, features, durations, progress=progress)
