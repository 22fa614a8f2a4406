"""Student training targets (docs/method.md 4) checked on cases derived by hand.

Time convention (onpoint_core/student/targets.py): step t covers [t, t+1) in step units, "now" at
step t is t+1, and anchor j of length L_j spans [now - L_j, now). Every expected value below is
worked out in a comment from that convention and the rules of docs/method.md 4, not read off the code.
"""

import math

import numpy as np
import pytest

from onpoint_core.student.targets import (anchor_spans, future_targets, instance_targets, point_targets,
                                         resample_cas)

ANCHORS = [2, 4, 8]          # anchor index 0, 1, 2; 2 is the smallest, 8 the largest
C = 3                         # action classes 0..2, background = index 3
BACKGROUND = np.array([0, 0, 0, 1], np.float32)
SMALL, MID, LARGE = 0, 1, 2


def _instance(num_steps, segments, labels):
    return instance_targets(num_steps, ANCHORS, np.array(segments, float).reshape(-1, 2), np.array(labels), C)


def test_iou_at_least_half_is_positive_and_its_regression():
    # Segment [2, 5), class 1, length 3. At t = 5, now = 6:
    #   L=2 [4, 6): inter [4, 5) = 1, union 2 + 3 - 1 = 4, IoU 0.25 -> not >= 0.5; the smallest
    #               anchor does not contain [2, 5) either -> negative
    #   L=4 [2, 6): inter 3, union 4, IoU 0.75 -> positive, class 1
    #               z0 = (end - now) / L = (5 - 6) / 4 = -0.25, z1 = log(max(1, 3) / 4) = log(0.75)
    #   L=8 [-2, 6): inter 3, union 8, IoU 0.375; largest anchor not inside the segment -> negative
    classes, regression, positive = _instance(12, [[2, 5]], [1])
    assert positive[5].tolist() == [False, True, False]
    np.testing.assert_array_equal(classes[5, MID], [0, 1, 0, 0])
    np.testing.assert_allclose(regression[5, MID], [-0.25, math.log(0.75)], rtol=1e-6)
    for anchor in (SMALL, LARGE):
        np.testing.assert_array_equal(classes[5, anchor], BACKGROUND)
        np.testing.assert_array_equal(regression[5, anchor], [0, 0])


def test_iou_exactly_half_is_positive_just_below_is_not():
    # Segment [0, 4), class 2. Largest anchor L=8:
    #   t = 7, now = 8: [0, 8) inter 4, union 8 -> IoU exactly 0.5 -> positive (>= 0.5)
    #                   z0 = (4 - 8) / 8 = -0.5, z1 = log(4 / 8)
    #   t = 8, now = 9: [1, 9) inter 3, union 9 -> IoU 1/3 -> negative (not inside the segment either)
    classes, regression, positive = _instance(12, [[0, 4]], [2])
    assert positive[7, LARGE] and not positive[8, LARGE]
    np.testing.assert_array_equal(classes[7, LARGE], [0, 0, 1, 0])
    np.testing.assert_allclose(regression[7, LARGE], [-0.5, math.log(0.5)], rtol=1e-6)
    np.testing.assert_array_equal(classes[8, LARGE], BACKGROUND)


def test_largest_anchor_inside_a_running_segment_fires_before_the_end():
    # Segment [0, 20), class 2: still running at t = 9 (now = 10), taken with its full extent.
    #   L=8 [2, 10) lies inside [0, 20): IoU 8/20 = 0.4 < 0.5, positive only by the "largest anchor
    #               inside an ongoing action" rule. z0 = (20 - 10) / 8 = 1.25 > 0: the action ends
    #               in the future, which is what early detection learns. z1 = log(20 / 8).
    #   L=4 [6, 10): IoU 4/20 = 0.2, not the largest -> background
    #   L=2 [8, 10): IoU 0.1, does not contain the segment -> background
    classes, regression, positive = _instance(30, [[0, 20]], [2])
    assert positive[9].tolist() == [False, False, True]
    np.testing.assert_array_equal(classes[9, LARGE], [0, 0, 1, 0])
    np.testing.assert_allclose(regression[9, LARGE], [1.25, math.log(20 / 8)], rtol=1e-6)
    assert regression[9, LARGE, 0] > 0
    # Only once [now - 8, now) sticks out of [0, 20) does the rule stop: t = 20 (now = 21) gives
    # [13, 21); IoU 7/21 < 0.5 -> negative. At t = 19 (now = 20) [12, 20) is inside: z0 = 0.
    assert not positive[20, LARGE]
    assert positive[19, LARGE] and regression[19, LARGE, 0] == 0.0
    # t = 6 (now = 7): [-1, 7) starts before the segment (and the video): not inside; IoU 7/21 -> negative
    assert not positive[6, LARGE]


