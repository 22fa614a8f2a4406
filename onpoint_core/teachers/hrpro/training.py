"""HR-Pro teacher training: the iteration loop, prototype EMA, crash-safe resume (a mixin of HRProTeacher).

Prototype EMA as HR-Pro does it: HR-Pro forwards an iteration's videos one at a time and moves
each class prototype after every video, toward the mean embedding of that video's action seeds
of the class. Here the videos share padded (sub-)batches, so the per-video seed means are
collected and the EMA steps are applied after the optimiser step, one per video, in the order
the videos were drawn (not the length order of the padding, so sub_batches never reorders the
steps). What still differs: every video of an iteration sees the prototypes as they were at its
start, where HR-Pro's later videos see those moved by the earlier ones.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from ...errors import OnPointError, fail
from ...runtime import deterministic as _deterministic
from ...runtime import seeded as _seeded
from ...resume import read_resume_file, write_resume_file
from ..base import TeacherVideo
from .losses import contrastive, focal_bce, select_seeds

RESUME_FORMAT = "onpoint.hrpro-resume/3"   # /3: prototype EMA once per video
PROTOTYPE_BATCH = 16   # videos per padded eval batch when prototypes start (padding never changes results)


def _to_cpu(obj):
    """Copy of a nested dict/list state with every tensor moved to the CPU (portable resume files)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


# ---------------------------------------------------------------------------------------------


