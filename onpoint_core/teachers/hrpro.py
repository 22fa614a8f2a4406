"""HR-Pro style offline teacher, snippet-level stage (METHOD.md 3a).

Produces, per video, the fused class activation sequence A (T x (C+1), background last) and, from
the training points, one reliable proposal per point (the pseudo segments). It only ever sees
`TeacherVideo`s (features + points), never ground-truth segments.

Model: input projection (1x1 conv, only when the feature dim differs from `embed_dim`) -> tokens =
T snippets + C class prototypes -> `layers` reliability-aware attention blocks (q, k = 1x1 convs of
x, v = x, multi-head attention with its own in/out projections as in HR-Pro's use of
nn.MultiheadAttention, residual + LayerNorm, FFN D->ffn_dim->D, residual + LayerNorm) -> first T
tokens -> Conv1d(k=3)+ReLU = embedding -> dropout, Conv1d(D->C+1, k=1, no bias), sigmoid.
Fused CAS = [cas * (1 - bkg), bkg].

Choices where METHOD.md is silent (every setting is a key of params.yaml `hrpro`):
- Batches pad to the longest video with a mask: padded steps are never keys in attention, are
  zeroed before the k=3 conv (so a video's CAS does not depend on its batch mates) and never enter
  seeds or losses. Batches are drawn epoch-wise: a seeded permutation of the training videos is cut
  into `videos_per_iteration` slices.
- Losses are averaged like HR-Pro: each video's focal BCE is divided by its number of point
  (background-seed) steps and the batch sum by the batch size; the contrastive loss is the mean
  over the video's classes of 0.5 * (-log a_c / sum_k a_k) + 0.5 * (-log a_c / (a_c + b_c)), with
  a_k (b_k) the mean over action (background) seeds of exp(cos(embedding, prototype_k) / T),
  summed over videos with background seeds and divided by the batch size. HR-Pro's video-level
  top-k loss is not part of METHOD.md and is left out.
- Prototypes start (first `fit` only) as the mean eval-mode embedding of each class's point steps (computed with zero
  prototypes as tokens, as HR-Pro does); after each optimiser step each class present in the
  batch's action seeds moves `prototype_momentum` toward their mean (detached) embedding, one EMA
  step per class per iteration. A class without points keeps a zero prototype.
- Each iteration's videos are sorted by length; `sub_batches` > 1 splits them into padded
  sub-batches whose gradients add up to the same loss (every term is a per-video sum divided by
  the batch size) and whose action seeds feed one prototype EMA step.
- Attention uses F.scaled_dot_product_attention. With attention dropout > 0 on CPU, PyTorch falls
  back to its unfused kernel, several times slower on long videos; `max_train_steps` (random crop
  of long training videos, default off) is the other speed lever.
- `fit` returns the last iterate; picking a checkpoint on a validation split is the caller's job.
- Crash-safe resume (`fit(checkpoint=path)`): every `checkpoint_every` iterations the whole loop
  state (model incl. prototypes, Adam, batch queue, history, torch/numpy/CUDA RNG states) is saved
  atomically, so a resumed fit is bit-identical to an uninterrupted one. A resume file made from
  other inputs (video ids/lengths/points, cfg, model shape) is refused with an OnPointError rather
  than silently ignored: overwriting it could discard hours of training by a mistyped path.
- Proposals (`detect`, `pseudo_segments`): see proposals.py. `detect` scores every class and
  applies class-wise Gaussian soft-NMS (HR-Pro's sigma 0.3; `nms_sigma: null` -> hard NMS at
  `nms_iou`). `pseudo_segments` chooses among the raw (pre-NMS) proposals of the points' classes.
- HR-Pro's instance-level stage (`instance_refinement: true`) is not implemented and is refused.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import HRProDetect, HRProProposals, HRProPseudo, HRProTrain, ParamsError, build
from ..errors import OnPointError, fail
from ..runtime import deterministic as _deterministic
from ..runtime import pick_device
from ..runtime import seeded as _seeded
from .base import TeacherVideo, read_resume_file, write_resume_file
from .proposals import cas_proposals, nms, reliable_proposals, threshold_grid, topk_video_scores

FORMAT = "onpoint.hrpro-teacher/2"     # /2: the checkpoint stores training settings only
RESUME_FORMAT = "onpoint.hrpro-resume/2"
PROTOTYPE_BATCH = 16   # videos per padded eval batch when prototypes start (padding never changes results)

# ---------------------------------------------------------------------------------------------
# Model


class _ReliabilityAwareBlock(nn.Module):
    """One attention layer over snippet + prototype tokens (queries/keys from 1x1 convs, values = x).

    A 1x1 Conv1d is a per-token linear map; nn.Linear computes the same thing without the
    conv kernel's overhead on CPU, so the "convs" below are Linear layers.
    """

    def __init__(self, dim, heads, attention_dropout, ffn_dim, dropout):
        super().__init__()
        self.heads = heads
        self.attention_dropout = attention_dropout
        self.conv_query = nn.Linear(dim, dim)
        self.conv_key = nn.Linear(dim, dim)
        self.in_query = nn.Linear(dim, dim)
        self.in_key = nn.Linear(dim, dim)
        self.in_value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def _split(self, x):
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x, key_valid):
        """x: B x N x D tokens; key_valid: B x N bool, False for padded steps (never attended to)."""
        b, n, d = x.shape
        q = self._split(self.in_query(self.conv_query(x)))
        k = self._split(self.in_key(self.conv_key(x)))
        v = self._split(self.in_value(x))
        p = self.attention_dropout if self.training else 0.0
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=key_valid[:, None, None, :], dropout_p=p)
        att = self.out(att.transpose(1, 2).reshape(b, n, d))
        x = self.norm1(x + self.dropout1(att))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class _SnippetModel(nn.Module):
    def __init__(self, num_classes, feature_dim, cfg):
        super().__init__()
        dim = int(cfg.embed_dim)
        self.project = nn.Linear(feature_dim, dim) if feature_dim != dim else nn.Identity()   # 1x1 conv
        self.blocks = nn.ModuleList(
            _ReliabilityAwareBlock(dim, cfg.heads, cfg.attention_dropout, cfg.ffn_dim, cfg.ffn_dropout)
            for _ in range(cfg.layers))
        self.embed = nn.Sequential(nn.Conv1d(dim, dim, 3, padding=1), nn.ReLU())
        self.classifier = nn.Sequential(nn.Dropout(cfg.classifier_dropout),
                                        nn.Conv1d(dim, num_classes + 1, 1, bias=False))
        # Class prototypes: model state (saved, used as tokens) but outside gradient descent.
        self.register_buffer("prototypes", torch.zeros(num_classes, dim))

    def forward(self, features, valid):
        """features: B x T x F (padded), valid: B x T bool -> fused CAS B x T x (C+1), embedding B x T x D."""
        b, t, _ = features.shape
        x = self.project(features)                                                   # B x T x D
        protos = self.prototypes.to(x.dtype).unsqueeze(0).expand(b, -1, -1)         # B x C x D
        tokens = torch.cat([x, protos], dim=1)
        key_valid = torch.cat([valid, valid.new_ones(b, protos.shape[1])], dim=1)
        for block in self.blocks:
            tokens = block(tokens, key_valid)
        x = tokens[:, :t] * valid.unsqueeze(-1).to(tokens.dtype)                    # padded steps read as zero padding
        emb = self.embed(x.transpose(1, 2))                                          # B x D x T
        cas = torch.sigmoid(self.classifier(emb)).transpose(1, 2)                   # B x T x (C+1)
        bkg = cas[..., -1:]
        fused = torch.cat([cas[..., :-1] * (1.0 - bkg), bkg], dim=-1)
        return fused, emb.transpose(1, 2)


# ---------------------------------------------------------------------------------------------
# Seeds


def select_seeds(bkg, point_steps, point_labels, num_classes, bkg_threshold=0.95, action_threshold=0.1):
    """HR-Pro seed selection on one video's background score -> (action seeds T x C bool, background seeds T bool).

    Background seeds, in the regions the points cut the video into (points themselves excluded):
    before the first point, every step up to the last one with bkg >= threshold (or up to the
    argmax when none is); after the last point, every step from the first such one (or from the
    argmax); between two points, the span from the first to the last such step when there are at
    least two, otherwise the argmax (plus the single such step). Action seeds: the points, grown
    outward while bkg <= action_threshold and not a background seed, never past the neighbouring
    point; grown steps take the point's class(es). Loops run over points, not steps.
    """
    bkg = np.asarray(bkg, dtype=np.float64).reshape(-1)
    n = bkg.size
    act = np.zeros((n, num_classes), dtype=bool)
    bseed = np.zeros(n, dtype=bool)
    steps = np.asarray(point_steps, dtype=np.int64).reshape(-1)
    if steps.size == 0 or n == 0:
        return act, bseed
    act[steps, np.asarray(point_labels, dtype=np.int64).reshape(-1)] = True
    pts = np.unique(steps)
    high = bkg >= bkg_threshold
    if pts[0] > 0:                                          # before the first point
        region = high[:pts[0]]
        last = np.flatnonzero(region)[-1] if region.any() else int(np.argmax(bkg[:pts[0]]))
        bseed[:last + 1] = True
    if pts[-1] < n - 1:                                     # after the last point
        lo = pts[-1] + 1
        region = high[lo:]
        first = np.flatnonzero(region)[0] if region.any() else int(np.argmax(bkg[lo:]))
        bseed[lo + first:] = True
    for a, b in zip(pts[:-1], pts[1:]):                     # between consecutive points
        if b - a <= 1:
            continue
        idx = np.flatnonzero(high[a + 1:b]) + a + 1
        bseed[idx] = True
        if idx.size >= 2:
            bseed[idx[0]:idx[-1] + 1] = True
        else:
            bseed[a + 1 + int(np.argmax(bkg[a + 1:b]))] = True
    grow = (bkg <= action_threshold) & ~bseed
    bounds = np.concatenate([[-1], pts, [n]])
    for i, p in enumerate(pts):
        row = act[p]
        lo, hi = bounds[i] + 1, bounds[i + 2]               # neighbouring points (exclusive)
        left = grow[lo:p][::-1]
        stop = np.flatnonzero(~left)
        k = stop[0] if stop.size else left.size
        act[p - k:p] |= row
        right = grow[p + 1:hi]
        stop = np.flatnonzero(~right)
        k = stop[0] if stop.size else right.size
        act[p + 1:p + 1 + k] |= row
    return act, bseed


# ---------------------------------------------------------------------------------------------
# Losses


def _focal_bce(cas, target, weight):
    """Per-video focal BCE (weights (1-p)^2 on positives, p^2 on negatives) summed over channels and
    the weighted steps, divided by the number of weighted steps; then summed over the batch."""
    p = cas.clamp(1e-6, 1 - 1e-6)
    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p))
    focal = ((1 - p) * target + p * (1 - target)) ** 2
    per_step = (focal * bce).sum(-1) * weight
    return (per_step.sum(1) / (weight.sum(1) + 1e-6)).sum()


def _contrastive(emb, prototypes, act_seed, bkg_seed, temperature):
    """Prototype contrastive loss summed over videos (see module docstring); emb B x T x D.

    a[b, c, k] = mean over video b's class-c action seeds of exp(cos(emb, proto_k) / temperature),
    computed as one einsum of exp(cos / T - 1 / T) in float64 (the shift keeps every term in
    (0, 1], float64 keeps small temperatures from underflowing), so no per-pair gathers are needed.
    """
    pair = act_seed.any(1) & bkg_seed.any(1)[:, None]                       # B x C: (video, class) pairs
    if not bool(pair.any()):
        return emb.sum() * 0.0
    inv_t = 1.0 / temperature
    sim = F.normalize(emb, dim=-1) @ F.normalize(prototypes, dim=-1).t()   # B x T x C, cosine
    e = torch.exp((sim.double() - 1.0) * inv_t)                            # exp(cos / T) / exp(1 / T)
    a_mask = act_seed.double()
    b_mask = bkg_seed.double()
    a = torch.einsum("btc,btk->bck", a_mask, e) / a_mask.sum(1).clamp(min=1)[..., None]   # B x C x C
    b = torch.einsum("bt,btk->bk", b_mask, e) / b_mask.sum(1).clamp(min=1)[:, None]       # B x C
    log_a = torch.log(a.clamp(min=1e-300))
    own = torch.diagonal(log_a, dim1=1, dim2=2)                             # B x C: log a[b, c, c]
    log_b = torch.log(b.clamp(min=1e-300))
    loss_act = -(own - torch.logsumexp(log_a, dim=2))
    loss_bkg = -(own - torch.logaddexp(own, log_b))
    per_pair = torch.where(pair, 0.5 * loss_act + 0.5 * loss_bkg, torch.zeros_like(own))
    per_video = per_pair.sum(1) / pair.sum(1).clamp(min=1)
    return per_video.sum().to(emb.dtype)


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
# Teacher


class HRProTeacher:
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
            self.model = _SnippetModel(self.num_classes, self.feature_dim, cfg)
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
    def _forward_eval(self, features_list, batch=PROTOTYPE_BATCH):
        """Eval-mode forward of many videos in padded batches of similar length -> [(cas, emb)]."""
        self.model.eval()
        order = np.argsort([f.shape[0] for f in features_list], kind="stable")
        out = [None] * len(features_list)
        size = max(int(batch), 1)
        for i in range(0, len(order), size):
            idx = order[i:i + size]
            batch, valid, lengths = self._pad([features_list[j] for j in idx])
            cas, emb = self.model(batch, valid)
            for row, j in enumerate(idx):
                out[j] = (cas[row, :lengths[row]], emb[row, :lengths[row]])
        return out

    # ---- training ---------------------------------------------------------------------------
    def _init_prototypes(self, feats, videos):
        """Prototype c = mean eval-mode embedding of the class-c point steps."""
        sums = torch.zeros_like(self.model.prototypes)
        counts = torch.zeros(self.num_classes, device=self.device)
        for (_, emb), (steps, labels) in zip(self._forward_eval(feats), videos):
            if steps.size:
                lab = torch.as_tensor(labels, device=self.device)
                sums.index_add_(0, lab, emb[torch.as_tensor(steps, device=self.device)])
                counts.index_add_(0, lab, torch.ones(lab.shape[0], device=self.device))
        seen = counts > 0
        self.model.prototypes[seen] = sums[seen] / counts[seen, None]

    # ---- resume files -----------------------------------------------------------------------
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
        c = self.num_classes
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
                from tqdm import tqdm
                bar = tqdm(iterations, desc="hrpro teacher", unit="it", leave=False, initial=start, total=total)
                iterations = bar
            for it in iterations:
                if queue.size < batch_size:
                    queue = np.concatenate([queue, rng.permutation(len(videos))])
                idx, queue = queue[:batch_size], queue[batch_size:]
                clips = [self._crop(feats[i], *points[i], crop, rng) for i in idx]
                clips = [clips[i] for i in np.argsort([f.shape[0] for f, _, _ in clips], kind="stable")]
                self.model.train()
                optimizer.zero_grad(set_to_none=True)
                parts = [p for p in np.array_split(np.arange(len(clips)), min(sub_batches, len(clips))) if p.size]
                totals = np.zeros(4)
                ema_sums = torch.zeros_like(self.model.prototypes)
                ema_counts = torch.zeros(c, device=self.device)
                for part in parts:                         # gradients accumulate over the sub-batches
                    losses, sums, counts = self._batch_losses([clips[i] for i in part], len(clips))
                    losses[0].backward()
                    totals += [float(x.item()) for x in losses]
                    ema_sums += sums
                    ema_counts += counts
                optimizer.step()
                with torch.no_grad():                      # prototype EMA toward the batch's action-seed means
                    seen = ema_counts > 0
                    protos = self.model.prototypes
                    protos[seen] = (1 - momentum) * protos[seen] + momentum * ema_sums[seen] / ema_counts[seen, None]
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

    def _batch_losses(self, clips, batch_size):
        """Forward one padded (sub-)batch; seeds on its detached background score; the weighted loss
        and its parts (each already divided by the whole batch's size) and the action-seed embedding
        sums/counts per class for the prototype EMA."""
        cfg, c, to = self.cfg, self.num_classes, dict(device=self.device)
        batch, valid, lengths = self._pad([f for f, _, _ in clips])
        cas, emb = self.model(batch, valid)
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
        loss_point = _focal_bce(cas, torch.as_tensor(point_target, **to), torch.as_tensor(point_weight, **to))
        loss_bkg = _focal_bce(cas, bkg_target.expand_as(cas), bkg_seed_t.to(cas.dtype))
        loss_con = _contrastive(emb, self.model.prototypes, act_seed_t, bkg_seed_t, cfg.temperature)
        loss_point, loss_bkg, loss_con = (x / batch_size for x in (loss_point, loss_bkg, loss_con))
        w = cfg.loss_weights
        loss = w.point * loss_point + w.background * loss_bkg + w.contrast * loss_con
        with torch.no_grad():
            a = act_seed_t.to(emb.dtype)
            sums = torch.einsum("btc,btd->cd", a, emb.detach())
            counts = a.sum((0, 1))
        return (loss, loss_point, loss_bkg, loss_con), sums, counts

    @staticmethod
    def _crop(features, steps, labels, crop, rng):
        """Optional random crop of a long training video (points shifted, those outside dropped)."""
        n = features.shape[0]
        if crop is None or n <= crop:
            return features, steps, labels
        start = int(rng.integers(0, n - crop + 1))
        keep = (steps >= start) & (steps < start + crop)
        return features[start:start + crop], steps[keep] - start, labels[keep]

    # ---- inference --------------------------------------------------------------------------
    def predict_cas(self, features: np.ndarray) -> np.ndarray:
        """Fused CAS T x (C+1) (background last), eval mode."""
        return self.predict_cas_batch([features])[0]

    def predict_cas_batch(self, features_list, batch=PROTOTYPE_BATCH) -> list[np.ndarray]:
        """Fused CAS of many videos in padded batches of `batch` videos (padding never changes a
        video's result; `detect.predict_batch` sets it when caching)."""
        feats = [self._check_features(f) for f in features_list]
        if not feats:
            return []
        with _deterministic():
            outs = self._forward_eval(feats, batch)
        return [cas.float().cpu().numpy() for cas, _ in outs]

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
        return reliable_proposals(props, steps, labels, pseudo.reliable_min_score)

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