def test_smallest_anchor_containing_a_short_segment():
    # Segment [5.25, 5.75), class 0, length 0.5 (shorter than any anchor).
    #   t = 5 (now = 6): L=2 [4, 6) contains it: positive. IoU = 0.5 / 2 = 0.25, so only the
    #                    containment rule makes it positive. z0 = (5.75 - 6) / 2 = -0.125,
    #                    z1 = log(max(1, 0.5) / 2) = log(0.5)
    #   t = 6 (now = 7): L=2 [5, 7) still contains it: z0 = (5.75 - 7) / 2 = -0.625
    #   t = 4 (now = 5): L=2 [3, 5) ends before the segment -> negative
    #   L=4 [2, 6) at t = 5 contains it too, but only the smallest anchor has that rule; IoU 0.125 -> negative
    classes, regression, positive = _instance(10, [[5.25, 5.75]], [0])
    assert positive[5].tolist() == [True, False, False]
    np.testing.assert_array_equal(classes[5, SMALL], [1, 0, 0, 0])
    np.testing.assert_allclose(regression[5, SMALL], [-0.125, math.log(0.5)], rtol=1e-6)
    assert positive[6, SMALL]
    np.testing.assert_allclose(regression[6, SMALL], [-0.625, math.log(0.5)], rtol=1e-6)
    assert not positive[4, SMALL]


def test_overlapping_segments_of_two_classes_share_the_target():
    # A = [0, 4) class 0, B = [1, 4) class 1. At t = 3 (now = 4):
    #   L=2 [2, 4): A: inter 2, union 4 -> 0.5; B: inter 2, union 3 -> 2/3. Both match ->
    #               multi-hot {0, 1} normalised to 0.5 / 0.5. Regression from the best IoU (B):
    #               z0 = (4 - 4) / 2 = 0, z1 = log(3 / 2)
    #   L=4 [0, 4): A: IoU 1; B: inter 3, union 4 -> 0.75. Both match, best A: z0 = 0, z1 = log(4/4) = 0
    #   L=8 [-4, 4): A: 4/8 = 0.5 matches, B: 3/8 does not -> class 0 alone; z0 = 0, z1 = log(4/8)
    classes, regression, positive = _instance(8, [[0, 4], [1, 4]], [0, 1])
    assert positive[3].all()
    np.testing.assert_allclose(classes[3, SMALL], [0.5, 0.5, 0, 0])
    np.testing.assert_allclose(classes[3, MID], [0.5, 0.5, 0, 0])
    np.testing.assert_allclose(classes[3, LARGE], [1, 0, 0, 0])
    np.testing.assert_allclose(regression[3, SMALL], [0, math.log(1.5)], atol=1e-7)
    np.testing.assert_allclose(regression[3, MID], [0, 0], atol=1e-7)
    np.testing.assert_allclose(regression[3, LARGE], [0, math.log(0.5)], atol=1e-7)
    # every row of the class target is a distribution
    np.testing.assert_allclose(classes.sum(-1), 1.0, rtol=1e-6)


def test_two_segments_of_one_class_stay_one_hot():
    # A = [0, 4) and B = [0.5, 4), both class 2; L=4 at t = 3 ([0, 4)) matches both (IoU 1 and
    # 3.5/4): multi-hot over classes is {2}, so the target is 1.0 on class 2, not 2.0 or 0.5.
    classes, _, positive = _instance(8, [[0, 4], [0.5, 4]], [2, 2])
    assert positive[3, MID]
    np.testing.assert_array_equal(classes[3, MID], [0, 0, 1, 0])


def test_background_when_nothing_matches_and_without_segments():
    # Segment [20, 24) lies after the first 10 steps: no anchor of steps 0..9 reaches it.
    classes, regression, positive = _instance(10, [[20, 24]], [1])
    assert not positive.any()
    np.testing.assert_array_equal(classes, np.broadcast_to(BACKGROUND, (10, 3, 4)))
    np.testing.assert_array_equal(regression, 0)

    classes, regression, positive = instance_targets(5, ANCHORS, np.zeros((0, 2)), np.zeros(0, int), C)
    assert classes.shape == (5, 3, 4) and regression.shape == (5, 3, 2) and positive.shape == (5, 3)
    assert classes.dtype == np.float32 and regression.dtype == np.float32 and positive.dtype == bool
    np.testing.assert_array_equal(classes, np.broadcast_to(BACKGROUND, (5, 3, 4)))
    np.testing.assert_array_equal(regression, 0)
    assert not positive.any()


