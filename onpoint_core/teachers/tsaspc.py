"""TSASPC-style offline teacher for dense / procedural actions (METHOD.md 3b).

An MS-TCN trained from points: frames are first labelled by an ensemble of clusterings seeded
at the stamps (`clustering.py`), the network is trained on those frames with the timestamp
supervision losses, and after `growth_epochs` the labels grow by clustering in the network's
own 64-d features. The teacher never sees ground-truth segments.

Choices where METHOD.md is silent (each one is a parameter or written down here):
- Background stamps (`background_stamps`, `background_gap_factor`): see `clustering.py`. The
  typical action length L is the median spacing of consecutive points pooled over the training
  videos (a points-only estimate: for back-to-back actions it is the action length; background
  between actions lengthens it, which makes background stamps rarer, the safe side).
  `label_report()` says how many stamps were added and how many frames they labelled.
- CE is on the ensemble-labelled frames from the first epoch on (TSASPC's released code uses
  the stamps alone for the first phase and the ensemble only for the cluster loss).
- Cluster loss (TSASPC's definition): for every labelled frame, the Euclidean distance between
  its L2-normalised last-stage feature (64-d) and that of its interval's stamp; mean over
  labelled frames.
- Confidence loss: along the log-probability of a stamp's class, every increase when moving
  away from the stamp towards the next stamp is penalised (both directions, between consecutive
  stamps, background stamps included); per video the mean over the masked differences, then
  the mean over the videos of the batch (TSASPC sums over the batch, which ties the weight to
  the batch size).
- CE, smoothing and confidence are summed over the stages (MS-TCN); the cluster loss is once.
- Smoothing (T-MSE): squared difference of neighbouring log-probabilities (previous frame
  detached), clamped at `smoothing_clamp`, mean over classes and valid frame pairs.
- Label growth (after `growth_epochs`): as in TSASPC, each batch first grows its videos' labels
  from the detached last-stage features of its own training forward pass (so growth costs no
  extra forward pass), then trains on the grown labels; each video grows once per epoch.
- Padding is masked after every convolution (also after the input 1x1 convs, which MS-TCN
  leaves unmasked), so a video's CAS does not depend on what it is batched with.
- Dropout2d on the input features is channel dropout (`nn.Dropout1d`) before the projection.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..config import ParamsError, TSASPCDetect, TSASPCProposals, TSASPCPseudo, TSASPCTrain, build
from ..errors import fail
from ..runtime import pick_device, seeded
from . import clustering
from .base import read_resume_file, segments_array, write_resume_file

RESUME_FORMAT = "onpoint.tsaspc-resume/1"

IGNORE = clustering.IGNORE


# --------------------------------------------------------------------------------------------
# network


class _Residual(nn.Module):
    """Dilated residual layer: conv(k, dilation) -> ReLU -> 1x1 -> dropout -> + input."""

    def __init__(self, maps, kernel, dilation, dropout):
        super().__init__()
        self.conv = nn.Conv1d(maps, maps, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.mix = nn.Conv1d(maps, maps, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):
        return (x + self.drop(self.mix(F.relu(self.conv(x))))) * mask


class _Stage(nn.Module):
    """Single-stage TCN: 1x1 in, dilated residual layers (dilation 2^i), 1x1 out."""

    def __init__(self, in_dim, maps, out_dim, layers, kernel, dropout):
        super().__init__()
        self.inp = nn.Conv1d(in_dim, maps, 1)
        self.layers = nn.ModuleList(_Residual(maps, kernel, 2 ** i, dropout) for i in range(layers))
        self.out = nn.Conv1d(maps, out_dim, 1)

    def forward(self, x, mask):
        h = self.inp(x) * mask
        for layer in self.layers:
            h = layer(h, mask)
        return h, self.out(h) * mask


class MSTCN(nn.Module):
    """Stage 1 = two parallel TCNs (kernel 3 and 5) summed; then refinement stages on softmax."""

    def __init__(self, input_dim, feature_dim, num_outputs, stages, layers, maps, dropout, input_dropout):
        super().__init__()
        self.input_drop = nn.Dropout1d(input_dropout)
        self.project = nn.Conv1d(input_dim, feature_dim, 1) if input_dim != feature_dim else None
        self.tower = nn.ModuleList(_Stage(feature_dim, maps, num_outputs, layers, k, dropout) for k in (3, 5))
        self.refine = nn.ModuleList(_Stage(num_outputs, maps, num_outputs, layers, 3, dropout)
                                    for _ in range(stages - 1))

    def forward(self, x, mask):
        """x: B x D x T, mask: B x 1 x T. Returns (last-stage features B x maps x T, S x B x (C+1) x T logits)."""
        x = self.input_drop(x)
        if self.project is not None:
            x = self.project(x) * mask
        (h3, o3), (h5, o5) = (stage(x, mask) for stage in self.tower)
        hidden, logits = h3 + h5, o3 + o5
        outputs = [logits]
        for stage in self.refine:
            hidden, logits = stage(F.softmax(logits, dim=1) * mask, mask)
            outputs.append(logits)
        return hidden, torch.stack(outputs)


# --------------------------------------------------------------------------------------------
# losses


def smoothing_loss(logits, mask, clamp):
    """Truncated MSE between neighbouring log-probabilities (previous frame detached)."""
    lp = F.log_softmax(logits, dim=1)
    sq = (lp[:, :, 1:] - lp.detach()[:, :, :-1]) ** 2
    pair = mask[:, :, 1:] * mask[:, :, :-1]
    return (torch.clamp(sq, max=clamp) * pair).sum() / (pair.sum() * logits.shape[1]).clamp(min=1)


def confidence_loss(logits, away_cls, away_ok, toward_cls, toward_ok):
    """Penalise a stamp's class probability rising away from the stamp (both sides).

    For the frame pair (t, t+1) between stamps j and j+1: log p(c_j) must not rise (moving away
    from stamp j) and log p(c_{j+1}) must not fall (moving towards stamp j+1).
    away_cls/toward_cls: B x (T-1) class indices; *_ok: B x (T-1) float masks.
    """
    lp = F.log_softmax(logits, dim=1)
    diff = lp[:, :, 1:] - lp[:, :, :-1]
    rise = torch.gather(diff, 1, away_cls.unsqueeze(1)).squeeze(1)
    fall = -torch.gather(diff, 1, toward_cls.unsqueeze(1)).squeeze(1)
    per_video = ((F.relu(rise) * away_ok).sum(1) / away_ok.sum(1).clamp(min=1)
                 + (F.relu(fall) * toward_ok).sum(1) / toward_ok.sum(1).clamp(min=1))
    has = (away_ok.sum(1) > 0).float()
    return (per_video * has).sum() / has.sum().clamp(min=1)


def cluster_loss(hidden, stamp_at, labelled):
    """Mean distance of each labelled frame's normalised feature to its stamp's (B x d x T)."""
    h = F.normalize(hidden, p=2, dim=1)
    anchor = torch.gather(h, 2, stamp_at.unsqueeze(1).expand(-1, h.shape[1], -1))
    dist = torch.linalg.vector_norm(h - anchor, dim=1)
    return (dist * labelled).sum() / labelled.sum().clamp(min=1)


# --------------------------------------------------------------------------------------------
# the teacher


class TSASPCTeacher:
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

    def make_labels(self, videos):
        """Ensemble pseudo labels (plus background stamps) for every video; fills label_report."""
        cfg = self.cfg
        points = [self._check(v) for v in videos]
        self.typical_length = clustering.typical_action_length([p for p, _ in points])
        use_bg = cfg.background_stamps
        factor = cfg.background_gap_factor
        info = {}
        for video, (p, lab) in zip(videos, points):
            info[video.video_id] = clustering.pseudo_frame_labels(
                video.features, p, lab, self.num_classes, background=use_bg,
                typical_length=self.typical_length, gap_factor=factor)
        self._info = info
        self.initial_labels = {k: v["labels"].copy() for k, v in info.items()}
        self.report = {
            "videos": len(videos),
            "frames": int(sum(len(v["labels"]) for v in info.values())),
            "points": int(sum(len(p) for p, _ in points)),
            "duplicate_points_dropped": int(sum(v["duplicates_dropped"] for v in info.values())),
            "background_stamps": use_bg,
            "background_gap_factor": factor,
            "typical_action_length": self.typical_length,
            "typical_action_length_source": "median spacing of consecutive points (steps)",
            "background_stamps_added": int(sum(v["background_added"] for v in info.values())),
            "videos_with_background_stamps": int(sum(v["background_added"] > 0 for v in info.values())),
            "growth_rounds": 0,
        }
        self._refresh_labels()
        self.report["labelled_fraction_initial"] = self.report["labelled_fraction"]
        self.report["background_labelled_fraction_initial"] = self.report["background_labelled_fraction"]
        return self.frame_labels(initial=True)

    def _refresh_labels(self):
        """Current labels and their labelled / background fractions (into the report)."""
        frames = max(sum(len(v["labels"]) for v in self._info.values()), 1)
        labelled = sum(int((v["labels"] != IGNORE).sum()) for v in self._info.values())
        bg = sum(int((v["labels"] == self.num_classes).sum()) for v in self._info.values())
        self.labels = {k: v["labels"] for k, v in self._info.items()}
        self.report["labelled_fraction"] = labelled / frames
        self.report["background_labelled_fraction"] = bg / frames
        return labelled / frames

    def label_report(self) -> dict:
        """Statistics of the pseudo frame labels (see make_labels); plain types only."""
        return copy.deepcopy(self.report)

    def frame_labels(self, initial=False):
        """Pseudo frame labels per video id (IGNORE = -100 where unlabelled): initial or current."""
        src = self.initial_labels if initial else self.labels
        return {k: v.copy() for k, v in src.items()}

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

    def _targets(self, infos, tmax):
        """Frame labels, each labelled frame's stamp, and the confidence-loss masks (padded)."""
        B = len(infos)
        target = np.full((B, tmax), IGNORE, np.int64)
        stamp_at = np.zeros((B, tmax), np.int64)
        away_cls = np.zeros((B, tmax - 1), np.int64)
        toward_cls = np.zeros_like(away_cls)
        conf_ok = np.zeros(away_cls.shape, np.float32)
        for b, info in enumerate(infos):
            labels, owner, stamps = info["labels"], info["owner"], info["stamps"]
            T = len(labels)
            target[b, :T] = labels
            if len(stamps):
                stamp_at[b, :T] = np.where(owner >= 0, stamps[np.maximum(owner, 0)], 0)
            if len(stamps) > 1:
                # frame pair (t, t+1) with s_j <= t < s_{j+1}: away from stamp j, towards j+1
                t = np.arange(stamps[0], stamps[-1])
                j = np.searchsorted(stamps, t, side="right") - 1
                away_cls[b, t] = info["stamp_labels"][j]
                toward_cls[b, t] = info["stamp_labels"][j + 1]
                conf_ok[b, t] = 1.0
        dev = self.device
        return {"target": torch.from_numpy(target).to(dev),
                "stamp_at": torch.from_numpy(stamp_at).to(dev),
                "labelled": torch.from_numpy((target != IGNORE).astype(np.float32)).to(dev),
                "away_cls": torch.from_numpy(away_cls).to(dev),
                "toward_cls": torch.from_numpy(toward_cls).to(dev),
                "conf_ok": torch.from_numpy(conf_ok).to(dev)}

    # ---------------------------------------------------------------- training
    def _losses(self, hidden, outputs, mask, tg):
        w = self.cfg.loss_weights
        ce = sm = conf = outputs.new_zeros(())
        any_labelled = bool(tg["labelled"].sum() > 0)
        for logits in outputs:
            if any_labelled:
                ce = ce + F.cross_entropy(logits, tg["target"], ignore_index=IGNORE)
            sm = sm + smoothing_loss(logits, mask, float(self.cfg.smoothing_clamp))
            conf = conf + confidence_loss(logits, tg["away_cls"], tg["conf_ok"], tg["toward_cls"], tg["conf_ok"])
        cl = cluster_loss(hidden, tg["stamp_at"], tg["labelled"])
        total = ce + w.smoothing * sm + w.confidence * conf + w.cluster * cl
        return total, {"loss_ce": ce, "loss_smoothing": sm, "loss_confidence": conf, "loss_cluster": cl}

    def _grow(self, video_ids, hidden, lengths):
        """Label growth for the videos of a batch from their (detached) last-stage features."""
        emb = F.normalize(hidden.detach(), p=2, dim=1).cpu().numpy()
        for b, (vid, T) in enumerate(zip(video_ids, lengths)):
            info = self._info[vid]
            info["left"], info["right"] = clustering.grow_intervals(emb[b, :, :T].T, info["left"], info["right"])
            info["labels"], info["owner"] = clustering.intervals_to_labels(
                T, info["left"], info["right"], info["stamp_labels"])

    def fit(self, videos, log=None, progress=True, checkpoint=None, checkpoint_every=5):
        """Train on the videos' features and points; returns one history row per epoch.

        Epochs 1..growth_epochs train on the ensemble labels; from then on, every batch first
        grows its videos' labels from the features of its own forward pass (as TSASPC does,
        which costs no extra forward pass), then trains on the grown labels.

        `checkpoint` (a path) makes training crash-safe: every `checkpoint_every` epochs the
        whole loop state (model, optimizer, grown labels, history, RNG states) is written there
        atomically, and a fit that finds the file resumes from it, so an interrupted and resumed
        fit ends bit-identical to an uninterrupted one (same device). The file is written before
        `log` sees the epoch's row (a failing logger loses no epoch; rows already logged before
        the crash are not logged again) and is removed when training completes. A file from
        other inputs (video ids, lengths, points, classes, feature dim or cfg) is refused with
        an OnPointError rather than silently overwritten: it may hold hours of someone's work.
        """
        if not videos:
            fail("teacher input", "no training videos")
        ids = [v.video_id for v in videos]
        if len(set(ids)) != len(ids):
            fail("teacher input", "duplicate video ids")
        cfg = self.cfg
        self.make_labels(videos)
        epochs, growth, bs, seed = cfg.epochs, cfg.growth_epochs, cfg.batch_size, cfg.seed
        path = Path(checkpoint) if checkpoint is not None else None
        every = int(checkpoint_every)
        if path is not None and every < 1:
            fail(path, f"checkpoint_every must be at least 1, got {checkpoint_every}")
        fingerprint = self._fingerprint(videos) if path is not None else None
        resume = read_resume_file(path, RESUME_FORMAT, fingerprint) if path is not None and path.exists() else None
        rng = np.random.default_rng(seed)
        opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        history, done = [], 0
        with seeded(seed + 1):
            if resume is not None:
                done, history = self._restore(resume, opt, rng)
            for epoch in tqdm(range(done + 1, epochs + 1), desc="tsaspc epochs", disable=not progress,
                              initial=done, total=epochs):
                self.model.train()
                sums = dict.fromkeys(("loss", "loss_ce", "loss_smoothing", "loss_confidence", "loss_cluster"), 0.0)
                order = rng.permutation(len(videos))
                n_batches = 0
                for k in range(0, len(order), bs):
                    chunk = [videos[i] for i in order[k:k + bs]]
                    x, mask = self._inputs([v.features for v in chunk])
                    hidden, outputs = self.model(x, mask)
                    if epoch > growth:
                        self._grow([v.video_id for v in chunk], hidden, [v.n_steps for v in chunk])
                    tg = self._targets([self._info[v.video_id] for v in chunk], x.shape[2])
                    total, parts = self._losses(hidden, outputs, mask, tg)
                    opt.zero_grad(set_to_none=True)
                    total.backward()
                    opt.step()
                    sums["loss"] += float(total.detach())
                    for name, value in parts.items():
                        sums[name] += float(value.detach())
                    n_batches += 1
                if epoch > growth:
                    self.report["growth_rounds"] += 1
                frac = self._refresh_labels()
                row = {"epoch": epoch, **{k: v / n_batches for k, v in sums.items()}, "labelled_fraction": frac}
                history.append(row)
                if path is not None and epoch % every == 0 and epoch < epochs:
                    self._write_resume(path, fingerprint, epoch, opt, rng, history)
                if log is not None:
                    log(row)
        self.model.eval()
        if path is not None:
            path.unlink(missing_ok=True)
        return history

    # ---------------------------------------------------------------- resume file
    def _fingerprint(self, videos):
        """What the resume file must match: the inputs and cfg (points hashed, features not,
        since hashing every feature file would cost a full read of the data)."""
        points = hashlib.sha256()
        for v in videos:
            points.update(np.ascontiguousarray(v.point_steps, np.int64).tobytes())
            points.update(b"|")
            points.update(np.ascontiguousarray(v.point_labels, np.int64).tobytes())
            points.update(b"#")
        return {"video_ids": [str(v.video_id) for v in videos],
                "n_steps": [int(v.n_steps) for v in videos],
                "points_sha256": points.hexdigest(),
                "num_classes": self.num_classes,
                "feature_dim": self.input_dim,
                "cfg": json.dumps(self.cfg.as_dict(), sort_keys=True, default=str)}

    def _write_resume(self, path, fingerprint, epoch, opt, rng, history):
        """Everything the epoch loop carries, as plain types and tensors, written atomically."""
        grown = {vid: {key: torch.from_numpy(np.array(info[key], np.int64))
                       for key in ("left", "right", "labels", "owner")}
                 for vid, info in self._info.items()}
        state = {
            "format": RESUME_FORMAT,
            "fingerprint": fingerprint,
            "epoch": int(epoch),
            "history": copy.deepcopy(history),
            "growth_rounds": int(self.report["growth_rounds"]),
            "labels": grown,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": opt.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "numpy_rng": copy.deepcopy(rng.bit_generator.state),
        }
        write_resume_file(path, state)

    def _restore(self, state, opt, rng):
        """Put the loop back where the resume file left it; returns (epochs done, history)."""
        self.model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for vid, grown in state["labels"].items():
            info = self._info[vid]
            for key, value in grown.items():
                info[key] = value.numpy().astype(np.int64)
        self.report["growth_rounds"] = int(state["growth_rounds"])
        self._refresh_labels()
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        rng.bit_generator.state = state["numpy_rng"]
        return int(state["epoch"]), list(state["history"])

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def predict_cas_batch(self, features_list, batch=8):
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

    def predict_cas(self, features):
        """CAS of one video: T x (C+1) float32, rows sum to 1, background last."""
        return self.predict_cas_batch([features])[0]

    def video_scores(self, cas, detect: TSASPCDetect):
        """Video-level class scores: mean of each class's top T/8 frame probabilities (C,)."""
        from .proposals import topk_video_scores

        return topk_video_scores(np.asarray(cas)[:, :-1])

    def detect(self, cas, proposals: TSASPCProposals, detect: TSASPCDetect, class_ratio=None):
        """Runs of frames with the same predicted action class: N x 5 (label, start, end, score, nan).
        (TSASPC has no proposal or detection settings: the frame labels decide.)"""
        return self._runs(cas, np.zeros(0, np.int64), np.zeros(0, np.int64))

    def pseudo_segments(self, cas, point_steps, point_labels, proposals: TSASPCProposals, pseudo: TSASPCPseudo):
        """The same runs; `point` holds a same-class point inside the run (nearest its centre), else nan."""
        return self._runs(cas, point_steps, point_labels)

    def _runs(self, cas, point_steps, point_labels):
        """The same runs; `point` holds a same-class point inside the run (nearest its centre), else nan."""
        cas = np.asarray(cas, np.float64)
        if cas.ndim != 2 or cas.shape[1] != self.num_classes + 1:
            fail("teacher CAS", f"shape {cas.shape}, expected T x {self.num_classes + 1}")
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
