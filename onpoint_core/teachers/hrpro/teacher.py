"""HR-Pro teacher: inference (fused CAS), offline detections, pseudo segments, checkpoints."""

from __future__ import annotations

import numpy as np
import torch

from ...config import HRProDetect, HRProProposals, HRProPseudo, HRProTrain, ParamsError, build
from ...errors import OnPointError, fail
from ...runtime import deterministic as _deterministic
from ...runtime import pick_device
from ...runtime import seeded as _seeded
from ..base import TeacherOutput
from ..proposals import cas_proposals, nms, reliable_proposals, threshold_grid, topk_video_scores
from .model import SnippetModel
from .training import RESUME_FORMAT, Training

FORMAT = "onpoint.hrpro-teacher/2"     # /2: the checkpoint stores training settings only
__all__ = ["FORMAT", "RESUME_FORMAT", "HRProTeacher"]


def class_probabilities(cas):
    """T x C: the fused action CAS min-max normalised over the whole video (all action classes).

    The anticipation targets binarise a per-class probability at 0.5. The fused CAS
    `sigmoid(class) * (1 - bkg)` almost never reaches 0.5 (0.01% of steps x classes on the val
    videos of the default run), and the un-fused class sigmoid is above 0.5 on 24% of them with
    12% precision against the val GT: neither tells "an action of class c is coming". Normalised
    per video, 8.8% are positive with precision 25% / recall 70% (val; the GT share is 3.1%).
    The teacher is offline, so normalising over the whole video is allowed.
    """
    actions = np.asarray(cas, dtype=np.float32)[:, :-1]
    low, high = float(actions.min()), float(actions.max())
    if high - low <= 1e-12:
        return np.zeros_like(actions)
    return ((actions - low) / (high - low)).astype(np.float32)


