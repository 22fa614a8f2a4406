"""Frame pseudo labels from time stamps by an ensemble of clusterings (TSASPC, docs/method.md 3b).

Every clustering here cuts a video into one contiguous segment per stamp: stamp i owns
`[cuts[i], cuts[i+1])`, `cuts[0] = 0`, `cuts[-1] = T`, and the stamp lies inside its segment.
Three such partitions of the raw features are computed and a frame is labelled only where all
three give it the same class; everything else is ignored (-100) by the cross entropy.

Why three different clusterings: each one errs in its own way near boundaries (the energy
search is greedy, k-medoids is pulled by outliers, the agglomerative merge order follows local
similarity), so their agreement keeps the frames whose label is robust and leaves the contested
frames around boundaries to be decided later by the network (label growth).

Choices where the public description is silent (written down here and in the teacher):
- Energy search uses squared Euclidean distances, so that every candidate boundary between two
  stamps is scored at once from prefix sums (TSASPC scores Euclidean distances one candidate at
  a time). It keeps TSASPC's forward/backward passes and averages their boundaries.
- Constrained k-medoids uses Euclidean distances, medoids seeded at the stamps, boundaries only
  between consecutive stamps.
- Agglomerative clustering uses Ward linkage (only means and sizes, so memory stays O(T D)
  instead of TSASPC's T x T average-linkage matrix) with adjacency as the only connectivity and
  two stamp-holding clusters never merged. All mutually nearest adjacent pairs merge in parallel
  per round (ties broken by a fixed-seed random order), so it finishes in tens of vectorised
  rounds instead of T sequential merges; without constraints this gives the sequential greedy
  result for a reducible linkage such as Ward, with the chain constraint it is a close variant
  (not claimed identical).
- Agreement is by class, as in TSASPC: between two consecutive stamps of the same class every
  frame is that class in all three partitions, so the whole stretch is labelled.

The background-stamp gap (docs/method.md 3b): points mark actions only, but this scheme needs a stamp
in every segment. `background_stamps` inserts a background stamp in the middle of every stretch
that cannot belong to the actions next to it: with a typical action length L, each point is
assumed to cover L/2 on either side; a remaining stretch (between two points, or between the
video edge and the first / last point) longer than (factor - 1) x L gets a stamp at its middle.
Between two points this is "gap > factor x L", the rule in params.yaml.
"""

from __future__ import annotations

import numpy as np

IGNORE = -100


# --------------------------------------------------------------------------------------------
# the three partitions


def _prefix(x):
    """Prefix sums of the features and of their squared norms (float64, leading zero row)."""
    s1 = np.zeros((x.shape[0] + 1, x.shape[1]), np.float64)
    np.cumsum(x, axis=0, out=s1[1:])
    s2 = np.zeros(x.shape[0] + 1, np.float64)
    np.cumsum(np.einsum("td,td->t", x, x), out=s2[1:])
    return s1, s2


def _sse_own(s1, s2, a, b):
    """Sum of squared distances of frames [a, b) to their own mean; a, b arrays (b > a)."""
    n = (b - a).astype(np.float64)
    d1 = s1[b] - s1[a]
    return (s2[b] - s2[a]) - np.einsum("kd,kd->k", d1, d1) / n


def _sse_about(s1, s2, a, b, centre):
    """Sum of squared distances of frames [a, b) to given centres (one row per candidate)."""
    n = (b - a).astype(np.float64)
    d1 = s1[b] - s1[a]
    return (s2[b] - s2[a]) - 2.0 * np.einsum("kd,kd->k", d1, centre) + n * np.einsum("kd,kd->k", centre, centre)


