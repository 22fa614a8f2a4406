"""HR-Pro style offline teacher, snippet-level stage (docs/method.md 3a).

Produces, per video, the fused class activation sequence A (T x (C+1), background last) and, from
the training points, one reliable proposal per point (the pseudo segments). It only ever sees
`TeacherVideo`s (features + points), never ground-truth segments.

Model: input projection (1x1 conv, only when the feature dim differs from `embed_dim`) -> tokens =
T snippets + C class prototypes -> `layers` reliability-aware attention blocks (q, k = 1x1 convs of
x, v = x, multi-head attention with its own in/out projections as in HR-Pro's use of
nn.MultiheadAttention, residual + LayerNorm, FFN D->ffn_dim->D, residual + LayerNorm) -> first T
tokens -> Conv1d(k=3)+ReLU = embedding -> dropout, Conv1d(D->C+1, k=1, no bias), sigmoid.
Fused CAS = [cas * (1 - bkg), bkg].

Choices where the method is silent (every setting is a key of params.yaml `hrpro`):
- Batches pad to the longest video with a mask: padded steps are never keys in attention, are
  zeroed before the k=3 conv (so a video's CAS does not depend on its batch mates) and never enter
  seeds or losses. Batches are drawn epoch-wise: a seeded permutation of the training videos is cut
  into `videos_per_iteration` slices.
- Losses are averaged like HR-Pro: each video's focal BCE is divided by its number of point
  (background-seed) steps and the batch sum by the batch size; the contrastive loss is the mean
  over the video's classes of 0.5 * (-log a_c / sum_k a_k) + 0.5 * (-log a_c / (a_c + b_c)), with
  a_k (b_k) the mean over action (background) seeds of exp(cos(embedding, prototype_k) / T),
  summed over videos with background seeds and divided by the batch size. HR-Pro's video-level
  top-k loss is not part of the method and is left out.
- Prototypes start (first `fit` only) as the mean eval-mode embedding of each class's point steps (computed with zero
  prototypes as tokens, as HR-Pro does); after each optimiser step, for each video of the batch
  and each class in its action seeds, the prototype moves `prototype_momentum` toward the mean
  (detached) embedding of those seeds: one EMA step per video, in the order the videos were drawn (training.py). A class without points keeps
  a zero prototype.
- Each iteration's videos are sorted by length; `sub_batches` > 1 splits them into padded
  sub-batches whose gradients add up to the same loss (every term is a per-video sum divided by
  the batch size); the per-video EMA steps keep the drawn order.
- Attention uses F.scaled_dot_product_attention. With attention dropout > 0 on CPU, PyTorch falls
  back to its unfused kernel, several times slower on long videos; `max_train_steps` (random crop
  of long training videos, default off) is the other speed lever.
- `fit` returns the last iterate; picking a checkpoint on a validation split is the caller's job.
- Crash-safe resume (`fit(checkpoint=path)`): every `checkpoint_every` iterations the whole loop
  state (model incl. prototypes, Adam, batch queue, history, torch/numpy/CUDA RNG states) is saved
  atomically, so a resumed fit is bit-identical to an uninterrupted one. A resume file made from
  other inputs (video ids/lengths/points, cfg, model shape) is refused with an OnPointError rather
  than silently ignored: overwriting it could discard hours of training by a mistyped path.
- Proposals (`detect`, `pseudo_segments`): see proposals.py. `detect` makes proposals for the
  classes whose video-level score reaches `video_class_ratio` x the top class's and applies
  class-wise Gaussian soft-NMS (HR-Pro's sigma 0.3; `nms_sigma: null` -> hard NMS at `nms_iou`). `pseudo_segments` chooses among the raw (pre-NMS) proposals of the points' classes.
- HR-Pro's instance-level stage (`instance_refinement: true`) is not implemented and is refused.

Layout: model.py (the network), losses.py (seeds and losses), training.py (fit, crash-safe
resume), teacher.py (inference, proposals, checkpoints).
"""

from .losses import select_seeds
from .teacher import FORMAT, RESUME_FORMAT, HRProTeacher

__all__ = ["FORMAT", "RESUME_FORMAT", "HRProTeacher", "select_seeds"]