def _instance_reference(num_steps, anchors, segments, labels, num_classes):
    """docs/method.md 4 written out one (step, anchor) at a time, for comparison on random cases."""
    classes = np.zeros((num_steps, len(anchors), num_classes + 1))
    regression = np.zeros((num_steps, len(anchors), 2))
    positive = np.zeros((num_steps, len(anchors)), bool)
    for t in range(num_steps):
        now = t + 1.0
        for j, length in enumerate(anchors):
            a_s, a_e = now - length, now
            best, best_iou, matched = None, -1.0, set()
            for (s, e), c in zip(segments, labels):
                inter = max(0.0, min(a_e, e) - max(a_s, s))
                iou = inter / (length + (e - s) - inter)
                ok = iou >= 0.5
                ok |= length == max(anchors) and s <= a_s and a_e <= e
                ok |= length == min(anchors) and a_s <= s and e <= a_e and e > s
                if ok:
                    matched.add(int(c))
                    if iou > best_iou:
                        best, best_iou = (s, e), iou
            if matched:
                positive[t, j] = True
                for c in matched:
                    classes[t, j, c] = 1.0 / len(matched)
                regression[t, j] = [(best[1] - now) / length, math.log(max(1.0, best[1] - best[0]) / length)]
            else:
                classes[t, j, -1] = 1.0
    return classes, regression, positive


def test_instance_targets_match_a_step_by_step_reference():
    rng = np.random.default_rng(3)
    anchors = [1, 3, 6, 12]
    starts = np.sort(rng.uniform(0, 50, 14))
    segments = np.stack([starts, starts + rng.uniform(0.3, 15, 14)], 1)
    labels = rng.integers(0, 4, 14)
    got = instance_targets(60, anchors, segments, labels, 4)
    want = _instance_reference(60, anchors, segments, labels, 4)
    np.testing.assert_array_equal(got[2], want[2])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)
    assert got[2].any() and not got[2].all()      # the case exercises both outcomes


def _points(num_steps, points, labels):
    return point_targets(num_steps, ANCHORS, np.array(points, float), np.array(labels), C)


def test_point_class_and_offset_inside_the_anchor():
    # Point at 5.5, class 1; the offset is (centre - point) / L, signed. At t = 5 (now = 6):
    #   L=2 [4, 6), centre 5: offset (5 - 5.5) / 2 = -0.25
    #   L=4 [2, 6), centre 4: offset -1.5 / 4 = -0.375
    #   L=8 [-2, 6), centre 2: offset -3.5 / 8 = -0.4375
    # At t = 4 (now = 5) every span ends at 5 <= 5.5: no point -> background C, offset 0
    classes, offset, has_point = _points(10, [5.5], [1])
    assert classes[5].tolist() == [1, 1, 1] and has_point[5].all()
    np.testing.assert_allclose(offset[5], [-0.25, -0.375, -0.4375])
    assert classes[4].tolist() == [C, C, C] and not has_point[4].any()
    np.testing.assert_array_equal(offset[4], 0)
    # At t = 7 (now = 8): L=2 [6, 8) has lost the point; L=4 [4, 8) centre 6 -> 0.5 / 4 = 0.125;
    # L=8 [0, 8) centre 4 -> -1.5 / 8 = -0.1875 (the point is in the newer half)
    assert classes[7].tolist() == [C, 1, 1]
    np.testing.assert_allclose(offset[7], [0, 0.125, -0.1875])
    # the decoded point centre - d * L is the point itself, for every anchor holding it
    a_start, a_end = anchor_spans(10, ANCHORS)
    for t in (5, 7):
        held = has_point[t]
        centre = (a_start[t] + a_end[t]) / 2
        np.testing.assert_allclose((centre - offset[t] * np.asarray(ANCHORS))[held], 5.5, rtol=1e-6)