def energy_cuts(x, stamps):
    """Energy-based boundary search between consecutive stamps (TSASPC's forward/backward).

    Forward: for stamps s_i < s_{i+1}, the boundary t in (s_i, s_{i+1}] minimises the scatter of
    [s_i, t) about the mean of [previous boundary, t) plus the scatter of [t, s_{i+1}] about its
    own mean; the backward pass mirrors it from the video end. The cut is the floor of the mean
    of both boundaries. Returns cuts (n + 1).
    """
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0, keepdims=True)        # centred: smaller prefix sums, less cancellation
    T, n = x.shape[0], len(stamps)
    stamps = np.asarray(stamps, np.int64)
    if n == 0:
        return np.array([0, T], np.int64)
    s1, s2 = _prefix(x)
    fwd = np.zeros(n - 1, np.int64)
    prev = 0
    for i in range(n - 1):
        a, e = stamps[i], stamps[i + 1] + 1
        t = np.arange(a + 1, e)
        centre = (s1[t] - s1[prev]) / (t - prev)[:, None]
        score = _sse_about(s1, s2, np.full_like(t, a), t, centre) + _sse_own(s1, s2, t, np.full_like(t, e))
        prev = fwd[i] = t[int(np.argmin(score))]
    bwd = np.zeros(n - 1, np.int64)
    nxt = T
    for i in range(n - 2, -1, -1):
        a, e = stamps[i], stamps[i + 1] + 1
        t = np.arange(a + 1, e)
        centre = (s1[nxt] - s1[t]) / (nxt - t)[:, None]
        score = _sse_own(s1, s2, np.full_like(t, a), t) + _sse_about(s1, s2, t, np.full_like(t, e), centre)
        nxt = bwd[i] = t[int(np.argmin(score))]
    return np.concatenate([[0], (fwd + bwd) // 2, [T]]).astype(np.int64)


def _distances(x, rows, cols):
    """Euclidean distances between frames `rows` and frames `cols` (float64 matrix)."""
    a, b = x[rows], x[cols]
    d2 = np.einsum("id,id->i", a, a)[:, None] + np.einsum("jd,jd->j", b, b)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def _distance_sums(x, start, end, chunk=2048):
    """Summed distance of every frame in [start, end) to all others there (chunked rows)."""
    idx = np.arange(start, end)
    sums = np.concatenate([_distances(x, idx[k:k + chunk], idx).sum(axis=1) for k in range(0, len(idx), chunk)])
    return sums


def kmedoids_cuts(x, stamps, max_iter=100, tol=1e-4):
    """Constrained k-medoids: medoids seeded at the stamps, one boundary between each stamp pair.

    Alternates (a) for each consecutive pair the cut in (s_i, s_{i+1}] that minimises the summed
    distance of the frames in between to their medoid, and (b) each segment's medoid, until
    the cuts stop changing. Returns cuts (n + 1).
    """
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    T, n = x.shape[0], len(stamps)
    stamps = np.asarray(stamps, np.int64)
    if n == 0:
        return np.array([0, T], np.int64)
    medoids = stamps.copy()
    cuts = np.concatenate([[0], stamps[1:], [T]]).astype(np.int64)
    for _ in range(max_iter):
        new = cuts.copy()
        for i in range(n - 1):
            a, e = stamps[i], stamps[i + 1] + 1
            span = np.arange(a, e)
            d = _distances(x, medoids[i:i + 2], span)          # 2 x m
            left = np.cumsum(d[0])                             # cost if frames a..l go to stamp i
            right = np.cumsum(d[1][::-1])[::-1]                # cost if frames l..e-1 go to stamp i+1
            # cut c in (a, e): frames [a, c) left, [c, e) right
            cost = left[:-1] + right[1:]
            new[i + 1] = a + 1 + int(np.argmin(cost))
        for i in range(n):
            sums = _distance_sums(x, new[i], new[i + 1])
            cur = medoids[i]
            if new[i] <= cur < new[i + 1]:
                keep = sums[cur - new[i]]
                best = int(np.argmin(sums))
                if sums[best] < keep - tol:
                    medoids[i] = new[i] + best
            else:
                medoids[i] = new[i] + int(np.argmin(sums))
        if np.array_equal(new, cuts):
            break
        cuts = new
    return cuts


def agglomerative_cuts(x, stamps, seed=0):
    """Adjacent-only agglomerative clustering (Ward) down to one cluster per stamp.

    Starts from single frames; only neighbouring clusters may merge, and two clusters that each
    hold a stamp never do, so the result is n contiguous clusters with one stamp each.
    Returns cuts (n + 1).
    """
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    T, n = x.shape[0], len(stamps)
    if n == 0:
        return np.array([0, T], np.int64)
    rng = np.random.default_rng(seed)
    start = np.arange(T)
    size = np.ones(T)
    sums = x.copy()
    has = np.zeros(T, bool)
    has[np.asarray(stamps, np.int64)] = True
    while len(start) > n:
        mean = sums / size[:, None]
        diff = mean[1:] - mean[:-1]
        cost = size[1:] * size[:-1] / (size[1:] + size[:-1]) * np.einsum("kd,kd->k", diff, diff)
        cost[has[1:] & has[:-1]] = np.inf
        finite = np.isfinite(cost)
        if not finite.any():
            break
        rank = np.empty(len(cost), np.int64)
        rank[np.lexsort((rng.random(len(cost)), cost))] = np.arange(len(cost))
        padded = np.concatenate([[len(cost)], rank, [len(cost)]])
        pick = (rank < padded[:-2]) & (rank < padded[2:]) & finite
        excess = len(start) - int(pick.sum()) - n
        if excess < 0:                                  # would overshoot: merge the cheapest only
            chosen = np.flatnonzero(pick)
            keep = chosen[np.argsort(rank[chosen])[: len(start) - n]]
            pick = np.zeros_like(pick)
            pick[keep] = True
        head = np.ones(len(start), bool)
        head[1:][pick] = False
        idx = np.flatnonzero(head)
        start = start[idx]
        size = np.add.reduceat(size, idx)
        sums = np.add.reduceat(sums, idx, axis=0)
        has = np.maximum.reduceat(has.astype(np.int8), idx).astype(bool)
    return np.concatenate([start, [T]]).astype(np.int64)


# --------------------------------------------------------------------------------------------
# ensemble, background stamps, labels


def agreement_intervals(cuts, stamp_labels):
    """Labelled interval [left_i, right_i) of every stamp where all partitions agree by class.

    `cuts`: K x (n + 1), one partition per row. The intersection of the K segments of stamp i
    contains the stamp, so it is never empty. Between two consecutive stamps of the same class
    every frame has that class in every partition; that stretch is labelled and split at the
    median cut so the intervals stay contiguous and disjoint.
    """
    cuts = np.asarray(cuts, np.int64)
    stamp_labels = np.asarray(stamp_labels, np.int64)
    left = cuts[:, :-1].max(axis=0)
    right = cuts[:, 1:].min(axis=0)
    same = np.flatnonzero(stamp_labels[1:] == stamp_labels[:-1])
    mid = np.median(cuts[:, 1:-1], axis=0).astype(np.int64)
    right[same] = mid[same]
    left[same + 1] = mid[same]
    return left, right


def ensemble_intervals(x, stamps, stamp_labels):
    """The three partitions of the raw features and the intervals where they agree.

    Returns (left, right, cuts) with cuts of shape 3 x (n + 1) (energy, k-medoids, agglomerative).
    """
    stamps = np.asarray(stamps, np.int64)
    cuts = np.stack([energy_cuts(x, stamps), kmedoids_cuts(x, stamps), agglomerative_cuts(x, stamps)])
    if len(stamps) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), cuts
    left, right = agreement_intervals(cuts, stamp_labels)
    return left, right, cuts


def intervals_to_labels(n_steps, left, right, stamp_labels):
    """Per-frame labels (IGNORE outside the intervals) and per-frame owner stamp (-1 outside)."""
    lengths = np.asarray(right) - np.asarray(left)
    owner = np.full(n_steps, -1, np.int64)
    if len(lengths):
        frames = np.repeat(np.asarray(left) - np.cumsum(np.concatenate([[0], lengths[:-1]])), lengths) + np.arange(lengths.sum())
        owner[frames] = np.repeat(np.arange(len(lengths)), lengths)
    labels = np.full(n_steps, IGNORE, np.int64)
    inside = owner >= 0
    labels[inside] = np.asarray(stamp_labels, np.int64)[owner[inside]]
    return labels, owner


def typical_action_length(point_steps_list):
    """Median spacing of consecutive points, pooled over videos (steps), or None without pairs.

    For back-to-back actions the spacing of their points is one action length; short gaps add
    to it, so this errs long, which only makes background stamps rarer (the safe side).
    """
    gaps = [np.diff(np.asarray(p, np.float64)) for p in point_steps_list if len(p) > 1]
    gaps = np.concatenate(gaps) if gaps else np.zeros(0)
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if len(gaps) else None


def background_stamp_steps(point_steps, n_steps, typical_length, factor):
    """Steps of background stamps for one video (see the module docstring for the rule).

    Each point covers typical_length / 2 on each side; a free stretch longer than
    (factor - 1) x typical_length gets a stamp at its middle. A video without points gets one
    stamp in its middle (it is all background as far as the points know).
    """
    p = np.asarray(point_steps, np.float64)
    if len(p) == 0:
        return np.array([n_steps // 2], np.int64) if n_steps > 0 else np.zeros(0, np.int64)
    if typical_length is None:
        return np.zeros(0, np.int64)
    half = typical_length / 2.0
    lo = np.concatenate([[0.0], p + half])            # free stretch k: [lo_k, hi_k)
    hi = np.concatenate([p - half, [float(n_steps)]])
    need = (hi - lo) > (factor - 1.0) * typical_length
    steps = np.floor((lo[need] + hi[need]) / 2.0).astype(np.int64)
    steps = np.clip(steps, 0, n_steps - 1)
    return np.setdiff1d(steps, p.astype(np.int64))    # never on top of a point


def merge_stamps(point_steps, point_labels, background_steps, background_class):
    """Action and background stamps, sorted by step; the first stamp wins at a shared step."""
    steps = np.concatenate([np.asarray(point_steps, np.int64), np.asarray(background_steps, np.int64)])
    labels = np.concatenate([np.asarray(point_labels, np.int64),
                             np.full(len(background_steps), background_class, np.int64)])
    order = np.argsort(steps, kind="stable")
    steps, labels = steps[order], labels[order]
    keep = np.concatenate([[True], steps[1:] != steps[:-1]]) if len(steps) else np.zeros(0, bool)
    return steps[keep], labels[keep], int((~keep).sum())


def grow_intervals(embedding, left, right):
    """One step of label growth between neighbouring intervals (TSASPC's label propagation).

    `embedding` is T x d (L2-normalised network features). Each interval is summarised by its
    mean; in the unlabelled gap between intervals i and i+1, interval i extends rightwards while
    a frame is at least as close to mean i as to mean i+1, then interval i+1 extends leftwards
    while a frame is closer to mean i+1 than to mean i. Returns new (left, right).
    """
    emb = np.asarray(embedding, np.float64)
    left, right = np.asarray(left, np.int64).copy(), np.asarray(right, np.int64).copy()
    n = len(left)
    if n < 2:
        return left, right
    csum = np.concatenate([np.zeros((1, emb.shape[1])), np.cumsum(emb, axis=0)])
    means = (csum[right] - csum[left]) / (right - left)[:, None]
    for i in range(n - 1):
        a, b = right[i], left[i + 1]
        if b <= a:
            continue
        gap = emb[a:b]
        d_prev = np.linalg.norm(gap - means[i], axis=1)
        d_next = np.linalg.norm(gap - means[i + 1], axis=1)
        stop = np.flatnonzero(d_prev > d_next)
        l = a + (int(stop[0]) if len(stop) else b - a)
        back = np.flatnonzero(d_prev[l - a:] < d_next[l - a:])
        r = l + (int(back[-1]) if len(back) else -1)
        right[i] = l
        left[i + 1] = r + 1
    return left, right


def runs(labels):
    """Runs of equal values: (starts, ends (exclusive), values)."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        z = np.zeros(0, np.int64)
        return z, z, labels[:0]
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change, [len(labels)]]).astype(np.int64)
    return starts, ends, labels[starts]


def pseudo_frame_labels(features, point_steps, point_labels, num_classes, background=True,
                        typical_length=None, gap_factor=1.5):
    """Everything the teacher derives from one video's points before training.

    Returns a dict: labels (T, IGNORE where unlabelled), owner (T, stamp index or -1),
    stamps, stamp_labels, left, right (labelled interval per stamp), background_added,
    duplicates_dropped, cuts (3 x (n + 1)).
    """
    T = int(np.asarray(features).shape[0])
    bg = (background_stamp_steps(point_steps, T, typical_length, gap_factor) if background
          else np.zeros(0, np.int64))
    stamps, stamp_labels, dropped = merge_stamps(point_steps, point_labels, bg, num_classes)
    left, right, cuts = ensemble_intervals(features, stamps, stamp_labels)
    labels, owner = intervals_to_labels(T, left, right, stamp_labels)
    return {"labels": labels, "owner": owner, "stamps": stamps, "stamp_labels": stamp_labels,
            "left": left, "right": right, "background_added": int((stamp_labels == num_classes).sum()),
            "duplicates_dropped": dropped, "cuts": cuts}