class HRProTeacher(Training):
    """Point-supervised HR-Pro snippet-level teacher; all times in the teacher's steps."""

    def __init__(self, num_classes: int, feature_dim: int, cfg: HRProTrain):
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        if self.num_classes < 1 or self.feature_dim < 1:
            raise OnPointError(f"hrpro teacher: need num_classes >= 1 and feature_dim >= 1, "
                               f"got {num_classes} and {feature_dim}")
        if not isinstance(cfg, HRProTrain):
            raise TypeError(f"hrpro teacher: cfg must be an HRProTrain, got {type(cfg).__name__}")
        self.cfg = cfg                   # training settings only: post-processing is passed per call
        self.device = pick_device()
        with _seeded(cfg.seed):
            self.model = SnippetModel(self.num_classes, self.feature_dim, cfg)
        self.model.to(self.device)

    # ---- input checks -----------------------------------------------------------------------
    def _check_features(self, features, video=None):
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            fail(None, f"teacher features must be T x {self.feature_dim}, got shape {features.shape}", video)
        if features.shape[0] == 0:
            fail(None, "teacher features have no steps", video)
        if not np.isfinite(features).all():
            fail(None, "teacher features contain NaN or infinite values", video)
        return np.ascontiguousarray(features, dtype=np.float32)

    def _check_points(self, steps, labels, n_steps, video=None):
        steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if steps.size != labels.size:
            fail(None, f"{steps.size} point steps but {labels.size} point labels", video)
        if steps.size and (steps.min() < 0 or steps.max() >= n_steps):
            fail(None, f"point steps must lie in [0, {n_steps}), got {steps.min()}..{steps.max()}", video)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            fail(None, f"point labels must lie in [0, {self.num_classes}), got {labels.min()}..{labels.max()}", video)
        order = np.argsort(steps, kind="stable")
        return steps[order], labels[order]

    # ---- batching ---------------------------------------------------------------------------
    def _pad(self, arrays):
        lengths = [a.shape[0] for a in arrays]
        t = max(lengths)
        batch = torch.zeros(len(arrays), t, self.feature_dim, device=self.device)
        valid = torch.zeros(len(arrays), t, dtype=torch.bool, device=self.device)
        for i, a in enumerate(arrays):
            batch[i, :a.shape[0]] = torch.as_tensor(a, device=self.device)
            valid[i, :a.shape[0]] = True
        return batch, valid, lengths

    @torch.no_grad()
    def _forward_eval(self, features_list, batch):
        """Eval-mode forward of many videos in padded batches of similar length -> [(cas, emb, class_prob)]."""
        self.model.eval()
        order = np.argsort([f.shape[0] for f in features_list], kind="stable")
        out = [None] * len(features_list)
        size = max(int(batch), 1)
        for i in range(0, len(order), size):
            idx = order[i:i + size]
            batch, valid, lengths = self._pad([features_list[j] for j in idx])
            cas, emb, class_prob = self.model(batch, valid)
            for row, j in enumerate(idx):
                n = lengths[row]
                out[j] = (cas[row, :n], emb[row, :n], class_prob[row, :n])
        return out

    # ---- training ---------------------------------------------------------------------------
    # ---- resume files -----------------------------------------------------------------------
    # ---- inference --------------------------------------------------------------------------
    def predict_cas(self, features: np.ndarray) -> np.ndarray:
        """Fused CAS T x (C+1) (background last), eval mode."""
        return self.predict_cas_batch([features], 1)[0]

    def predict_cas_batch(self, features_list, batch) -> list[np.ndarray]:
        """Fused CAS of many videos in padded batches of `batch` videos (padding never changes a
        video's result; `detect.predict_batch` sets it when caching)."""
        return [out.cas for out in self.predict_batch(features_list, batch)]

    def predict_batch(self, features_list, batch) -> list[TeacherOutput]:
        """Fused CAS and the class probabilities the anticipation targets binarise (class_probabilities)."""
        feats = [self._check_features(f) for f in features_list]
        if not feats:
            return []
        with _deterministic():
            outs = self._forward_eval(feats, batch)
        cas = [c.float().cpu().numpy() for c, _, _ in outs]
        return [TeacherOutput(c, class_probabilities(c)) for c in cas]

    def _check_cas(self, cas):
        cas = np.asarray(cas, dtype=np.float64)
        if cas.ndim != 2 or cas.shape[1] != self.num_classes + 1:
            raise OnPointError(f"hrpro teacher: CAS must be T x {self.num_classes + 1}, got shape {cas.shape}")
        return cas

    @staticmethod
    def _proposals(cas, classes, proposals: HRProProposals):
        return cas_proposals(cas[:, :-1], 1.0 - cas[:, -1], classes, threshold_grid(list(proposals.cas_thresholds)),
                             threshold_grid(list(proposals.actionness_thresholds)), proposals.upsample,
                             proposals.oic_outer)

    def video_scores(self, cas: np.ndarray, detect: HRProDetect) -> np.ndarray:
        """Video-level class scores: mean of each class's top T/`video_topk_divisor` CAS values (C,)."""
        return topk_video_scores(self._check_cas(cas)[:, :-1], detect.video_topk_divisor)

    def detect(self, cas: np.ndarray, proposals: HRProProposals, detect: HRProDetect, class_ratio=None) -> np.ndarray:
        """Offline detections N x 5 (label, start, end, score, nan), highest score first.

        As in weakly/point-supervised TAL practice, proposals are made only for the classes the
        video-level score supports: those within `class_ratio` of the video's top class (a ratio
        rather than HR-Pro's absolute threshold, because the fused CAS's scale depends on training
        length). A proposal's score is its OIC score times its class's video score, so ranking is
        comparable across videos. Then class-wise (soft-)NMS.
        """
        cas = self._check_cas(cas)
        ratio = detect.video_class_ratio if class_ratio is None else class_ratio
        if ratio == "auto":
            raise OnPointError("hrpro teacher: video_class_ratio is 'auto': pass the ratio chosen on the "
                               "validation videos (teachers.runner.choose_class_ratio)")
        ratio = float(ratio)
        scores = self.video_scores(cas, detect)
        classes = np.flatnonzero(scores >= ratio * scores.max())
        props = self._proposals(cas, classes, proposals)
        props[:, 3] *= scores[props[:, 0].astype(np.int64)]
        sigma = detect.nms_sigma
        kept = nms(props, iou_threshold=detect.nms_iou, sigma=None if sigma is None else float(sigma))
        if detect.max_detections is not None:
            kept = kept[:detect.max_detections]
        return np.concatenate([kept, np.full((kept.shape[0], 1), np.nan)], axis=1)

    def pseudo_segments(self, cas, point_steps, point_labels, proposals: HRProProposals,
                        pseudo: HRProPseudo) -> np.ndarray:
        """Reliable proposal per point -> N x 5 (label, start, end, score, point_step); see proposals.reliable_proposals."""
        cas = self._check_cas(cas)
        steps, labels = self._check_points(point_steps, point_labels, cas.shape[0])
        if not steps.size:
            return np.zeros((0, 5))
        props = self._proposals(cas, np.unique(labels), proposals)
        return reliable_proposals(props, steps, labels, pseudo.reliable_min_score,
                                  max_length=pseudo.max_fraction_of_video * cas.shape[0])

    def training_report(self) -> dict:
        """Facts about training beyond the loss curve (none for HR-Pro)."""
        return {}

    # ---- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain types + CPU tensors: loads with torch.load(weights_only=True)."""
        return {"format": FORMAT, "num_classes": self.num_classes, "feature_dim": self.feature_dim,
                "cfg": self.cfg.as_dict(),
                "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}}

    @classmethod
    def from_state(cls, state) -> "HRProTeacher":
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise OnPointError(f"hrpro teacher: not a checkpoint of format {FORMAT!r}")
        try:
            cfg = build(HRProTrain, state["cfg"], "checkpoint", "hrpro.train")
        except ParamsError as exc:
            raise OnPointError(f"hrpro teacher: checkpoint settings do not fit this version ({exc})") from None
        teacher = cls(state["num_classes"], state["feature_dim"], cfg)
        teacher.model.load_state_dict(state["model"])
        teacher.model.eval()
        return teacher