def test_point_span_is_half_open():
    # Point at exactly 6.0. Anchor spans are [now - L, now):
    #   t = 5 (now = 6): 6.0 is the (excluded) end of every span -> no anchor holds it
    #   t = 6 (now = 7): L=2 [5, 7) holds it; t = 7 (now = 8): L=2 [6, 8) holds it (start included)
    #   t = 8 (now = 9): L=2 [7, 9) does not
    classes, offset, has_point = _points(12, [6.0], [2])
    assert not has_point[5].any()
    assert has_point[6, SMALL] and has_point[7, SMALL] and not has_point[8, SMALL]
    np.testing.assert_allclose(offset[6, SMALL], 0.0)           # centre 6 = point
    np.testing.assert_allclose(offset[7, SMALL], 0.5)           # centre 7, (7 - 6) / 2
    assert classes[7, SMALL] == 2 and classes[8, SMALL] == C


def test_nearest_point_to_the_anchor_centre_wins():
    # Points 3.0 (class 0) and 5.5 (class 2). At t = 5 (now = 6):
    #   L=2 [4, 6), centre 5: only 5.5 inside -> class 2, offset (5 - 5.5) / 2
    #   L=4 [2, 6), centre 4: both inside, distances 1.0 and 1.5 -> class 0, offset (4 - 3) / 4
    #   L=8 [-2, 6), centre 2: distances 1.0 and 3.5 -> class 0, offset (2 - 3) / 8
    # Listing the points in the other order must not change the answer.
    for order in ([0, 1], [1, 0]):
        points, labels = np.array([3.0, 5.5])[order], np.array([0, 2])[order]
        classes, offset, has_point = _points(10, points, labels)
        assert classes[5].tolist() == [2, 0, 0]
        np.testing.assert_allclose(offset[5], [-0.25, 0.25, -0.125])
        assert has_point[5].all()


def test_no_points_gives_background_everywhere():
    classes, offset, has_point = point_targets(6, ANCHORS, np.zeros(0), np.zeros(0, int), C)
    assert classes.shape == (6, 3) and classes.dtype == np.int64
    assert (classes == C).all() and not has_point.any()
    np.testing.assert_array_equal(offset, 0)


@pytest.mark.parametrize("horizon", [1, 3, 50])
def test_future_targets_match_a_loop(horizon):
    rng = np.random.default_rng(horizon)
    prob = rng.uniform(0, 1, (25, 4)).astype(np.float32)      # T x C class probabilities (no background)
    prob[4, 1] = 0.5                     # exactly at the threshold counts as "occurs"
    prob[:, 2] = 0.1                     # a class that never occurs
    got = future_targets(prob, horizon)
    want = np.zeros((25, 4), np.float32)
    for t in range(25):
        future = prob[t + 1: t + 1 + horizon]           # steps t+1..t+horizon
        if len(future):
            want[t] = (future >= 0.5).any(0)
    np.testing.assert_array_equal(got, want)
    assert (got[-1] == 0).all()          # the last step has no future
    if horizon == 1:
        assert got[3, 1] == 1.0          # sees prob[4, 1] = 0.5 one step ahead


@pytest.mark.parametrize("teacher_steps, student_steps", [(7, 16), (16, 7), (10, 25), (1, 4)])
def test_resample_cas_is_np_interp_on_step_centres(teacher_steps, student_steps):
    # Both grids cover the same video: step i of n sits at (i + 0.5) / n of its duration.
    rng = np.random.default_rng(teacher_steps)
    cas = rng.uniform(0, 1, (teacher_steps, 4)).astype(np.float32)
    src = (np.arange(teacher_steps) + 0.5) / teacher_steps
    dst = (np.arange(student_steps) + 0.5) / student_steps
    want = np.stack([np.interp(dst, src, cas[:, k]) for k in range(4)], 1)
    got = resample_cas(cas, teacher_steps, student_steps)
    assert got.shape == (student_steps, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_resample_cas_hand_case_and_identity():
    # 2 teacher steps (centres 0.25, 0.75) onto 4 student steps (centres 0.125, 0.375, 0.625, 0.875):
    # outside the teacher centres the ends are held; inside, 0.375 is 1/4 of the way, 0.625 is 3/4.
    cas = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    np.testing.assert_allclose(resample_cas(cas, 2, 4), [[0, 1], [0.25, 0.75], [0.75, 0.25], [1, 0]], atol=1e-7)
    same = np.random.default_rng(0).uniform(size=(9, 3)).astype(np.float32)
    np.testing.assert_array_equal(resample_cas(same, 9, 9), same)
