"""TSASPC teacher: inference (per-frame softmax CAS), runs as detections and pseudo segments, checkpoints."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from ...config import ParamsError, TSASPCDetect, TSASPCProposals, TSASPCPseudo, TSASPCTrain, build
from ...errors import fail
from ...runtime import pick_device, seeded
from .. import clustering
from ..base import TeacherOutput, segments_array
from ..proposals import topk_video_scores
from .model import MSTCN
from .training import Training


class TSASPCTeacher(Training):
    """MS-TCN teacher trained from points by clustering pseudo labels (see module docstring)."""

    def __init__(self, num_classes: int, feature_dim: int, cfg: TSASPCTrain):
        if not isinstance(cfg, TSASPCTrain):
            raise TypeError(f"tsaspc teacher: cfg must be a TSASPCTrain, got {type(cfg).__name__}")
        self.num_classes = int(num_classes)
        self.input_dim = int(feature_dim)
        self.cfg = cfg                   # training settings only: post-processing is passed per call
        self.device = pick_device()
        self.typical_length = None
        self.report = {}
        self.initial_labels = {}
        self.labels = {}
        with seeded(cfg.seed):
            self.model = MSTCN(self.input_dim, cfg.feature_dim, self.num_classes + 1, cfg.stages, cfg.layers,
                               cfg.feature_maps, cfg.dropout, cfg.input_dropout)
        self.model.to(self.device)

    # ---------------------------------------------------------------- pseudo labels
    def _check(self, video):
        x = np.asarray(video.features)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            fail("teacher input", f"features of shape {x.shape}, expected T x {self.input_dim}", video.video_id)
        p = np.asarray(video.point_steps, np.int64)
        lab = np.asarray(video.point_labels, np.int64)
        if len(p) != len(lab):
            fail("teacher input", f"{len(p)} point steps but {len(lab)} point labels", video.video_id)
        if len(p) and (p.min() < 0 or p.max() >= x.shape[0]):
            fail("teacher input", f"point step outside 0..{x.shape[0] - 1}", video.video_id)
        if len(lab) and (lab.min() < 0 or lab.max() >= self.num_classes):
            fail("teacher input", f"point label outside 0..{self.num_classes - 1}", video.video_id)
        order = np.argsort(p, kind="stable")
        return p[order], lab[order]

    # ---------------------------------------------------------------- batching
    def _inputs(self, feats):
        """Pad a list of T x D arrays into B x D x Tmax features and a B x 1 x Tmax mask."""
        tmax = max(len(f) for f in feats)
        x = np.zeros((len(feats), self.input_dim, tmax), np.float32)
        mask = np.zeros((len(feats), 1, tmax), np.float32)
        for b, f in enumerate(feats):
            x[b, :, : len(f)] = np.asarray(f, np.float32).T
            mask[b, 0, : len(f)] = 1.0
        return torch.from_numpy(x).to(self.device), torch.from_numpy(mask).to(self.device)

    # ---------------------------------------------------------------- training
    # ---------------------------------------------------------------- resume file
    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def predict_cas_batch(self, features_list, batch):
        """Per-frame softmax of the last stage (T x (C+1), background last) for many videos, in
        padded batches of `batch` videos (`detect.predict_batch` sets it when caching)."""
        self.model.eval()
        out = []
        bs = max(int(batch), 1)
        for k in range(0, len(features_list), bs):
            chunk = [np.asarray(f, np.float32) for f in features_list[k:k + bs]]
            x, mask = self._inputs(chunk)
            _, outputs = self.model(x, mask)
            prob = F.softmax(outputs[-1], dim=1)
            out += [prob[b, :, : len(f)].T.contiguous().cpu().numpy().astype(np.float32) for b, f in enumerate(chunk)]
        return out

    def predict_batch(self, features_list, batch):
        """TeacherOutputs: the softmax CAS, and its action columns as the class probabilities."""
        return [TeacherOutput(cas, np.ascontiguousarray(cas[:, :-1])) for cas in self.predict_cas_batch(features_list, batch)]

    def predict_cas(self, features):
        """CAS of one video: T x (C+1) float32, rows sum to 1, background last."""
        return self.predict_cas_batch([features], 1)[0]

    def video_scores(self, cas, detect: TSASPCDetect):
        """Video-level class scores: mean of each class's top T/8 frame probabilities (C,)."""
        return topk_video_scores(np.asarray(cas)[:, :-1])

    def detect(self, cas, proposals: TSASPCProposals, detect: TSASPCDetect, class_ratio=None):
        """Runs of frames with the same predicted action class: N x 5 (label, start, end, score, nan).
        (TSASPC has no proposal or detection settings: the frame labels decide.)"""
        return self._runs(cas, np.zeros(0, np.int64), np.zeros(0, np.int64))

    def pseudo_segments(self, cas, point_steps, point_labels, proposals: TSASPCProposals, pseudo: TSASPCPseudo):
        """Pseudo segments of a video with points, by `pseudo.segments`:

        - `runs` (the method's text): the runs of `detect`; `point` holds a same-class point inside
          the run (nearest its centre), else nan. A point whose frame the network gives another
          class gets no segment, and a run with no point of its class (certainly not an action
          when every action has a point) is kept.
        - `point_anchored` (default; chosen on the val videos, README): one segment per point
          whose frame the network calls more likely its class than background, grown from the
          point while that stays so, and never past halfway to a neighbouring point."""
        if pseudo.segments == "runs":
            return self._runs(cas, point_steps, point_labels)
        return self._anchored(cas, point_steps, point_labels)

    def _anchored(self, cas, point_steps, point_labels):
        """Point-anchored segments (see pseudo_segments): N x 5 (label, start, end, score, point)."""
        cas = self._checked_cas(cas)
        steps = np.asarray(point_steps, np.int64)
        labels = np.asarray(point_labels, np.int64)
        inside = (steps >= 0) & (steps < len(cas))
        steps, labels = steps[inside], labels[inside]
        order = np.argsort(steps, kind="stable")
        steps, labels = steps[order], labels[order]
        background = cas[:, -1]
        distinct = np.unique(steps)
        rows, seen = [], set()
        for p, c in zip(steps.tolist(), labels.tolist()):
            if (p, c) in seen or cas[p, c] < background[p]:
                continue
            seen.add((p, c))
            k = int(np.searchsorted(distinct, p))          # neighbours: the nearest other point steps
            lo = (int(distinct[k - 1]) + p) // 2 + 1 if k > 0 else 0                 # halfway to them
            hi = (p + int(distinct[k + 1])) // 2 if k + 1 < len(distinct) else len(cas) - 1
            ahead = cas[p:hi + 1, c] < background[p:hi + 1]
            behind = cas[lo:p + 1, c][::-1] < background[lo:p + 1][::-1]
            end = p + (int(np.argmax(ahead)) if ahead.any() else len(ahead))      # exclusive
            start = p - (int(np.argmax(behind)) if behind.any() else len(behind)) + 1
            rows.append((c, start, end, float(cas[start:end, c].mean()), float(p)))
        return np.asarray(rows, np.float64).reshape(-1, 5)

    def _checked_cas(self, cas):
        cas = np.asarray(cas, np.float64)
        if cas.ndim != 2 or cas.shape[1] != self.num_classes + 1:
            fail("teacher CAS", f"shape {cas.shape}, expected T x {self.num_classes + 1}")
        return cas

    def _runs(self, cas, point_steps, point_labels):
        """The same runs; `point` holds a same-class point inside the run (nearest its centre), else nan."""
        cas = self._checked_cas(cas)
        if len(cas) == 0:
            return segments_array([])
        pred = cas.argmax(axis=1)
        starts, ends, labels = clustering.runs(pred)
        scores = np.add.reduceat(cas[np.arange(len(pred)), pred], starts) / (ends - starts)
        point = np.full(len(starts), np.nan)
        steps = np.asarray(point_steps, np.int64)
        plabels = np.asarray(point_labels, np.int64)
        if len(steps):
            inside = (steps >= 0) & (steps < len(pred))
            steps, plabels = steps[inside], plabels[inside]
            run = np.searchsorted(starts, steps, side="right") - 1
            match = labels[run] == plabels
            centre = (starts + ends - 1) / 2.0
            best = np.full(len(starts), np.inf)
            for s, r in zip(steps[match], run[match]):
                d = abs(s - centre[r])
                if d < best[r]:
                    best[r], point[r] = d, float(s)
        action = labels < self.num_classes
        rows = np.stack([labels, starts, ends, scores, point], axis=1)[action]
        return rows.astype(np.float64).reshape(-1, 5)

    def training_report(self) -> dict:
        """How the pseudo frame labels were made and grown (label_report)."""
        return {"labels": self.label_report()}

    # ---------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        """Plain types and tensors only (torch.load(weights_only=True) reads it)."""
        return {
            "kind": "tsaspc",
            "num_classes": self.num_classes,
            "feature_dim": self.input_dim,
            "cfg": self.cfg.as_dict(),
            "typical_length": self.typical_length,
            "label_report": self.label_report(),
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
        }

    @classmethod
    def from_state(cls, state):
        """Rebuild a teacher from `state_dict()` output."""
        if state.get("kind") != "tsaspc":
            fail("teacher checkpoint", f"not a TSASPC teacher (kind {state.get('kind')!r})")
        try:
            cfg = build(TSASPCTrain, state["cfg"], "checkpoint", "tsaspc.train")
        except ParamsError as exc:
            fail("teacher checkpoint", f"tsaspc settings do not fit this version ({exc})")
        teacher = cls(state["num_classes"], state["feature_dim"], cfg)
        teacher.model.load_state_dict(state["model"])
        teacher.model.to(teacher.device)
        teacher.typical_length = state.get("typical_length")
        teacher.report = copy.deepcopy(state.get("label_report", {}))
        return teacher