class Training:
    """fit() and what it needs; HRProTeacher supplies the model, input checks, padding and the eval forward."""

    def _init_prototypes(self, feats, videos):
        """Prototype c = mean eval-mode embedding of the class-c point steps."""
        sums = torch.zeros_like(self.model.prototypes)
        counts = torch.zeros(self.num_classes, device=self.device)
        for (_, emb, _), (steps, labels) in zip(self._forward_eval(feats, PROTOTYPE_BATCH), videos):
            if steps.size:
                lab = torch.as_tensor(labels, device=self.device)
                sums.index_add_(0, lab, emb[torch.as_tensor(steps, device=self.device)])
                counts.index_add_(0, lab, torch.ones(lab.shape[0], device=self.device))
        seen = counts > 0
        self.model.prototypes[seen] = sums[seen] / counts[seen, None]

    def _fingerprint(self, videos, points):
        """What a resume file must have been made from: same model shape, cfg, videos and points.
        Features are not hashed (too costly on real data); ids + lengths + points catch other data."""
        import hashlib
        digest = hashlib.sha256()
        for steps, labels in points:
            digest.update(np.int64(steps.size).tobytes() + steps.tobytes() + labels.tobytes())
        return {"num_classes": self.num_classes, "feature_dim": self.feature_dim,
                "cfg": self.cfg.as_dict(), "n_videos": len(videos),
                "video_ids": [str(v.video_id) for v in videos],
                "n_steps": [int(np.asarray(v.features).shape[0]) for v in videos],
                "points_sha256": digest.hexdigest()}

    def _save_resume(self, path, fingerprint, optimizer, rng, queue, history):
        """Everything the loop needs to continue bit-identically; plain types + CPU tensors only."""
        state = {"format": RESUME_FORMAT, "fingerprint": fingerprint, "iteration": len(history),
                 "history": copy.deepcopy(history),
                 "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                 "optimizer": _to_cpu(optimizer.state_dict()),
                 "queue": torch.as_tensor(queue, dtype=torch.int64).clone(),
                 "numpy_rng": copy.deepcopy(rng.bit_generator.state),
                 "torch_rng": torch.get_rng_state(),
                 "cuda_rng": [s.cpu() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else []}
        write_resume_file(path, state)

    def fit(self, videos: list[TeacherVideo], log=None, progress=True, checkpoint=None,
            checkpoint_every=50) -> list[dict]:
        """Train on point-labelled videos; returns one history row per iteration (last iterate kept).

        `checkpoint`: path of a resume file, written atomically every `checkpoint_every` iterations
        (not after the last) and removed when training completes. If it exists when fit starts,
        training continues from it (same result, bit for bit, as never stopping); one made from
        other inputs or params raises an OnPointError. `log` sees only the rows run in this call;
        the returned history holds all of them.
        """
        if not videos:
            raise OnPointError("hrpro teacher: no training videos")
        cfg = self.cfg
        feats, points = [], []
        for v in videos:
            f = self._check_features(v.features, v.video_id)
            feats.append(f)
            points.append(self._check_points(v.point_steps, v.point_labels, f.shape[0], v.video_id))
        if not any(s.size for s, _ in points):
            raise OnPointError("hrpro teacher: no training video has a point")
        crop = cfg.max_train_steps
        crop = int(crop) if crop is not None else None
        batch_size = min(cfg.videos_per_iteration, len(videos))
        sub_batches = cfg.sub_batches
        momentum = cfg.prototype_momentum
        history = []
        total = cfg.iterations
        every = int(checkpoint_every)
        if checkpoint is not None:
            if isinstance(checkpoint_every, bool) or every < 1:
                raise OnPointError(f"hrpro teacher: checkpoint_every must be a positive integer, got {checkpoint_every!r}")
            checkpoint = Path(checkpoint)
            fingerprint = self._fingerprint(videos, points)
            resume = read_resume_file(checkpoint, RESUME_FORMAT, fingerprint) if checkpoint.exists() else None
        else:
            resume = None
        with _deterministic(), _seeded(cfg.seed):
            rng = np.random.default_rng(cfg.seed)
            params = [p for p in self.model.parameters() if p.requires_grad]
            optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
            queue = np.zeros(0, dtype=np.int64)
            if resume is not None:                        # continue exactly where the file left off
                self.model.load_state_dict(resume["model"])
                optimizer.load_state_dict(resume["optimizer"])
                queue = resume["queue"].numpy().astype(np.int64)
                history = list(resume["history"])
                rng.bit_generator.state = resume["numpy_rng"]
                torch.set_rng_state(resume["torch_rng"])
                if resume["cuda_rng"] and torch.cuda.is_available():
                    if len(resume["cuda_rng"]) != torch.cuda.device_count():
                        fail(checkpoint, f"hrpro resume file saved {len(resume['cuda_rng'])} CUDA RNG states, "
                                         f"this machine has {torch.cuda.device_count()} GPUs")
                    torch.cuda.set_rng_state_all(resume["cuda_rng"])
            elif not bool(self.model.prototypes.any()):   # fresh teacher; a second fit continues
                self._init_prototypes(feats, points)
            start = int(resume["iteration"]) if resume is not None else 0
            iterations = range(start, total)
            bar = None
            if progress:
                from ...progress import progress as progress_bar
                bar = progress_bar(iterations, desc="hrpro teacher", unit="it", initial=start, total=total)
                iterations = bar
            for it in iterations:
                if queue.size < batch_size:
                    queue = np.concatenate([queue, rng.permutation(len(videos))])
                idx, queue = queue[:batch_size], queue[batch_size:]
                clips = [self._crop(feats[i], *points[i], crop, rng) for i in idx]
                by_length = np.argsort([f.shape[0] for f, _, _ in clips], kind="stable")
                clips = [clips[i] for i in by_length]
                self.model.train()
                optimizer.zero_grad(set_to_none=True)
                parts = [p for p in np.array_split(np.arange(len(clips)), min(sub_batches, len(clips))) if p.size]
                totals = np.zeros(4)
                seed_means, seeded = [], []
                for part in parts:                         # gradients accumulate over the sub-batches
                    losses, means, has = self._batch_losses([clips[i] for i in part], len(clips))
                    losses[0].backward()
                    totals += [float(x.item()) for x in losses]
                    seed_means.append(means)
                    seeded.append(has)
                optimizer.step()
                drawn = torch.as_tensor(np.argsort(by_length), device=self.device)   # back to the drawn order
                self._prototype_ema(torch.cat(seed_means)[drawn], torch.cat(seeded)[drawn], momentum)
                loss, loss_point, loss_bkg, loss_con = (float(x) for x in totals)
                row = {"iteration": it + 1, "loss": loss, "loss_point": loss_point,
                       "loss_background": loss_bkg, "loss_contrast": loss_con}
                history.append(row)
                if checkpoint is not None and (it + 1) % every == 0 and it + 1 < total:
                    self._save_resume(checkpoint, fingerprint, optimizer, rng, queue, history)
                if log is not None:
                    log(row)
                if bar is not None:
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
            if bar is not None:
                bar.close()
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)
        self.model.eval()
        return history

    @torch.no_grad()
    def _prototype_ema(self, seed_means, seeded, momentum):
        """One EMA step per video, videos in the given order: prototype c <- (1 - m) c + m x the
        video's class-c action-seed mean, for the classes the video has seeds of (HR-Pro)."""
        protos = self.model.prototypes
        for means, has in zip(seed_means, seeded):
            protos[has] = (1 - momentum) * protos[has] + momentum * means[has]

    def _batch_losses(self, clips, batch_size):
        """Forward one padded (sub-)batch; seeds on its detached background score; the weighted loss
        and its parts (each already divided by the whole batch's size), and per video (rows in the
        order of `clips`) the mean detached embedding of its class-c action seeds (B x C x D) and
        whether it has any (B x C), for the per-video prototype EMA."""
        cfg, c, to = self.cfg, self.num_classes, dict(device=self.device)
        batch, valid, lengths = self._pad([f for f, _, _ in clips])
        cas, emb, _ = self.model(batch, valid)
        b, t = valid.shape
        bkg = cas[..., -1].detach().cpu().numpy()
        point_target = np.zeros((b, t, c + 1), dtype=np.float32)
        point_weight = np.zeros((b, t), dtype=np.float32)
        act_seed = np.zeros((b, t, c), dtype=bool)
        bkg_seed = np.zeros((b, t), dtype=bool)
        for row, (_, steps, labels) in enumerate(clips):
            if not steps.size:
                continue
            point_target[row, steps, labels] = 1.0
            point_weight[row, steps] = 1.0
            a, s = select_seeds(bkg[row, :lengths[row]], steps, labels, c,
                                cfg.bkg_seed_threshold, cfg.action_seed_threshold)
            act_seed[row, :lengths[row]] = a
            bkg_seed[row, :lengths[row]] = s
        bkg_target = torch.zeros(c + 1, **to)
        bkg_target[-1] = 1.0
        bkg_seed_t = torch.as_tensor(bkg_seed, **to)
        act_seed_t = torch.as_tensor(act_seed, **to)
        loss_point = focal_bce(cas, torch.as_tensor(point_target, **to), torch.as_tensor(point_weight, **to))
        loss_bkg = focal_bce(cas, bkg_target.expand_as(cas), bkg_seed_t.to(cas.dtype))
        loss_con = contrastive(emb, self.model.prototypes, act_seed_t, bkg_seed_t, cfg.temperature)
        loss_point, loss_bkg, loss_con = (x / batch_size for x in (loss_point, loss_bkg, loss_con))
        w = cfg.loss_weights
        loss = w.point * loss_point + w.background * loss_bkg + w.contrast * loss_con
        with torch.no_grad():
            a = act_seed_t.to(emb.dtype)
            counts = a.sum(1)                                                       # B x C
            means = torch.einsum("btc,btd->bcd", a, emb.detach()) / counts.clamp(min=1)[..., None]
        return (loss, loss_point, loss_bkg, loss_con), means, counts > 0

    @staticmethod
    def _crop(features, steps, labels, crop, rng):
        """Optional random crop of a long training video (points shifted, those outside dropped)."""
        n = features.shape[0]
        if crop is None or n <= crop:
            return features, steps, labels
        start = int(rng.integers(0, n - crop + 1))
        keep = (steps >= start) & (steps < start + crop)
        return features[start:start + crop], steps[keep] - start, labels[keep]
