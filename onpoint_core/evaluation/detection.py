"""Detection metrics on prediction tables: tIoU, ActivityNet-style mAP, F1, AEDT, pseudo-segment quality.

Tables are pandas DataFrames with times in seconds (docs/formats.md):
  ground truth   video_id, label, start, end
  predictions    video_id, label, start, end, score[, gen_time]
  ambiguous      video_id, start, end          (THUMOS'14 `Ambiguous_test.txt`)

Matching rule (ActivityNet's `compute_average_precision_detection`, which HR-Pro, OAT and MATR
all evaluate with): predictions of one class are taken in decreasing score order (ties: table
order, i.e. a stable sort); each takes the still-unmatched ground-truth segment of the same video
and class with the highest tIoU, if that tIoU >= threshold (ties between equal tIoUs: the earlier
ground-truth row); otherwise it is a false positive. Each ground-truth segment is matched at most
once per threshold.

How it is vectorised. That rule is sequential greedy matching over (prediction, ground truth)
pairs taken in the order (threshold, prediction rank, -tIoU, ground-truth row). Greedy matching
over a fixed pair order has a parallel form: any pair that comes first among all the remaining
pairs of its prediction *and* among all the remaining pairs of its ground truth is accepted by the
sequential pass, and once accepted it only removes pairs that the sequential pass would reject
too. `_greedy_one_to_one` accepts all such pairs at once, drops the pairs they block, and repeats;
every round accepts at least the overall first pair, and in practice a handful of rounds finish
all thresholds, videos and classes together. Candidate pairs come from an interval join (sorted
starts plus a running maximum of ends), so a long video with many segments costs no more than
its overlapping pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import OnPointError, fail

DEFAULT_TIOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)

# name -> the thresholds it averages (reported only when every one of them was evaluated)
THRESHOLD_RANGES = {
    "avg_0.1_0.5": (0.1, 0.2, 0.3, 0.4, 0.5),
    "avg_0.3_0.7": (0.3, 0.4, 0.5, 0.6, 0.7),
    "avg_0.1_0.7": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
}

# kind -> (required columns, optional columns); numeric columns are the time/score ones.
TABLE_KINDS = {
    "segments": (("video_id", "label", "start", "end"), ()),
    "proposals": (("video_id", "label", "start", "end", "score"), ("gen_time",)),
    "pseudo_segments": (("video_id", "label", "start", "end", "score"), ("point",)),
    "ambiguous": (("video_id", "start", "end"), ()),
}
_NUMERIC = ("start", "end", "score", "gen_time", "point")
_NAN_ALLOWED = ("point",)        # a pseudo segment may carry no point (NaN), see teachers/base.py
_AMBIGUOUS_RULES = ("hrpro", "overlap")


# --------------------------------------------------------------------------- tIoU

def _interval_tiou(s1, e1, s2, e2, min_length=0.0):
    """Elementwise (broadcasting) tIoU; the union is floored at `min_length`; 0 where it is 0."""
    inter = np.clip(np.minimum(e1, e2) - np.maximum(s1, s2), 0.0, None)
    union = np.maximum((e1 - s1) + (e2 - s2) - inter, min_length)
    return np.divide(inter, union, out=np.zeros(np.broadcast(inter, union).shape), where=union > 0)


def tiou(segments_a, segments_b, min_length=0.0):
    """N x M temporal IoU between the rows (start, end) of `segments_a` and of `segments_b`.

    `min_length` floors the union (the denominator): MATR's online NMS floors tIoU denominators at
    1 s so that very short proposals do not get huge overlaps from a tiny shared stretch; the
    evaluation uses the plain tIoU (0). Two zero-length segments have tIoU 0.
    """
    a = np.asarray(segments_a, dtype=np.float64)
    b = np.asarray(segments_b, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or b.ndim != 2 or b.shape[1] != 2:
        raise ValueError(f"tiou expects N x 2 and M x 2 arrays, got {a.shape} and {b.shape}")
    return _interval_tiou(a[:, 0, None], a[:, 1, None], b[None, :, 0], b[None, :, 1], float(min_length))


# --------------------------------------------------------------------------- table checks

def _check_frame(frame, kind, source):
    """Return `frame` (fresh index) after checking the columns of `kind`; raise naming `source`."""
    if not isinstance(frame, pd.DataFrame):
        fail(source, f"expected a table (DataFrame), got {type(frame).__name__}")
    required, optional = TABLE_KINDS[kind]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        fail(source, f"missing column(s) {missing} (has {list(frame.columns)})")
    frame = frame.reset_index(drop=True)
    present = [c for c in required + optional if c in frame.columns]

    def video_of(row):
        return frame["video_id"].iloc[row]

    for col in ("video_id", "label"):
        if col in present and len(frame):
            null = frame[col].isna().to_numpy()
            if null.any():
                row = int(np.flatnonzero(null)[0])
                fail(source, f"column {col!r} is empty in row {row}", video_of(row) if col != "video_id" else None)
    for col in present:
        if col not in _NUMERIC:
            continue
        values = frame[col]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            fail(source, f"column {col!r} is not numeric (dtype {values.dtype})")
        array = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(array) if col in _NAN_ALLOWED else ~np.isfinite(array)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            fail(source, f"column {col!r} has a non-finite value {array[row]} in row {row}", video_of(row))
    if len(frame):
        start = frame["start"].to_numpy(np.float64)
        end = frame["end"].to_numpy(np.float64)
        bad = end < start
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            fail(source, f"segment ends before it starts (start {start[row]}, end {end[row]}) in row {row}",
                 video_of(row))
    return frame


def _read_any(path, kind):
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".tsv"):
        # video ids like "0001" must stay strings
        frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype={"video_id": str})
        if not len(frame):   # header only (nothing detected): no values to infer numeric columns from
            frame = frame.astype({c: np.float64 for c in frame.columns if c in _NUMERIC})
        return frame
    if suffix in (".jsonl", ".ndjson", ".json"):
        # parsed with json, not pd.read_json: pandas would guess types (video "0001" -> 1) and
        # turn `gen_time` (a *_time column) into a date
        text = path.read_text()
        if text.lstrip().startswith("["):
            records = json.loads(text)
        else:
            records = []
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"line {number} is not JSON ({exc.msg})") from None
        if not records:   # a model that detected nothing writes an empty file
            required, optional = TABLE_KINDS[kind]
            return pd.DataFrame({c: pd.Series(dtype=np.float64 if c in _NUMERIC else object) for c in required})
        if not all(isinstance(r, dict) for r in records):
            raise ValueError("expected one JSON object per line (or a JSON list of objects)")
        return pd.DataFrame.from_records(records)
    if suffix == ".txt" and kind == "ambiguous":
        # THUMOS'14 Ambiguous_test.txt: "video start end", whitespace separated, no header
        return pd.read_csv(path, sep=r"\s+", header=None, names=["video_id", "start", "end"],
                           dtype={"video_id": str}, engine="python")
    fail(path, f"unsupported file type {suffix!r} for a {kind} table "
               "(use .parquet, .csv, .tsv, .jsonl" + (", .txt" if kind == "ambiguous" else "") + ")")


def load_table(path, kind):
    """Read a `kind` table (see TABLE_KINDS) from Parquet, CSV/TSV or JSON lines, chosen by extension.

    Checks the required columns, numeric and finite times/scores, end >= start; any problem raises
    an OnPointError naming the file (and the video of the offending row).
    """
    if kind not in TABLE_KINDS:
        raise ValueError(f"unknown table kind {kind!r}; one of {sorted(TABLE_KINDS)}")
    path = Path(path)
    if not path.is_file():
        fail(path, "file not found")
    try:
        frame = _read_any(path, kind)
    except OnPointError:
        raise
    except Exception as exc:  # parsers raise many types; the user needs the file and the reason
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        fail(path, f"cannot read the {kind} table: {reason}")
    return _check_frame(frame, kind, path)


# --------------------------------------------------------------------------- matching core

def _check_thresholds(tiou_thresholds):
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0 or not np.all((thresholds > 0) & (thresholds <= 1)):
        raise ValueError(f"tIoU thresholds must be in (0, 1], got {list(thresholds)}")
    return thresholds


def _threshold_key(t):
    return format(round(float(t), 10), "g")


class _Encoded:
    """Integer codes for videos, classes and (video, class) groups shared by both tables."""

    def __init__(self, gt, pred, pred_source):
        if len(gt) and len(pred):
            numeric_gt = pd.api.types.is_numeric_dtype(gt["label"])
            if numeric_gt != pd.api.types.is_numeric_dtype(pred["label"]):
                fail(pred_source, "labels are class indices in one table and class names in the other")
        n_gt = len(gt)
        videos = pd.concat([gt["video_id"], pred["video_id"]], ignore_index=True).astype(str)
        labels = pd.concat([gt["label"], pred["label"]], ignore_index=True)
        video_codes, _ = pd.factorize(videos)
        label_codes, self.classes = pd.factorize(labels)
        group_codes, _ = pd.factorize(video_codes.astype(np.int64) * max(len(self.classes), 1) + label_codes)
        self.num_classes = len(self.classes)
        self.num_groups = int(group_codes.max()) + 1 if len(group_codes) else 0
        self.gt_class, self.pred_class = label_codes[:n_gt], label_codes[n_gt:]
        self.gt_group, self.pred_group = group_codes[:n_gt], group_codes[n_gt:]
        self.gt_video, self.pred_video = video_codes[:n_gt], video_codes[n_gt:]


def _candidate_pairs(p_grp, p_s, p_e, g_grp, g_s, g_e, n_groups):
    """(pred, gt) index pairs of the same group whose intervals overlap by more than zero length.

    Times are shifted per group onto disjoint stretches of one axis, so one sorted array serves
    every group: GT sorted by start; a prediction [s, e] can only overlap GT rows whose start < e
    and whose running maximum of ends > s, a contiguous range found by two binary searches.
    """
    empty = np.zeros(0, np.int64)
    if not len(p_grp) or not len(g_grp):
        return empty, empty
    lo = np.full(n_groups, np.inf)
    hi = np.full(n_groups, -np.inf)
    np.minimum.at(lo, g_grp, g_s)
    np.minimum.at(lo, p_grp, p_s)
    np.maximum.at(hi, g_grp, g_e)
    np.maximum.at(hi, p_grp, p_e)
    base = np.concatenate(([0.0], np.cumsum(hi - lo + 1.0)[:-1]))
    shift = base - lo
    gs = g_s + shift[g_grp]
    order = np.argsort(gs, kind="stable")
    gs_sorted = gs[order]
    reach = np.maximum.accumulate((g_e + shift[g_grp])[order])
    first = np.searchsorted(reach, p_s + shift[p_grp], side="right")
    last = np.searchsorted(gs_sorted, p_e + shift[p_grp], side="left")
    count = np.maximum(last - first, 0)
    total = int(count.sum())
    pair_p = np.repeat(np.arange(len(p_grp)), count)
    offsets = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    pair_g = order[first[pair_p] + offsets]
    same = g_grp[pair_g] == p_grp[pair_p]          # always true by construction; kept as a guard
    return pair_p[same], pair_g[same]


def _greedy_one_to_one(a, b):
    """Sequential greedy one-to-one matching over pairs (a[i], b[i]) taken in index order.

    Returns a boolean mask of accepted pairs: pair i is accepted when neither a[i] nor b[i] was
    matched by an earlier accepted pair. Computed in rounds (see the module docstring).
    """
    n = len(a)
    accepted = np.zeros(n, bool)
    if n == 0:
        return accepted
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    used_a = np.zeros(int(a.max()) + 1, bool)
    used_b = np.zeros(int(b.max()) + 1, bool)
    by_a = np.argsort(a, kind="stable")       # within one id, pairs stay in priority order
    by_b = np.argsort(b, kind="stable")
    alive = np.ones(n, bool)
    mark = np.full(n, -1, np.int64)
    rounds = 0
    while True:
        by_a = by_a[alive[by_a]]
        by_b = by_b[alive[by_b]]
        if not by_a.size:
            break
        ids = a[by_a]
        head_a = by_a[np.concatenate(([True], ids[1:] != ids[:-1]))]
        ids = b[by_b]
        head_b = by_b[np.concatenate(([True], ids[1:] != ids[:-1]))]
        mark[head_a] = rounds
        winners = head_b[mark[head_b] == rounds]
        accepted[winners] = True
        used_a[a[winners]] = True
        used_b[b[winners]] = True
        alive[by_a] = ~(used_a[a[by_a]] | used_b[b[by_a]])
        rounds += 1
    return accepted


def _match_by_score(enc, gt, pred_sorted, thresholds):
    """TP flags (T x N) and matched GT rows (T x N, -1 if none) of score-sorted predictions."""
    n_pred, n_gt, n_thr = len(pred_sorted["start"]), len(gt["start"]), len(thresholds)
    tp = np.zeros((n_thr, n_pred), bool)
    matched = np.full((n_thr, n_pred), -1, np.int64)
    pair_p, pair_g = _candidate_pairs(pred_sorted["group"], pred_sorted["start"], pred_sorted["end"],
                                      gt["group"], gt["start"], gt["end"], enc.num_groups)
    if not len(pair_p):
        return tp, matched
    overlap = _interval_tiou(pred_sorted["start"][pair_p], pred_sorted["end"][pair_p],
                             gt["start"][pair_g], gt["end"][pair_g])
    keep = overlap >= thresholds.min()
    pair_p, pair_g, overlap = pair_p[keep], pair_g[keep], overlap[keep]
    # priority inside a threshold: prediction rank (already the score order), then tIoU, then GT row
    order = np.lexsort((pair_g, -overlap, pair_p))
    pair_p, pair_g, overlap = pair_p[order], pair_g[order], overlap[order]
    thr_idx, pair_idx = np.nonzero(overlap[None, :] >= thresholds[:, None])  # row-major: by threshold
    a = thr_idx * n_pred + pair_p[pair_idx]
    b = thr_idx * n_gt + pair_g[pair_idx]
    won = _greedy_one_to_one(a, b)
    tp.reshape(-1)[a[won]] = True
    matched.reshape(-1)[a[won]] = pair_g[pair_idx[won]]
    return tp, matched


def _average_precision_sorted(tp, pred_class, npos):
    """Per-class AP (T x K, fractions) from TP flags of predictions sorted by (class, -score).

    All-point VOC interpolation: AP = sum over true positives of the precision envelope
    (max precision at this or any lower-score rank) divided by the class's GT count; this is the
    area under the monotone envelope of the precision-recall curve, ActivityNet's formula.
    """
    n_thr, n = tp.shape
    ap = np.zeros((n_thr, len(npos)))
    if n == 0:
        return ap
    starts = np.flatnonzero(np.concatenate(([True], pred_class[1:] != pred_class[:-1])))
    sizes = np.diff(np.append(starts, n))
    block = np.repeat(np.arange(len(starts)), sizes)
    rank = np.arange(n) - starts[block] + 1
    cum = np.cumsum(tp, axis=1)
    before = np.where(starts > 0, cum[:, starts - 1], 0)
    precision = (cum - before[:, block]) / rank
    # segmented reverse running max: lift each block above all later blocks (precision <= 1)
    lift = (len(starts) - block).astype(np.float64)
    envelope = np.maximum.accumulate((precision + lift)[:, ::-1], axis=1)[:, ::-1] - lift
    area = np.add.reduceat(np.where(tp, envelope, 0.0), starts, axis=1)
    cls = pred_class[starts]
    ap[:, cls] = area / npos[cls]
    return ap


def _prepare(gt, pred, gt_source, pred_source):
    """Encode both tables and sort predictions by (class, -score, row) for matching and AP."""
    enc = _Encoded(gt, pred, pred_source)
    g = {
        "group": enc.gt_group, "class": enc.gt_class,
        "start": gt["start"].to_numpy(np.float64), "end": gt["end"].to_numpy(np.float64),
    }
    score = pred["score"].to_numpy(np.float64)
    order = np.lexsort((np.arange(len(pred)), -score, enc.pred_class))
    p = {
        "row": order, "group": enc.pred_group[order], "class": enc.pred_class[order],
        "start": pred["start"].to_numpy(np.float64)[order], "end": pred["end"].to_numpy(np.float64)[order],
        "score": score[order],
    }
    if "gen_time" in pred.columns:
        p["gen_time"] = pred["gen_time"].to_numpy(np.float64)[order]
    return enc, g, p


def _ap_table(enc, g, p, tp):
    """AP (T x K) over the classes that have GT; predictions of GT-less classes are left out."""
    npos = np.bincount(g["class"], minlength=enc.num_classes).astype(np.float64)
    scored = npos[p["class"]] > 0
    ap = _average_precision_sorted(tp[:, scored], p["class"][scored], npos)
    return ap, npos > 0


def average_precision(gt, pred, tiou_thresholds=DEFAULT_TIOU_THRESHOLDS):
    """ActivityNet-style AP per class: {label: array of AP per threshold, as fractions in [0, 1]}.

    Only classes with ground truth appear; a class with GT and no prediction has AP 0.
    """
    thresholds = _check_thresholds(tiou_thresholds)
    gt = _check_frame(gt, "segments", "ground truth table")
    pred = _check_frame(pred, "proposals", "prediction table")
    enc, g, p = _prepare(gt, pred, "ground truth table", "prediction table")
    tp, _ = _match_by_score(enc, g, p, thresholds)
    ap, has_gt = _ap_table(enc, g, p, tp)
    return {enc.classes[k]: ap[:, k] for k in np.flatnonzero(has_gt)}


# --------------------------------------------------------------------------- ambiguous segments

def _ambiguous_mask(pred, ambiguous, rule):
    """True for predictions that overlap an ambiguous segment of the same video (any class).

    rule "hrpro" (default) reproduces HR-Pro's `filter_segments` (utils.py) exactly: the
    prediction covers the integer seconds range(int(start), int(end)) (truncation), the ambiguous
    segment range(round(start), round(end)) (round half to even, as Python's round), and the
    prediction is dropped when the two integer sets intersect. HR-Pro applies this to its THUMOS'14
    test predictions before the ActivityNet evaluation and leaves the GT untouched; we do the same.
    rule "overlap": dropped when the continuous intervals share a stretch of positive length.
    """
    if rule not in _AMBIGUOUS_RULES:
        raise ValueError(f"ambiguous_rule must be one of {_AMBIGUOUS_RULES}, got {rule!r}")
    if not len(pred) or not len(ambiguous):
        return np.zeros(len(pred), bool)
    left = pd.DataFrame({"video_id": pred["video_id"].astype(str).to_numpy(), "row": np.arange(len(pred))})
    right = pd.DataFrame({"video_id": ambiguous["video_id"].astype(str).to_numpy(),
                          "a_start": ambiguous["start"].to_numpy(np.float64),
                          "a_end": ambiguous["end"].to_numpy(np.float64)})
    pairs = left.merge(right, on="video_id", how="inner")
    rows = pairs["row"].to_numpy()
    ps = pred["start"].to_numpy(np.float64)[rows]
    pe = pred["end"].to_numpy(np.float64)[rows]
    a_s, a_e = pairs["a_start"].to_numpy(), pairs["a_end"].to_numpy()
    if rule == "hrpro":
        hit = np.maximum(np.trunc(ps), np.round(a_s)) < np.minimum(np.trunc(pe), np.round(a_e))
    else:
        hit = np.minimum(pe, a_e) - np.maximum(ps, a_s) > 0
    mask = np.zeros(len(pred), bool)
    mask[rows[hit]] = True
    return mask


# --------------------------------------------------------------------------- public evaluation

def _select_tables(gt, pred, ambiguous, videos, ambiguous_rule, gt_source="ground truth table"):
    """Checked tables restricted to `videos`, minus ambiguous predictions; (gt, pred, n dropped)."""
    gt = _check_frame(gt, "segments", "ground truth table")
    pred = _check_frame(pred, "proposals", "prediction table")
    if videos is not None:
        keep = {str(v) for v in videos}
        gt = gt[gt["video_id"].astype(str).isin(keep)].reset_index(drop=True)
        pred = pred[pred["video_id"].astype(str).isin(keep)].reset_index(drop=True)
    ignored = 0
    if ambiguous is not None:
        ambiguous = _check_frame(ambiguous, "ambiguous", "ambiguous table")
        drop = _ambiguous_mask(pred, ambiguous, ambiguous_rule)
        ignored = int(drop.sum())
        pred = pred[~drop].reset_index(drop=True)
    if not len(gt):
        fail(gt_source, "no ground-truth segments to evaluate against"
             + (f" in the {len(keep)} selected videos" if videos is not None else ""))
    return gt, pred, ignored


def evaluate_detections(gt, pred, tiou_thresholds=DEFAULT_TIOU_THRESHOLDS, ambiguous=None, videos=None,
                        ambiguous_rule="hrpro", gt_source="ground truth table"):
    """mAP at each tIoU threshold, their averages, instance F1 and AEDT; a JSON-ready dict.

    gt: video_id, label, start, end. pred: video_id, label, start, end, score[, gen_time].
    Percentages (0-100) for mAP, precision, recall, F1; AEDT in seconds (negative = early).
    - AP per class as in ActivityNet (module docstring); mAP = mean over classes with GT.
      Predictions of a class without GT are left out of mAP but count as false positives for
      F1/precision (instance level, every prediction counts).
    - `videos`: evaluate only these videos (both tables are restricted).
    - `ambiguous` (THUMOS'14): predictions overlapping an ambiguous segment of the same video are
      removed before anything is computed, HR-Pro's protocol; see `_ambiguous_mask` for the exact
      rule ("hrpro", integer-second overlap, default; or "overlap", continuous).
    - F1/precision/recall at tIoU 0.5 use the same score-greedy matching as AP at 0.5 (one
      match per GT); AEDT = mean(gen_time - matched GT end) over those true positives, None when
      `pred` has no gen_time column or there is no true positive.
    - `gt_source`: the ground truth's file, named by the error when no GT segment is left.
    """
    thresholds = _check_thresholds(tiou_thresholds)
    gt, pred, ignored = _select_tables(gt, pred, ambiguous, videos, ambiguous_rule, gt_source)

    half = np.isclose(thresholds, 0.5)
    all_thresholds = thresholds if half.any() else np.append(thresholds, 0.5)
    at_half = int(np.flatnonzero(np.isclose(all_thresholds, 0.5))[0])

    enc, g, p = _prepare(gt, pred, "ground truth table", "prediction table")
    tp, matched = _match_by_score(enc, g, p, all_thresholds)
    ap, has_gt = _ap_table(enc, g, p, tp[: len(thresholds)])
    mean_ap = ap[:, has_gt].mean(axis=1) * 100.0

    keys = [_threshold_key(t) for t in thresholds]
    result = {"mAP": {k: float(v) for k, v in zip(keys, mean_ap)},
              "average": float(mean_ap.mean())}
    for name, wanted in THRESHOLD_RANGES.items():
        idx = [np.flatnonzero(np.isclose(thresholds, w)) for w in wanted]
        if all(len(i) for i in idx):
            result[name] = float(np.mean([mean_ap[i[0]] for i in idx]))
    result["per_class"] = {
        str(enc.classes[k]): {key: float(ap[t, k] * 100.0) for t, key in enumerate(keys)}
        for k in np.flatnonzero(has_gt)
    }
    n_gt, n_pred = len(gt), len(pred)
    n_tp = int(tp[at_half].sum())
    precision = 100.0 * n_tp / n_pred if n_pred else 0.0
    recall = 100.0 * n_tp / n_gt
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    aedt = None
    if "gen_time" in p and n_tp:
        hits = tp[at_half]
        aedt = float(np.mean(p["gen_time"][hits] - g["end"][matched[at_half][hits]]))
    result.update({
        "num_gt": int(n_gt), "num_pred": int(n_pred), "num_pred_ignored_ambiguous": ignored,
        "f1_0.5": float(f1), "precision_0.5": float(precision), "recall_0.5": float(recall),
        "aedt": aedt,
    })
    return result


def precision_recall_curves(gt, pred, tiou_thresholds=DEFAULT_TIOU_THRESHOLDS, ambiguous=None, videos=None,
                            ambiguous_rule="hrpro"):
    """All-class instance-level precision-recall curve per tIoU threshold, for the DVC PR plot.

    Same matching as AP (score-greedy within each video and class); the predictions of all classes
    are then pooled and the score threshold swept from the top: row r of a threshold is the
    operating point that keeps the r + 1 best-scored predictions (ties: table order). Predictions
    of a class without GT count as false positives, recall is over all GT segments, so each
    curve's last row is evaluate_detections' precision_0.5 / recall_0.5 (as fractions) at 0.5.
    `ambiguous`, `videos`, `ambiguous_rule`: as in evaluate_detections.
    Returns a DataFrame with columns tiou, recall, precision (fractions in [0, 1]).
    """
    thresholds = _check_thresholds(tiou_thresholds)
    gt, pred, _ = _select_tables(gt, pred, ambiguous, videos, ambiguous_rule)
    enc, g, p = _prepare(gt, pred, "ground truth table", "prediction table")
    tp, _ = _match_by_score(enc, g, p, thresholds)
    pooled = np.lexsort((p["row"], -p["score"]))      # score order across classes, ties by table row
    hits = np.cumsum(tp[:, pooled], axis=1)
    kept = np.arange(1, len(pooled) + 1)
    return pd.DataFrame({
        "tiou": np.repeat(thresholds, len(pooled)),
        "recall": (hits / len(gt)).reshape(-1),
        "precision": (hits / kept).reshape(-1),
    })


# --------------------------------------------------------------------------- label checks

def load_class_list(path):
    """Class names from a classes.json ({"classes": [...]}, as in dataset folders) or a bare JSON list."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        fail(path, "file not found")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(path, f"not a readable JSON class list ({type(exc).__name__})")
    classes = data.get("classes") if isinstance(data, dict) else data
    if not isinstance(classes, list) or not classes or not all(isinstance(c, (str, int)) for c in classes):
        fail(path, 'expected a non-empty JSON list of class names, or {"classes": [...]}')
    return classes


def check_labels(gt, pred, classes=None, gt_source="ground truth table", pred_source="prediction table",
                 classes_source="class list"):
    """Catch label mix-ups that would otherwise score a silent 0 mAP.

    With `classes`: every GT and prediction label must be one of them (first offender named).
    Without: when predictions exist, at least one of their labels must occur in the GT, else the
    two tables almost surely name classes differently (e.g. indices in one, names in the other).
    """
    if classes is not None:
        known = set(classes)
        for frame, source in ((gt, gt_source), (pred, pred_source)):
            unknown = ~frame["label"].isin(known).to_numpy()
            if unknown.any():
                row = int(np.flatnonzero(unknown)[0])
                label = frame["label"].iloc[row]
                label = label.item() if isinstance(label, np.generic) else label
                hint = " (a class index? the class list holds names)" if not isinstance(label, str) else ""
                fail(source, f"unknown label {label!r} in row {row}, not in the class list {classes_source}{hint}",
                     frame["video_id"].iloc[row])
        return
    if not len(pred) or not len(gt):
        return
    gt_labels = [x.item() if isinstance(x, np.generic) else x for x in pd.unique(gt["label"])]
    pred_labels = [x.item() if isinstance(x, np.generic) else x for x in pd.unique(pred["label"])]
    if set(pred_labels).isdisjoint(gt_labels):
        def sample(labels):
            return ", ".join(repr(x) for x in labels[:3]) + (", ..." if len(labels) > 3 else "")
        fail(pred_source, f"none of its labels ({sample(pred_labels)}) is a label of {gt_source} "
                          f"({sample(gt_labels)}); are they class indices in one and names in the other?")


def _sample(values, limit=3):
    """A few values for a one-line message (a THUMOS table has thousands)."""
    values = [v.item() if isinstance(v, np.generic) else v for v in values]
    return ", ".join(repr(v) for v in values[:limit]) + (", ..." if len(values) > limit else "")


def coverage_warnings(gt, pred, videos=None, gt_source="ground truth", pred_source="predictions"):
    """What makes a score 0 (or lower) without being an error, one line each, for stderr.

    No prediction video in the GT (e.g. ids of another split or naming) scores exactly 0.0;
    a GT class without any prediction scores AP 0 and pulls mAP down; predictions of a class
    the GT lacks are left out of mAP. Each is plausible for a weak model, and a mistake more often.
    """
    if videos is not None:
        keep = {str(v) for v in videos}
        gt = gt[gt["video_id"].astype(str).isin(keep)]
        pred = pred[pred["video_id"].astype(str).isin(keep)]
    if not len(gt):
        return []
    if not len(pred):
        return [f"{pred_source}: no predictions for the evaluated videos; every score is 0"]
    gt_videos = set(gt["video_id"].astype(str))
    pred_videos = pd.unique(pred["video_id"].astype(str))
    if gt_videos.isdisjoint(pred_videos):
        return [f"{pred_source}: none of its {len(pred_videos)} videos ({_sample(pred_videos)}) is in {gt_source} "
                f"({_sample(sorted(gt_videos))}); every ground-truth segment counts as missed"]
    warnings = []
    gt_labels, pred_labels = pd.unique(gt["label"]), set(pd.unique(pred["label"]))
    unpredicted = [label for label in gt_labels if label not in pred_labels]
    if unpredicted:
        warnings.append(f"{pred_source}: {len(unpredicted)} of the {len(gt_labels)} classes of {gt_source} have no "
                        f"prediction and score AP 0: {_sample(sorted(unpredicted, key=str), 5)}")
    extra = sorted((label for label in pred_labels if label not in set(gt_labels)), key=str)
    if extra:
        warnings.append(f"{pred_source}: labels absent from {gt_source}, left out of mAP: {_sample(extra, 5)}")
    return warnings


def segment_quality(gt, segments, tiou_threshold=0.5):
    """Quality of pseudo segments against (training) ground truth, class-aware.

    One-to-one greedy matching at `tiou_threshold`: by score (each segment, best first, takes the
    unmatched same-class GT with highest tIoU) when `segments` has a score column, else by tIoU
    (the globally best remaining pair first). Returns precision/recall/F1 in percent, mean_tiou
    as a fraction in [0, 1] (over GT: each GT's best tIoU with a same-class segment of its video,
    0 if none), and the counts.
    """
    threshold = float(_check_thresholds([tiou_threshold])[0])
    gt = _check_frame(gt, "segments", "ground truth table")
    segments = _check_frame(segments, "segments", "segment table")
    has_score = "score" in segments.columns
    if has_score:
        _check_frame(segments, "proposals", "segment table")
    if not len(gt):
        fail("ground truth table", "no ground-truth segments to measure the segments against")
    enc = _Encoded(gt, segments, "segment table")
    gs, ge = gt["start"].to_numpy(np.float64), gt["end"].to_numpy(np.float64)
    ss, se = segments["start"].to_numpy(np.float64), segments["end"].to_numpy(np.float64)
    pair_s, pair_g = _candidate_pairs(enc.pred_group, ss, se, enc.gt_group, gs, ge, enc.num_groups)
    overlap = _interval_tiou(ss[pair_s], se[pair_s], gs[pair_g], ge[pair_g])
    best = np.zeros(len(gt))
    np.maximum.at(best, pair_g, overlap)

    keep = overlap >= threshold
    pair_s, pair_g, overlap = pair_s[keep], pair_g[keep], overlap[keep]
    if has_score:
        score = segments["score"].to_numpy(np.float64)
        rank = np.empty(len(segments), np.int64)
        rank[np.lexsort((np.arange(len(segments)), -score))] = np.arange(len(segments))
        order = np.lexsort((pair_g, -overlap, rank[pair_s]))
    else:
        order = np.lexsort((pair_g, pair_s, -overlap))
    n_tp = int(_greedy_one_to_one(pair_s[order], pair_g[order]).sum())
    n_seg, n_gt = len(segments), len(gt)
    precision = 100.0 * n_tp / n_seg if n_seg else 0.0
    recall = 100.0 * n_tp / n_gt
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "precision": float(precision), "recall": float(recall), "f1": float(f1),
        "mean_tiou": float(best.mean()), "num_segments": int(n_seg), "num_gt": int(n_gt),
        "num_matched": n_tp, "tiou_threshold": threshold,
    }


def frame_accuracy(cas, gt_segments, duration, video=None):
    """(correct, total) steps of one video where argmax of `cas` (T x (C+1), background last) is right.

    Step i sits at time (i + 0.5) * duration / T and is covered by a GT row (label, start, end) when
    start <= time < end. A step covered by several segments counts as correct for any covering
    label; an uncovered step is correct when the argmax is background (index C).
    `gt_segments`: K x 3 array-like of (label index, start, end) in seconds, or a DataFrame with
    columns label, start, end (integer labels).
    """
    cas = np.asarray(cas)
    if cas.ndim != 2 or cas.shape[0] == 0 or cas.shape[1] < 2:
        fail(None, f"CAS must be T x (C+1) with T >= 1 and C >= 1, got shape {cas.shape}", video)
    if not np.isfinite(cas).all():
        fail(None, "CAS contains NaN or inf", video)
    if not np.isfinite(duration) or duration <= 0:
        fail(None, f"duration must be a positive number of seconds, got {duration}", video)
    if isinstance(gt_segments, pd.DataFrame):
        gt_segments = gt_segments[["label", "start", "end"]].to_numpy(np.float64)
    rows = np.asarray(gt_segments, dtype=np.float64).reshape(-1, 3)
    n_steps, background = cas.shape[0], cas.shape[1] - 1
    labels = rows[:, 0]
    if len(rows) and (np.any(labels != np.round(labels)) or labels.min() < 0 or labels.max() >= background):
        fail(None, f"GT labels must be class indices in [0, {background}), got {np.unique(labels)}", video)
    times = (np.arange(n_steps) + 0.5) * (float(duration) / n_steps)
    covers = (rows[None, :, 1] <= times[:, None]) & (times[:, None] < rows[None, :, 2])    # T x K
    predicted = cas.argmax(axis=1)
    hit_action = (covers & (labels[None, :].astype(np.int64) == predicted[:, None])).any(axis=1)
    hit_background = (predicted == background) & ~covers.any(axis=1)
    return int((hit_action | hit_background).sum()), int(n_steps)
