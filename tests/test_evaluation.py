"""Tests of onpoint_core.evaluation: hand-derived cases, invariances, and a loop-based reference.

Expected numbers are derived by hand in the comments (or by the independent reference below),
never read back from the code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from onpoint_core.errors import OnPointError
from onpoint_core.evaluation import (
    average_precision,
    evaluate_detections,
    frame_accuracy,
    load_table,
    segment_quality,
    tiou,
)
from tests.conftest import SHARED_DATA

SHARED_DATA = SHARED_DATA  # ../shared/data, or $ONPOINT_SHARED_DATA


def gt_table(rows):
    return pd.DataFrame(rows, columns=["video_id", "label", "start", "end"]).astype({"start": float, "end": float})


def pred_table(rows, gen_time=False):
    cols = ["video_id", "label", "start", "end", "score"] + (["gen_time"] if gen_time else [])
    return pd.DataFrame(rows, columns=cols).astype({"start": float, "end": float, "score": float})


# ----------------------------------------------------------------------------- tIoU

def test_tiou_hand_values_and_floor():
    a = np.array([[0.0, 10.0], [5.0, 6.0], [3.0, 3.0]])
    b = np.array([[5.0, 15.0], [20.0, 30.0], [5.5, 6.0]])
    got = tiou(a, b)
    # [0,10] vs [5,15]: 5/15; disjoint: 0; [0,10] vs [5.5,6]: 0.5/10
    # [5,6] vs [5,15]: 1/10; [5,6] vs [5.5,6]: 0.5/1; zero-length [3,3]: always 0
    expected = np.array([[1 / 3, 0.0, 0.05], [0.1, 0.0, 0.5], [0.0, 0.0, 0.0]])
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(tiou(b, a), expected.T)
    # MATR floor: [5,6] vs [5.5,6] has union 1 -> unchanged at 1 s; [5.5,6] alone vs itself: 0.5/max(0.5,1)
    floored = tiou(np.array([[5.5, 6.0]]), np.array([[5.5, 6.0], [5.0, 6.0]]), min_length=1.0)
    np.testing.assert_allclose(floored, [[0.5, 0.5]])
    assert tiou(np.zeros((0, 2)), b).shape == (0, 3)
    with pytest.raises(ValueError):
        tiou(np.zeros((2, 3)), b)


# ----------------------------------------------------------------------------- hand-derived AP

def test_ap_one_class_three_gt_four_predictions():
    gt = gt_table([("v", "a", 0, 10), ("v", "a", 20, 30), ("v", "a", 40, 50)])
    pred = pred_table([
        ("v", "a", 0, 10, 0.9),    # tIoU 1 with GT1
        ("v", "a", 21, 31, 0.8),   # tIoU 9/11 = 0.818 with GT2
        ("v", "a", 0, 9, 0.7),     # tIoU 0.9 with GT1, already taken -> FP
        ("v", "a", 40, 44, 0.6),   # tIoU 4/10 = 0.4 with GT3
    ])
    res = evaluate_detections(gt, pred, tiou_thresholds=(0.3, 0.5, 0.85))
    # 0.3: TP TP FP TP -> precision 1, 1, 2/3, 3/4; envelope 1, 1, 3/4, 3/4 -> AP = (1 + 1 + 3/4) / 3
    # 0.5: TP TP FP FP -> AP = (1 + 1) / 3
    # 0.85: TP FP FP FP -> AP = 1 / 3
    assert res["mAP"]["0.3"] == pytest.approx(100 * 2.75 / 3)
    assert res["mAP"]["0.5"] == pytest.approx(100 * 2 / 3)
    assert res["mAP"]["0.85"] == pytest.approx(100 / 3)
    assert res["average"] == pytest.approx(100 * (2.75 / 3 + 2 / 3 + 1 / 3) / 3)
    assert res["per_class"] == {"a": pytest.approx(res["mAP"])}
    # F1 at 0.5: 2 TP of 4 predictions and 3 GT
    assert res["precision_0.5"] == pytest.approx(50.0)
    assert res["recall_0.5"] == pytest.approx(200 / 3)
    assert res["f1_0.5"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3) * 100)
    assert res["num_gt"] == 3 and res["num_pred"] == 4
    assert res["aedt"] is None
    assert "avg_0.1_0.5" not in res and "avg_0.3_0.7" not in res
    ap = average_precision(gt, pred, (0.3, 0.5, 0.85))
    np.testing.assert_allclose(ap["a"], [2.75 / 3, 2 / 3, 1 / 3])


def test_taken_gt_falls_back_to_next_best_above_threshold():
    gt = gt_table([("v", "a", 0, 10), ("v", "a", 5, 15)])
    pred = pred_table([
        ("v", "a", 5, 15, 0.9),    # takes GT2 (tIoU 1)
        ("v", "a", 4, 14, 0.8),    # GT2 (9/11) taken; GT1: 6/14 = 0.43
    ])
    res = evaluate_detections(gt, pred, tiou_thresholds=(0.4, 0.5))
    assert res["mAP"]["0.4"] == pytest.approx(100.0)   # both TP
    assert res["mAP"]["0.5"] == pytest.approx(50.0)    # TP, FP -> recall 1/2 at precision 1


def test_prediction_takes_highest_tiou_gt_not_first():
    gt = gt_table([("v", "a", 0, 10), ("v", "a", 8, 20)])
    pred = pred_table([
        ("v", "a", 7, 20, 0.9),    # GT1: 3/20, GT2: 12/13 -> must take GT2
        ("v", "a", 0, 10, 0.8),    # GT1
    ])
    assert evaluate_detections(gt, pred, tiou_thresholds=(0.5,))["mAP"]["0.5"] == pytest.approx(100.0)


def test_tiou_equal_to_the_threshold_is_a_match():
    gt = gt_table([("v", "a", 0, 10)])
    pred = pred_table([("v", "a", 0, 5, 0.9)])          # tIoU exactly 5/10
    res = evaluate_detections(gt, pred, tiou_thresholds=(0.5, 0.6))
    assert res["mAP"] == {"0.5": pytest.approx(100.0), "0.6": 0.0}


def test_duplicate_of_a_true_positive_is_a_false_positive():
    gt = gt_table([("v", "a", 0, 10), ("v", "a", 20, 30)])
    pred = pred_table([("v", "a", 0, 10, 0.9), ("v", "a", 0, 10, 0.8), ("v", "a", 20, 30, 0.7)])
    res = evaluate_detections(gt, pred, tiou_thresholds=(0.5,))
    # TP FP TP -> precision 1, 1/2, 2/3 -> AP = (1 + 2/3) / 2
    assert res["mAP"]["0.5"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert res["precision_0.5"] == pytest.approx(200 / 3)
    assert res["recall_0.5"] == pytest.approx(100.0)


def test_equal_scores_keep_table_order():
    gt = gt_table([("v", "a", 0, 10)])
    fp_first = pred_table([("v", "a", 50, 60, 0.5), ("v", "a", 0, 10, 0.5)])
    tp_first = fp_first.iloc[::-1].reset_index(drop=True)
    # stable sort: FP then TP -> precision 1/2 at full recall; TP then FP -> 1
    assert evaluate_detections(gt, fp_first, (0.5,))["mAP"]["0.5"] == pytest.approx(50.0)
    assert evaluate_detections(gt, tp_first, (0.5,))["mAP"]["0.5"] == pytest.approx(100.0)


def test_matching_is_per_video_and_per_class():
    gt = gt_table([("v1", "a", 0, 10), ("v2", "b", 0, 10)])
    pred = pred_table([
        ("v2", "a", 0, 10, 0.9),   # right time, wrong video for class a
        ("v1", "b", 0, 10, 0.8),   # right time, wrong video for class b
        ("v1", "a", 0, 10, 0.3),
    ])
    res = evaluate_detections(gt, pred, (0.5,))
    # class a: FP then TP -> AP 1/2; class b: FP only -> 0
    assert res["per_class"]["a"]["0.5"] == pytest.approx(50.0)
    assert res["per_class"]["b"]["0.5"] == pytest.approx(0.0)
    assert res["mAP"]["0.5"] == pytest.approx(25.0)


def test_perfect_predictions_score_100_and_aedt():
    gt = gt_table([("v1", "a", 0, 10), ("v1", "b", 5, 8), ("v2", "a", 3, 4), ("v2", "c", 100, 130)])
    pred = gt.assign(score=[0.9, 0.8, 0.7, 0.6], gen_time=gt["end"] - 1.5)
    res = evaluate_detections(gt, pred)
    assert res["mAP"] == {k: pytest.approx(100.0) for k in ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7")}
    for key in ("average", "avg_0.1_0.5", "avg_0.3_0.7", "avg_0.1_0.7", "f1_0.5", "precision_0.5", "recall_0.5"):
        assert res[key] == pytest.approx(100.0), key
    assert res["aedt"] == pytest.approx(-1.5)   # every detection emitted 1.5 s before the action ended
    json.dumps(res)                              # JSON-ready


def test_averages_are_means_of_their_ranges():
    gt = gt_table([("v", "a", 0, 10), ("v", "a", 20, 30)])
    pred = pred_table([("v", "a", 0, 7, 0.9), ("v", "a", 22, 30, 0.8)])   # tIoU 0.7 and 0.8
    res = evaluate_detections(gt, pred)
    # both TP up to 0.7 -> 100 everywhere
    assert res["avg_0.1_0.7"] == pytest.approx(100.0)
    pred2 = pred_table([("v", "a", 0, 5, 0.9), ("v", "a", 22, 30, 0.8)])   # tIoU 0.5 and 0.8
    res2 = evaluate_detections(gt, pred2)
    # 0.1..0.5: 100; 0.6, 0.7: FP then TP -> (1/2) / 2 = 25
    assert res2["mAP"]["0.6"] == pytest.approx(25.0)
    assert res2["avg_0.1_0.5"] == pytest.approx(100.0)
    assert res2["avg_0.3_0.7"] == pytest.approx((300 + 50) / 5)
    assert res2["avg_0.1_0.7"] == pytest.approx((500 + 50) / 7)
    assert res2["average"] == pytest.approx((500 + 50) / 7)
    only = evaluate_detections(gt, pred2, tiou_thresholds=np.linspace(0.1, 0.5, 5))
    assert set(only["mAP"]) == {"0.1", "0.2", "0.3", "0.4", "0.5"}
    assert "avg_0.1_0.5" in only and "avg_0.3_0.7" not in only and "avg_0.1_0.7" not in only


def test_class_without_gt_is_ignored_for_map_and_gt_class_without_predictions_scores_zero():
    gt = gt_table([("v", "a", 0, 10), ("v", "b", 20, 30)])
    pred = pred_table([("v", "a", 0, 10, 0.9)])
    base = evaluate_detections(gt, pred, (0.5,))
    assert base["per_class"]["b"]["0.5"] == 0.0
    assert base["mAP"]["0.5"] == pytest.approx(50.0)
    extra = pd.concat([pred, pred_table([("v", "zzz", 0, 10, 0.99)])], ignore_index=True)
    res = evaluate_detections(gt, extra, (0.5,))
    assert res["mAP"] == base["mAP"] and "zzz" not in res["per_class"]
    assert res["num_pred"] == 2
    assert res["precision_0.5"] == pytest.approx(50.0)   # but it is a false positive at instance level


def test_empty_predictions_and_empty_gt():
    gt = gt_table([("v", "a", 0, 10)])
    res = evaluate_detections(gt, pred_table([]), (0.5,))
    assert res["mAP"]["0.5"] == 0.0 and res["f1_0.5"] == 0.0 and res["num_pred"] == 0
    with pytest.raises(OnPointError, match="no ground-truth"):
        evaluate_detections(gt_table([]), pred_table([("v", "a", 0, 1, 1.0)]))


def test_videos_restricts_both_tables():
    gt = gt_table([("v1", "a", 0, 10), ("v2", "a", 0, 10)])
    pred = pred_table([("v1", "a", 0, 10, 0.5), ("v3", "a", 0, 10, 0.9)])
    assert evaluate_detections(gt, pred, (0.5,))["mAP"]["0.5"] == pytest.approx(25.0)  # FP, TP; 1 of 2 GT
    res = evaluate_detections(gt, pred, (0.5,), videos=["v1"])
    assert res["mAP"]["0.5"] == pytest.approx(100.0)
    assert res["num_gt"] == 1 and res["num_pred"] == 1


def test_permuting_rows_does_not_change_results():
    gt, pred = random_tables(np.random.default_rng(3), n_videos=6, n_classes=4, n_gt=40, n_pred=300, tie_scores=False)
    res = evaluate_detections(gt, pred)
    perm = np.random.default_rng(4)
    res2 = evaluate_detections(gt.sample(frac=1.0, random_state=1), pred.iloc[perm.permutation(len(pred))])
    assert res2["mAP"] == pytest.approx(res["mAP"])
    assert res2["per_class"] == {k: pytest.approx(v) for k, v in res["per_class"].items()}
    assert res2["f1_0.5"] == pytest.approx(res["f1_0.5"]) and res2["aedt"] == pytest.approx(res["aedt"])


def test_integer_labels_and_video_ids_work_and_mixed_label_kinds_fail():
    gt = gt_table([(1, 0, 0, 10), (2, 1, 0, 10)])
    pred = pred_table([("1", 0, 0, 10, 0.9), ("2", 1, 0, 10, 0.8)])   # video ids as strings here
    assert evaluate_detections(gt, pred, (0.5,))["mAP"]["0.5"] == pytest.approx(100.0)
    bad = pred.assign(label=["a", "b"])
    with pytest.raises(OnPointError, match="class indices in one table"):
        evaluate_detections(gt, bad)


def test_bad_tables_raise_onpoint_errors_naming_the_problem():
    gt = gt_table([("v", "a", 0, 10)])
    with pytest.raises(OnPointError, match=r"prediction table: missing column\(s\) \['score'\]"):
        evaluate_detections(gt, gt)
    with pytest.raises(OnPointError, match=r"video v: column 'score' has a non-finite value"):
        evaluate_detections(gt, pred_table([("v", "a", 0, 10, np.nan)]))
    with pytest.raises(OnPointError, match="video v: segment ends before it starts"):
        evaluate_detections(gt, pred_table([("v", "a", 10, 5, 0.3)]))
    with pytest.raises(ValueError):
        evaluate_detections(gt, gt.assign(score=1.0), tiou_thresholds=(0.0, 0.5))


# ----------------------------------------------------------------------------- ambiguous segments

def test_ambiguous_hrpro_rule_uses_integer_seconds():
    gt = gt_table([("v", "a", 100, 110)])
    pred = pred_table([
        ("v", "a", 10.2, 12.9, 0.9),   # seconds {10, 11}
        ("v", "a", 20.2, 22.9, 0.8),   # seconds {20, 21}
        ("v", "a", 100, 110, 0.5),     # the true positive, far from every ambiguous segment
        ("w", "a", 10.2, 12.9, 0.7),   # same times in another video
    ])
    ambiguous = pd.DataFrame({"video_id": ["v", "v"], "start": [12.6, 21.4], "end": [14.0, 23.0]})
    # ambiguous seconds: round(12.6)=13..round(14)=14 -> {13}: no overlap with {10, 11} although the
    # intervals overlap by 0.3 s; round(21.4)=21..23 -> {21, 22}: overlaps {20, 21} -> dropped
    res = evaluate_detections(gt, pred, (0.5,), ambiguous=ambiguous)
    assert res["num_pred_ignored_ambiguous"] == 1 and res["num_pred"] == 3
    # remaining by score: FP (v, 0.9), FP (w, 0.7), TP (0.5) -> precision 1/3 at full recall
    assert res["mAP"]["0.5"] == pytest.approx(100 / 3)
    cont = evaluate_detections(gt, pred, (0.5,), ambiguous=ambiguous, ambiguous_rule="overlap")
    assert cont["num_pred_ignored_ambiguous"] == 2      # continuous overlap drops both
    assert cont["mAP"]["0.5"] == pytest.approx(50.0)   # FP (w), TP
    # round half to even, like Python's round(): round(10.5) = 10, so [10.5, 11.4] -> {10}
    half = pd.DataFrame({"video_id": ["v"], "start": [10.5], "end": [11.4]})
    assert evaluate_detections(gt, pred, (0.5,), ambiguous=half)["num_pred_ignored_ambiguous"] == 1
    half_up = pd.DataFrame({"video_id": ["v"], "start": [11.5], "end": [12.4]})   # round -> 12..12: empty
    assert evaluate_detections(gt, pred, (0.5,), ambiguous=half_up)["num_pred_ignored_ambiguous"] == 0


# ----------------------------------------------------------------------------- reference cross-check

def random_tables(rng, n_videos, n_classes, n_gt, n_pred, tie_scores=True):
    """Random GT with overlapping segments and predictions that jitter and duplicate them."""
    gv = rng.integers(0, n_videos, n_gt)
    gl = rng.integers(0, n_classes, n_gt)
    gs = rng.uniform(0, 200, n_gt)
    ge = gs + rng.uniform(0.5, 20, n_gt)
    gt = gt_table(list(zip([f"v{v}" for v in gv], [f"c{c}" for c in gl], gs, ge)))
    k = n_pred * 2 // 3
    src = rng.integers(0, n_gt, k)
    length = ge[src] - gs[src]
    ps = gs[src] + rng.normal(0, 0.35, k) * length
    pe = np.maximum(ge[src] + rng.normal(0, 0.35, k) * length, ps + 0.05)
    lab = np.where(rng.random(k) < 0.85, gl[src], rng.integers(0, n_classes + 1, k))   # + a class with no GT
    r = n_pred - k
    rs = rng.uniform(0, 200, r)
    videos = np.r_[gv[src], rng.integers(0, n_videos, r)]
    labels = np.r_[lab, rng.integers(0, n_classes + 1, r)]
    starts = np.r_[ps, rs]
    ends = np.r_[pe, rs + rng.uniform(0.2, 25, r)]
    scores = rng.random(n_pred)
    if tie_scores:
        scores = np.round(scores, 2)          # many equal scores: exercises the stable order
    pred = pred_table(list(zip([f"v{v}" for v in videos], [f"c{c}" for c in labels], starts, ends, scores)))
    pred["gen_time"] = ends + rng.uniform(-3, 3, n_pred)
    return gt, pred


def reference_evaluation(gt, pred, thresholds):
    """Plain-loop ActivityNet evaluation: per threshold, per class, predictions one at a time."""
    gt_rows = list(gt[["video_id", "label", "start", "end"]].itertuples(index=False, name=None))
    pred_rows = list(pred[["video_id", "label", "start", "end", "score", "gen_time"]].itertuples(index=False, name=None))
    by_key = {}
    for i, (v, c, s, e) in enumerate(gt_rows):
        by_key.setdefault((v, c), []).append(i)
    classes = sorted({c for _, c, _, _ in gt_rows})
    aps = {c: [] for c in classes}
    tp_at, delays = {}, {}
    for thr in thresholds:
        n_tp, delay = 0, []
        for c in classes:
            npos = sum(1 for row in gt_rows if row[1] == c)
            mine = sorted([row for row in pred_rows if row[1] == c], key=lambda row: -row[4])   # stable
            used, flags = set(), []
            for v, _, s, e, _, gen in mine:
                best, best_iou = None, -1.0
                for i in by_key.get((v, c), []):
                    if i in used:
                        continue
                    gs, ge = gt_rows[i][2], gt_rows[i][3]
                    inter = max(0.0, min(e, ge) - max(s, gs))
                    union = (e - s) + (ge - gs) - inter
                    value = inter / union if union > 0 else 0.0
                    if value >= thr and value > best_iou:
                        best, best_iou = i, value
                if best is None:
                    flags.append(0)
                else:
                    used.add(best)
                    flags.append(1)
                    delay.append(gen - gt_rows[best][3])
            precision, recall, hits = [], [], 0
            for k, flag in enumerate(flags):
                hits += flag
                precision.append(hits / (k + 1))
                recall.append(hits / npos)
            n_tp += hits
            mprec = [0.0] + precision + [0.0]
            mrec = [0.0] + recall + [1.0]
            for i in range(len(mprec) - 2, -1, -1):
                mprec[i] = max(mprec[i], mprec[i + 1])
            aps[c].append(sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]))
        tp_at[thr], delays[thr] = n_tp, delay
    return aps, tp_at, delays


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_loop_reference_on_random_data(seed):
    rng = np.random.default_rng(seed)
    gt, pred = random_tables(rng, n_videos=12, n_classes=9, n_gt=250, n_pred=1500)
    thresholds = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    res = evaluate_detections(gt, pred, thresholds)
    aps, tp_at, delays = reference_evaluation(gt, pred, thresholds)
    assert set(res["per_class"]) == set(aps)
    for c, values in aps.items():
        assert [res["per_class"][c][f"{t:g}"] for t in thresholds] == pytest.approx([100 * v for v in values], abs=1e-9)
    expected_map = 100 * np.mean([aps[c] for c in aps], axis=0)
    assert [res["mAP"][f"{t:g}"] for t in thresholds] == pytest.approx(list(expected_map), abs=1e-9)
    assert 0 < res["mAP"]["0.5"] < 100              # the data is neither trivial nor hopeless
    n_tp = tp_at[0.5]
    assert res["precision_0.5"] == pytest.approx(100 * n_tp / len(pred))
    assert res["recall_0.5"] == pytest.approx(100 * n_tp / len(gt))
    assert res["aedt"] == pytest.approx(np.mean(delays[0.5]))


def test_segment_quality_greedy_by_tiou_matches_loop_reference():
    rng = np.random.default_rng(7)
    gt, pred = random_tables(rng, n_videos=5, n_classes=4, n_gt=80, n_pred=300)
    segs = pred.drop(columns=["score", "gen_time"])
    got = segment_quality(gt, segs, 0.5)
    # reference: all same-video same-class pairs with tIoU >= 0.5, best tIoU first, one-to-one
    pairs = []
    for i, s in enumerate(segs.itertuples(index=False)):
        for j, g in enumerate(gt.itertuples(index=False)):
            if s.video_id == g.video_id and s.label == g.label:
                inter = max(0.0, min(s.end, g.end) - max(s.start, g.start))
                union = (s.end - s.start) + (g.end - g.start) - inter
                pairs.append((inter / union if union > 0 else 0.0, i, j))
    best = np.zeros(len(gt))
    for value, _, j in pairs:
        best[j] = max(best[j], value)
    used_s, used_g, matched = set(), set(), 0
    for value, i, j in sorted(pairs, key=lambda p: (-p[0], p[1], p[2])):
        if value >= 0.5 and i not in used_s and j not in used_g:
            used_s.add(i), used_g.add(j)
            matched += 1
    assert got["num_matched"] == matched > 0
    assert got["precision"] == pytest.approx(100 * matched / len(segs))
    assert got["recall"] == pytest.approx(100 * matched / len(gt))
    assert got["mean_tiou"] == pytest.approx(best.mean())


# ----------------------------------------------------------------------------- segment quality

def test_segment_quality_score_order_versus_tiou_order():
    gt = gt_table([("v", "a", 0, 10), ("v", "a", 4, 14), ("v", "b", 0, 10)])
    segs = pd.DataFrame({
        "video_id": ["v", "v", "v"], "label": ["a", "a", "c"],
        "start": [1.0, 0.0, 0.0], "end": [11.0, 10.0, 10.0], "score": [0.9, 0.5, 0.99],
    })
    # s1 [1,11]: GT1 9/11 = 0.818, GT2 7/13 = 0.538; s2 [0,10]: GT1 1.0, GT2 6/14 = 0.43;
    # s3 has class c: matches nothing (GT3 is class b)
    by_score = segment_quality(gt, segs)
    # by score: s1 takes GT1, s2 finds only GT2 at 0.43 -> 1 match
    assert by_score["num_matched"] == 1
    assert by_score["precision"] == pytest.approx(100 / 3) and by_score["recall"] == pytest.approx(100 / 3)
    by_tiou = segment_quality(gt, segs.drop(columns="score"))
    # by tIoU: (s2, GT1, 1.0) first, then (s1, GT2, 0.538) -> 2 matches
    assert by_tiou["num_matched"] == 2
    assert by_tiou["precision"] == pytest.approx(200 / 3) and by_tiou["recall"] == pytest.approx(200 / 3)
    # mean tIoU over GT: GT1 1.0, GT2 0.538, GT3 0 (no class-b segment)
    assert by_score["mean_tiou"] == pytest.approx((1.0 + 7 / 13 + 0.0) / 3)
    assert by_score["num_segments"] == 3 and by_score["num_gt"] == 3


# ----------------------------------------------------------------------------- frame accuracy

def test_frame_accuracy_hand_case():
    # 10 steps over 10 s: step i at time i + 0.5; C = 2, background index 2
    gt = np.array([[0, 2.0, 5.0], [1, 4.0, 6.0]])   # class 0 covers steps 2,3,4; class 1 covers 4,5
    predicted = np.array([2, 2, 0, 1, 1, 0, 2, 2, 2, 1])
    cas = np.eye(3)[predicted] * 0.8 + 0.05
    correct, total = frame_accuracy(cas, gt, 10.0)
    # right: 0,1 (bg), 2 (0), 4 (1 covers), 6,7,8 (bg); wrong: 3 (1 not covering), 5 (0), 9 (1 on bg)
    assert (correct, total) == (7, 10)
    frame = pd.DataFrame({"label": [0, 1], "start": [2.0, 4.0], "end": [5.0, 6.0]})
    assert frame_accuracy(cas, frame, 10.0) == (7, 10)
    # no GT: only background argmax is right (steps 0,1,6,7,8)
    assert frame_accuracy(cas, np.zeros((0, 3)), 10.0) == (5, 10)
    # over 20 s step i sits at 2i + 1: class 0 [2, 5) covers step 1 only (t = 5 is its end, excluded),
    # class 1 [4, 6) covers step 2; right: 0 (bg), 6, 7, 8 (bg); step 1 says bg, step 2 says 0 -> 4 right
    assert frame_accuracy(cas, gt, 20.0) == (4, 10)
    with pytest.raises(OnPointError, match="video x: GT labels must be class indices"):
        frame_accuracy(cas, np.array([[2, 0.0, 1.0]]), 10.0, video="x")


# ----------------------------------------------------------------------------- load_table

def test_load_table_formats(tmp_path):
    frame = pd.DataFrame({"video_id": ["0001", "0002"], "label": ["a", "b"], "start": [0.0, 1.0],
                          "end": [2.0, 3.0], "score": [0.5, 0.25], "gen_time": [2.5, 3.5]})
    frame.to_parquet(tmp_path / "p.parquet", index=False)
    frame.to_csv(tmp_path / "p.csv", index=False)
    frame.to_json(tmp_path / "p.jsonl", orient="records", lines=True)
    for name in ("p.parquet", "p.csv", "p.jsonl"):
        got = load_table(tmp_path / name, "proposals")
        assert got["video_id"].tolist() == ["0001", "0002"], name      # leading zeros kept
        assert got["gen_time"].tolist() == [2.5, 3.5], name            # not parsed as a date
        assert got["label"].tolist() == ["a", "b"], name
    pseudo = frame.drop(columns="gen_time").assign(point=[1.0, np.nan])
    pseudo.to_parquet(tmp_path / "pseudo.parquet", index=False)
    assert load_table(tmp_path / "pseudo.parquet", "pseudo_segments")["point"].isna().tolist() == [False, True]
    (tmp_path / "amb.txt").write_text("video_test_0000278  0.0 1.4\nvideo_test_0000278  95.7 97.2\n")
    amb = load_table(tmp_path / "amb.txt", "ambiguous")
    assert amb["video_id"].tolist() == ["video_test_0000278"] * 2 and amb["end"].tolist() == [1.4, 97.2]


def test_load_table_errors_name_file_video_and_problem(tmp_path):
    good = pd.DataFrame({"video_id": ["v1", "v2"], "label": ["a", "a"], "start": [0.0, 1.0], "end": [2.0, 3.0]})
    path = tmp_path / "gt.parquet"
    good.drop(columns="end").to_parquet(path)
    with pytest.raises(OnPointError, match=r"gt\.parquet: missing column\(s\) \['end'\]"):
        load_table(path, "segments")
    good.assign(start=[0.0, np.inf]).to_parquet(path)
    with pytest.raises(OnPointError, match=r"gt\.parquet: video v2: column 'start' has a non-finite value inf"):
        load_table(path, "segments")
    good.assign(end=[2.0, 0.5]).to_parquet(path)
    with pytest.raises(OnPointError, match=r"gt\.parquet: video v2: segment ends before it starts"):
        load_table(path, "segments")
    good.assign(start=["x", "y"]).to_parquet(path)
    with pytest.raises(OnPointError, match="column 'start' is not numeric"):
        load_table(path, "segments")
    with pytest.raises(OnPointError, match=r"missing\.parquet: file not found"):
        load_table(tmp_path / "missing.parquet", "segments")
    (tmp_path / "gt.xlsx").write_text("x")
    with pytest.raises(OnPointError, match="unsupported file type '.xlsx'"):
        load_table(tmp_path / "gt.xlsx", "segments")
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(OnPointError, match=r"broken\.parquet: cannot read the segments table"):
        load_table(tmp_path / "broken.parquet", "segments")
    good.to_parquet(path)
    with pytest.raises(OnPointError, match=r"missing column\(s\) \['score'\]"):
        load_table(path, "proposals")
    with pytest.raises(ValueError):
        load_table(path, "nonsense")


# ----------------------------------------------------------------------------- real THUMOS'14 annotations

def _thumos_test_gt():
    root = SHARED_DATA / "thumos14"
    needed = [root / "gt_full.json", root / "split_test.txt", root / "Ambiguous_test.txt"]
    if not all(p.is_file() for p in needed):
        pytest.skip(f"real THUMOS'14 annotation files not found under {root}")
    database = json.loads((root / "gt_full.json").read_text())["database"]
    rows = [(vid, ann["label"], float(ann["segment"][0]), float(ann["segment"][1]))
            for vid, entry in database.items() if entry["subset"] == "Test" for ann in entry["annotations"]]
    videos = (root / "split_test.txt").read_text().split()
    return gt_table(rows), videos, root / "Ambiguous_test.txt"


def test_thumos_test_split_perfect_predictions_and_hrpro_ambiguous_filter():
    gt, videos, ambiguous_path = _thumos_test_gt()
    pred = gt.assign(score=np.linspace(1.0, 0.1, len(gt)))
    res = evaluate_detections(gt, pred, videos=videos)
    assert res["num_gt"] == 3311                         # THUMOS'14: 210 test videos, 3311 segments
    assert res["mAP"]["0.7"] == pytest.approx(100.0) and len(res["per_class"]) == 20
    # HR-Pro's filter_segments written out with Python sets, as HR-Pro does it
    lines = [line.split() for line in ambiguous_path.read_text().splitlines() if line.strip()]
    kept = set(videos)
    dropped = 0
    for row in pred[pred.video_id.isin(kept)].itertuples(index=False):
        p_set = set(range(int(row.start), int(row.end)))
        for video, a_start, a_end in lines:
            if video == row.video_id and p_set & set(range(round(float(a_start)), round(float(a_end)))):
                dropped += 1
                break
    ambiguous = load_table(ambiguous_path, "ambiguous")
    res_amb = evaluate_detections(gt, pred, videos=videos, ambiguous=ambiguous)
    assert dropped > 0
    assert res_amb["num_pred_ignored_ambiguous"] == dropped
    assert res_amb["num_pred"] == 3311 - dropped
    assert res_amb["recall_0.5"] == pytest.approx(100 * (3311 - dropped) / 3311)


def _exp(name, run, seed, avg, state=None):
    """One `dvc exp show --json` experiment group, in the layout DVC 3 prints."""
    metrics = {"mAP": {"0.5": avg}, "avg_0.1_0.7": avg}
    revision = {"rev": name[:7], "name": name, "data": {
        "rev": name[:7], "params": {"params.yaml": {"data": {"dataset": "synthetic",
                                                              "student": {"run": run, "seed": seed}}}},
        "metrics": {"metrics/online_eval.json": {"data": metrics}}}}
    return {"name": name, "revs": [revision], **({"executor": {"state": state}} if state else {})}


def test_report_rows_skip_unfinished_experiments():
    from onpoint_core.report import experiment_rows, summarise

    baseline = _exp("main", "onpoint", 52, 20.0)["revs"][0]
    baseline["experiments"] = [
        _exp("a-s52", "onpoint", 52, 20.0, "success"), _exp("a-s53", "onpoint", 53, 24.0, "success"),
        _exp("b-s52", "teacher_oat", 52, 10.0, "success"),
        # still queued / running / failed: their commits carry the baseline's metrics files
        _exp("q", "distillation_free", 52, 20.0, "queued"),
        _exp("r", "fully_supervised", 52, 20.0, "running"),
        _exp("f", "no_calibration", 52, 20.0, "failed"),
    ]
    rows = experiment_rows([baseline])
    assert sorted(r["experiment"] for r in rows) == ["a-s52", "a-s53", "b-s52", "main"]
    summary = summarise(rows)
    assert sorted(summary) == [("synthetic", "onpoint"), ("synthetic", "teacher_oat")]
    # the baseline and a-s52 are one seed (counted once): the mean of seeds 52 and 53
    assert summary[("synthetic", "onpoint")]["avg_0.1_0.7"][0] == pytest.approx(22.0)


def test_report_shows_the_workspace_when_it_differs_from_its_commit():
    """The workspace and the commit it came from have the same params: one row, and it is the
    workspace's results (what the user's `dvc repro` just made), not the committed metrics."""
    from onpoint_core.report import experiment_rows, summarise

    workspace = _exp("workspace", "onpoint", 52, 35.4)["revs"][0]
    commit = _exp("main", "onpoint", 52, 35.7)["revs"][0]
    summary = summarise(experiment_rows([workspace, commit]))
    assert summary[("synthetic", "onpoint")]["seeds"] == [52]
    assert summary[("synthetic", "onpoint")]["avg_0.1_0.7"][0] == pytest.approx(35.4)


def test_report_rows_leave_the_point_noise_study_to_its_own_report():
    from onpoint_core.report import experiment_rows

    noisy = _exp("noise2-onpoint-s52", "onpoint", 52, 15.0, "success")
    noisy["revs"][0]["data"]["params"]["params.yaml"]["data"]["datasets"] = {
        "synthetic": {"points": {"noise_seconds": 2.0}}}
    exact = _exp("noise0-onpoint-s52", "onpoint", 52, 20.0, "success")
    exact["revs"][0]["data"]["params"]["params.yaml"]["data"]["datasets"] = {
        "synthetic": {"points": {"noise_seconds": 0.0}}}
    baseline = _exp("main", "onpoint", 52, 20.0)["revs"][0]
    baseline["experiments"] = [noisy, exact]
    assert sorted(r["experiment"] for r in experiment_rows([baseline])) == ["main", "noise0-onpoint-s52"]


def test_report_rows_name_their_commit_and_survive_an_older_params_layout():
    """With --all-commits the rows come from several commits: each row names the commit it ran
    from (the report's header lists them), and a commit whose params.yaml had another layout
    (`datasets.<name>` a string) is read without a crash."""
    from onpoint_core.report import experiment_rows

    new = _exp("newbase", "onpoint", 52, 20.0)["revs"][0]
    new["experiments"] = [_exp("egtea-onpoint-s52", "onpoint", 52, 12.0, "success")]
    old = _exp("oldbase", "onpoint", 52, 30.0)["revs"][0]
    old["data"]["params"]["params.yaml"]["data"]["datasets"] = {"synthetic": "data/old_layout"}
    old["experiments"] = [_exp("thumos-onpoint-s52", "onpoint", 52, 47.8, "success")]
    rows = {r["experiment"]: r["baseline"] for r in experiment_rows([new, old])}
    assert rows == {"newbase": "newbase", "egtea-onpoint-s52": "newbase", "oldbase": "oldbase",
                    "thumos-onpoint-s52": "oldbase"}


def test_report_counts_a_run_once_when_a_key_was_set_as_0_for_0_0():
    """`-S ...noise_seconds=0` stores 0 where params.yaml holds 0.0: the same run, the same seed,
    so one member of the group, not a second seed 52 and not a second variant of the run."""
    from onpoint_core.report import experiment_rows, summarise

    def with_noise(exp, value):
        exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["datasets"] = {
            "synthetic": {"points": {"noise_seconds": value}}}
        return exp

    baseline = with_noise(_exp("main", "onpoint", 52, 20.0), 0.0)["revs"][0]
    baseline["experiments"] = [with_noise(_exp("noise0-onpoint-s52", "onpoint", 52, 20.0, "success"), 0),
                               with_noise(_exp("a-s53", "onpoint", 53, 24.0, "success"), 0.0)]
    summary = summarise(experiment_rows([baseline]))
    assert list(summary) == [("synthetic", "onpoint")]
    assert summary[("synthetic", "onpoint")]["seeds"] == [52, 53]
    assert summary[("synthetic", "onpoint")]["avg_0.1_0.7"][0] == pytest.approx(22.0)


def test_report_shows_the_val_score_each_row_was_selected_on():
    """The convergence rule selects on val; the table shows that score beside the test columns,
    so "the fully supervised reference is best on val and on test" can be read off it."""
    from onpoint_core.report import experiment_rows, markdown, summarise

    def with_val(exp, val):
        exp["revs"][0]["data"]["metrics"]["metrics/student_train.json"] = {"data": {"val_avg_0.1_0.7": val}}
        return exp

    baseline = with_val(_exp("main", "onpoint", 52, 20.0), 30.0)["revs"][0]
    baseline["experiments"] = [with_val(_exp("a-s53", "onpoint", 53, 24.0, "success"), 34.0)]
    summary = summarise(experiment_rows([baseline]))
    assert summary[("synthetic", "onpoint")]["val_avg_0.1_0.7"][0] == pytest.approx(32.0)
    table = markdown(summary)
    header = next(line for line in table.splitlines() if line.startswith("| run |"))
    row = next(line for line in table.splitlines() if line.startswith("| onpoint |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    column = [c.strip() for c in header.strip("|").split("|")].index("val avg 0.1:0.7")
    assert cells[column] == "32.0 ± 2.8"


def test_report_command_leaves_out_excluded_experiments(tmp_path, monkeypatch):
    """`--exclude 'probe-*'`: probes of one row (other params) stay out of the comparison table."""
    from click.testing import CliRunner

    from onpoint_core import cli, report

    probe = _exp("probe-p4-onpoint-s54", "onpoint", 54, 99.0, "success")
    probe["revs"][0]["data"]["params"]["params.yaml"]["data"]["student"]["patience"] = 4
    baseline = _exp("main", "onpoint", 52, 20.0)["revs"][0]
    baseline["experiments"] = [probe]
    monkeypatch.setattr(report, "read_experiments", lambda repo, all_commits=False: [baseline])
    out = tmp_path / "table.md"
    args = ["report", "--repo", str(tmp_path), "--out", str(out), "--png", str(tmp_path / "bars.png")]
    assert CliRunner().invoke(cli.main, args).exit_code == 0
    assert "probe-p4-onpoint-s54" in out.read_text()
    result = CliRunner().invoke(cli.main, args + ["--exclude", "probe-*"])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "probe" not in text and "| onpoint | 1 |" in text


def test_report_header_names_the_one_commit_the_experiments_ran_from(tmp_path, monkeypatch):
    """With --all-commits, experiments that all ran from one older commit are attributed to that
    commit, not to the repository's HEAD (a report made in a clone ahead of the runs' commit)."""
    import subprocess

    from click.testing import CliRunner

    from onpoint_core import cli, report

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "head"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    older = _exp("0123456789abcdef", "onpoint", 52, 20.0)["revs"][0]
    older["rev"] = "0123456789abcdef"
    older["experiments"] = [_exp("a-s53", "onpoint", 53, 24.0, "success")]
    monkeypatch.setattr(report, "read_experiments", lambda repo, all_commits=False: [older])
    out = tmp_path / "table.md"
    args = ["report", "--repo", str(tmp_path), "--out", str(out), "--png", str(tmp_path / "bars.png"),
            "--all-commits"]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "at commit 0123456;" in text and head not in text


def test_report_judges_the_paper_orderings_by_twice_the_larger_sd():
    """The orderings table is part of the report (so the README's verdicts come from a command):
    a gap beyond twice the larger sd holds, a smaller positive one is within 2 sd, a negative one
    is reversed; a pair with a row not run says so."""
    from onpoint_core.report import orderings, verdict

    assert verdict(5.0, 1.0, 2.0) == "holds beyond 2 sd"
    assert verdict(3.0, 1.0, 2.0) == "same sign, within 2 sd"
    assert verdict(-3.0, 1.0, 2.0) == "reversed, within 2 sd"
    assert verdict(-5.0, 1.0, 2.0) == "reversed beyond 2 sd"
    assert verdict(1.0, None, 2.0) == "one seed: no sd"
    summary = {("synthetic", "onpoint"): {"avg_0.1_0.7": (40.0, 1.0), "seeds": [52, 53, 54]},
               ("synthetic", "teacher_oat"): {"avg_0.1_0.7": (30.0, 2.0), "seeds": [52, 53, 54]}}
    lines = orderings(summary, "synthetic")
    assert "| OnPoint > teacher + OAT | +4.8 | +10.0 | 4.0 | 3 / 3 | holds beyond 2 sd |" in lines
    assert any(line.startswith("| OnPoint > distillation-free | +26.3 | not run yet") for line in lines)


def test_point_noise_report_reads_the_noise_experiments():
    """scripts/point_noise_report.py walks the same `dvc exp show` layout as the report: the noise
    experiments, grouped by run and noise std (it broke once when the walk's tuples grew)."""
    from scripts.point_noise_report import noise_rows

    noisy = _exp("noise2-onpoint-s52", "onpoint", 52, 15.0, "success")
    noisy["revs"][0]["data"]["params"]["params.yaml"]["data"]["datasets"] = {
        "synthetic": {"points": {"noise_seconds": 2.0}}}
    reference = _exp("noise0-fully_supervised-s52", "fully_supervised", 52, 50.0, "success")
    baseline = _exp("main", "onpoint", 52, 20.0)["revs"][0]
    baseline["experiments"] = [noisy, reference, _exp("noise1-onpoint-s52", "onpoint", 52, 9.0, "queued")]
    rows = noise_rows([baseline])
    assert sorted(rows) == [("fully_supervised", 0.0), ("onpoint", 2.0)]
    assert rows[("onpoint", 2.0)][0]["avg_0.1_0.7"] == 15.0
