"""TSASPC teacher training: pseudo frame labels, label growth, the epoch loop, crash-safe resume
(a mixin of TSASPCTeacher).

Two phases, as in TSASPC: epochs 1..growth_epochs train the cross entropy on the stamps alone
(the points plus the background stamps; every other frame ignored), so the network learns the
classes from the only frames whose label is certain before any clustering guess steers it.
Later epochs train on the ensemble pseudo labels, grown every batch from the network's own
features. The smoothing, confidence and cluster losses run in both phases; the cluster loss
always pulls the frames of the ensemble intervals toward their stamp (on the stamps alone every
distance would be zero and the loss would do nothing).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import fail
from ...progress import note
from ...progress import progress as progress_bar
from ...runtime import seeded
from .. import clustering
from ...resume import read_resume_file, write_resume_file
from .losses import IGNORE, cluster_loss, confidence_loss, smoothing_loss

RESUME_FORMAT = "onpoint.tsaspc-resume/2"   # /2: phase 1 trains CE on the stamps alone


class Training:
    """fit() and what it needs; TSASPCTeacher supplies the model, input checks and padding (_inputs)."""

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
            "phase1_epochs": int(min(cfg.growth_epochs, cfg.epochs)),
            "phase1_targets": "stamps (points and background stamps)",
            "phase1_labelled_fraction": (sum(len(v["stamps"]) for v in info.values())
                                         / max(sum(len(v["labels"]) for v in info.values()), 1)),
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

    @staticmethod
    def _stamp_targets(info):
        """Phase-1 CE targets of one video: the stamps' classes at the stamps, IGNORE elsewhere."""
        target = np.full(len(info["labels"]), IGNORE, np.int64)
        target[info["stamps"]] = info["stamp_labels"]
        return target

    def _targets(self, infos, tmax, stamps_only=False):
        """CE targets (the stamps alone when `stamps_only`, else the current ensemble labels), the
        ensemble-labelled frames and each one's stamp (cluster loss), the confidence-loss masks;
        all padded to tmax."""
        B = len(infos)
        target = np.full((B, tmax), IGNORE, np.int64)
        labelled = np.zeros((B, tmax), np.float32)
        stamp_at = np.zeros((B, tmax), np.int64)
        away_cls = np.zeros((B, tmax - 1), np.int64)
        toward_cls = np.zeros_like(away_cls)
        conf_ok = np.zeros(away_cls.shape, np.float32)
        for b, info in enumerate(infos):
            labels, owner, stamps = info["labels"], info["owner"], info["stamps"]
            T = len(labels)
            target[b, :T] = self._stamp_targets(info) if stamps_only else labels
            labelled[b, :T] = labels != IGNORE
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
                "labelled": torch.from_numpy(labelled).to(dev),
                "away_cls": torch.from_numpy(away_cls).to(dev),
                "toward_cls": torch.from_numpy(toward_cls).to(dev),
                "conf_ok": torch.from_numpy(conf_ok).to(dev)}

    def _losses(self, hidden, outputs, mask, tg):
        """Weighted total and its parts; CE only when some frame of the batch has a target."""
        w = self.cfg.loss_weights
        ce = sm = conf = outputs.new_zeros(())
        any_labelled = bool((tg["target"] != IGNORE).any())
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

        Epochs 1..growth_epochs (phase 1) train the CE on the stamps alone; from then on
        (phase 2) every batch first grows its videos' ensemble labels from the features of its
        own forward pass (as TSASPC does, which costs no extra forward pass), then trains the CE
        on the grown labels. The phase follows from the epoch number alone, so a resumed fit
        crosses the boundary exactly where an uninterrupted one does. History rows'
        `labelled_fraction` is that of the ensemble labels (the ones that grow) in both phases.

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
            for epoch in progress_bar(range(done + 1, epochs + 1), desc="tsaspc epochs", disable=not progress,
                                      initial=done, total=epochs, unit="epoch", leave=False):
                self.model.train()
                sums = dict.fromkeys(("loss", "loss_ce", "loss_smoothing", "loss_confidence", "loss_cluster"), 0.0)
                order = rng.permutation(len(videos))
                n_batches = 0
                for k in range(0, len(order), bs):
                    chunk = [videos[i] for i in order[k:k + bs]]
                    x, mask = self._inputs([v.features for v in chunk])
                    hidden, outputs = self.model(x, mask)
                    phase1 = epoch <= growth
                    if not phase1:
                        self._grow([v.video_id for v in chunk], hidden, [v.n_steps for v in chunk])
                    tg = self._targets([self._info[v.video_id] for v in chunk], x.shape[2], stamps_only=phase1)
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
                if progress:
                    note(f"tsaspc epoch {epoch}/{epochs}: loss {row['loss']:.4f}, labelled {frac:.1%} of frames"
                         + (" (stamps only)" if epoch <= growth else ""))
                if path is not None and epoch % every == 0 and epoch < epochs:
                    self._write_resume(path, fingerprint, epoch, opt, rng, history)
                if log is not None:
                    log(row)
        self.model.eval()
        if path is not None:
            path.unlink(missing_ok=True)
        return history

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
