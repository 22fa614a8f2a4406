"""HR-Pro style teacher and the generic proposal code (onpoint_core/teachers/{hrpro,proposals}.py).

Training tests use a tiny synthetic set made here: each class has a fixed random direction in
feature space that is added inside planted actions, on top of Gaussian noise; the teacher only
gets features + points (never the planted segments). Proposal and seed tests use hand-built
inputs whose expected output follows from the rules by construction.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from onpoint_core.config import HRProDetect, HRProProposals, HRProPseudo, HRProTrain, ParamsError, build
from onpoint_core.errors import OnPointError
from onpoint_core.teachers.base import TeacherVideo
from onpoint_core.teachers.hrpro import HRProTeacher, select_seeds
from onpoint_core.teachers.proposals import (cas_proposals, find_runs, nms, outer_inner_contrast,
                                             reliable_proposals, threshold_grid, upsample)

REPO = Path(__file__).resolve().parents[1]
C, D = 3, 32


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from a second thread, and on a busy 2-core machine OpenMP
    barriers make 2 threads ~10x slower than 1; restore the caller's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


RAW = yaml.safe_load((REPO / "params.yaml").read_text())
PROPOSALS = build(HRProProposals, RAW["hrpro"]["proposals"], "params.yaml", "hrpro.proposals")
PSEUDO = build(HRProPseudo, RAW["hrpro"]["pseudo"], "params.yaml", "hrpro.pseudo")


def base_cfg(**overrides):
    """params.yaml's HR-Pro training settings (paper recipe), made tiny, with `overrides`."""
    cfg = {**RAW["hrpro"]["train"], **RAW["hrpro"]["recipes"]["paper"]}
    cfg.update(embed_dim=32, iterations=60, videos_per_iteration=4, lr=1e-3)
    cfg.update(overrides)
    return build(HRProTrain, cfg, "params.yaml", "hrpro.train")


def detect_cfg(**overrides):
    return build(HRProDetect, {**RAW["hrpro"]["detect"], "video_class_ratio": 0.0, **overrides},
                 "params.yaml", "hrpro.detect")


def make_video(rng, directions, vid, n_steps):
    """Noise plus class evidence in planted actions; points near the action middles."""
    feats = rng.normal(0.0, 1.0, size=(n_steps, D)).astype(np.float32)
    segments, steps, labels = [], [], []
    t = int(rng.integers(5, 20))
    while True:
        length = int(rng.integers(8, 20))
        if t + length >= n_steps - 5:
            break
        c = int(rng.integers(C))
        feats[t:t + length] += 2.0 * directions[c]
        segments.append((c, t, t + length))
        steps.append(t + length // 2 + int(rng.integers(-2, 3)))
        labels.append(c)
        t += length + int(rng.integers(10, 30))
    video = TeacherVideo(vid, feats, np.asarray(steps, np.int64), np.asarray(labels, np.int64))
    return video, segments


def make_set(seed, count):
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(C, D)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    directions *= np.sqrt(D) / 3          # evidence comparable to the noise norm
    return [make_video(rng, directions, f"v{i}", int(rng.integers(100, 300))) for i in range(count)]


@pytest.fixture(scope="module")
def trained():
    data = make_set(0, 10)
    train, held_out = data[:8], data[8:]
    teacher = HRProTeacher(C, D, base_cfg())
    history = teacher.fit([v for v, _ in train], progress=False)
    return teacher, history, train, held_out


# ---------------------------------------------------------------------------------------------
# Training


def test_history_rows_and_loss_decreases(trained):
    _, history, _, _ = trained
    assert len(history) == 60
    assert set(history[0]) == {"iteration", "loss", "loss_point", "loss_background", "loss_contrast"}
    assert [r["iteration"] for r in history] == list(range(1, 61))
    loss = np.array([r["loss"] for r in history])
    point = np.array([r["loss_point"] for r in history])
    assert np.isfinite(loss).all()
    assert loss[-10:].mean() < 0.8 * loss[:10].mean()
    assert point[-10:].mean() < 0.8 * point[:10].mean()


def test_cas_shape_range_and_fusion(trained):
    teacher, _, _, held_out = trained
    video, _ = held_out[0]
    cas = teacher.predict_cas(video.features)
    assert cas.shape == (video.n_steps, C + 1)
    assert cas.dtype == np.float32
    assert (cas >= 0).all() and (cas <= 1).all()
    # fused: every class score is at most 1 - bkg
    assert (cas[:, :C] <= 1 - cas[:, C:] + 1e-6).all()


def test_learns_the_planted_classes(trained):
    """On held-out videos, the class argmax inside planted actions beats chance (1/C) clearly,
    and the background score is lower inside actions than outside."""
    teacher, _, _, held_out = trained
    hits, total, bkg_in, bkg_out = 0, 0, [], []
    for video, segments in held_out:
        cas = teacher.predict_cas(video.features)
        inside = np.zeros(video.n_steps, bool)
        for c, s, e in segments:
            hits += int((cas[s:e, :C].argmax(1) == c).sum())
            total += e - s
            inside[s:e] = True
        bkg_in.append(cas[inside, C])
        bkg_out.append(cas[~inside, C])
    assert hits / total > 1 / C + 0.3
    assert np.concatenate(bkg_in).mean() < np.concatenate(bkg_out).mean()


def test_batch_prediction_matches_single_video(trained):
    """Padding a short video next to a long one must not change its CAS (mask works)."""
    teacher, _, train, held_out = trained
    feats = [held_out[0][0].features[:60], train[0][0].features, held_out[1][0].features]
    batched = teacher.predict_cas_batch(feats, 3)
    for f, cas in zip(feats, batched):
        np.testing.assert_allclose(cas, teacher.predict_cas(f), atol=1e-5)


def test_detect_and_pseudo_segments_on_trained_cas(trained):
    teacher, _, train, _ = trained
    video, segments = train[0]
    cas = teacher.predict_cas(video.features)
    dets = teacher.detect(cas, PROPOSALS, detect_cfg())
    assert dets.ndim == 2 and dets.shape[1] == 5 and len(dets)
    assert np.isnan(dets[:, 4]).all()
    assert (np.diff(dets[:, 3]) <= 0).all()
    assert ((dets[:, 1] >= 0) & (dets[:, 2] <= video.n_steps) & (dets[:, 1] < dets[:, 2])).all()
    pseudo = teacher.pseudo_segments(cas, video.point_steps, video.point_labels, PROPOSALS, PSEUDO)
    assert pseudo.shape[1] == 5 and len(pseudo) >= 1
    for label, start, end, _, point in pseudo:
        k = int(np.flatnonzero(video.point_steps == point)[0])
        assert label == video.point_labels[k]
        assert start <= point < end
    # the pseudo segments overlap the planted actions they were grown from
    gt = {int(p): (s, e) for p, (_, s, e) in zip(video.point_steps, segments)}
    overlaps = [min(end, gt[int(p)][1]) - max(start, gt[int(p)][0]) for _, start, end, _, p in pseudo]
    assert np.mean(np.asarray(overlaps) > 0) == 1.0


def test_two_fits_are_bit_identical_and_state_round_trips(tmp_path):
    data = [v for v, _ in make_set(1, 4)]
    cfg = base_cfg(iterations=4, videos_per_iteration=3)
    a, b = HRProTeacher(C, D, cfg), HRProTeacher(C, D, cfg)
    ha, hb = a.fit(data, progress=False), b.fit(data, progress=False)
    assert ha == hb
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["model"].keys() == sb["model"].keys()
    for key in sa["model"]:
        assert torch.equal(sa["model"][key], sb["model"][key]), key
    assert np.array_equal(a.predict_cas(data[0].features), b.predict_cas(data[0].features))
    # prototypes moved from their zero start (initialised from points, then EMA)
    assert sa["model"]["prototypes"].abs().sum() > 0

    path = tmp_path / "teacher.pt"
    torch.save(sa, path)
    restored = HRProTeacher.from_state(torch.load(path, weights_only=True))
    assert np.array_equal(restored.predict_cas(data[1].features), a.predict_cas(data[1].features))
    assert restored.cfg == a.cfg


def test_sub_batches_and_padding_do_not_change_the_loss():
    """Without dropout, one padded batch and three length-sorted sub-batches see the same loss:
    padded steps enter neither attention, seeds nor losses."""
    data = [v for v, _ in make_set(5, 6)]
    cfg = base_cfg(iterations=2, videos_per_iteration=6, attention_dropout=0.0, ffn_dropout=0.0,
                   classifier_dropout=0.0)
    one = HRProTeacher(C, D, cfg).fit(data, progress=False)
    three = HRProTeacher(C, D, cfg.replace(sub_batches=3)).fit(data, progress=False)
    for a, b in zip(one, three):
        for key in ("loss", "loss_point", "loss_background", "loss_contrast"):
            assert np.isclose(a[key], b[key], rtol=1e-4, atol=1e-6), (a, b)


@pytest.mark.parametrize("sub_batches", [1, 2])
def test_prototype_ema_steps_once_per_video_in_batch_order(monkeypatch, sub_batches):
    """HR-Pro moves a prototype once per video, video after video in the order they were drawn:
    p <- (1 - m) p + m * mean(that video's class-c action-seed embeddings). The reference is
    rebuilt from the forward pass's own outputs (hooked), so dropout needs no switching off.
    With sub_batches=2 the length sort puts the videos in the other order: the EMA must not."""
    data = [v for v, _ in make_set(8, 2)]
    cfg = base_cfg(iterations=1, videos_per_iteration=2, prototype_momentum=0.5, sub_batches=sub_batches)
    teacher = HRProTeacher(C, D, cfg)
    start = torch.randn(C, 32, generator=torch.Generator().manual_seed(0))
    teacher.model.prototypes.copy_(start)                  # not zero: fit skips the point initialisation
    drawn, forwards = [], []
    crop = teacher._crop
    monkeypatch.setattr(teacher, "_crop", lambda f, *a: (drawn.append(f.shape[0]), crop(f, *a))[1])
    hook = teacher.model.register_forward_hook(lambda m, args, out: forwards.append((args[1], out[0], out[1])))
    teacher.fit(data, progress=False)
    hook.remove()
    assert len(forwards) == sub_batches
    by_length = {v.n_steps: v for v in data}
    means = {}                                             # video length -> {class: seed mean}
    for valid, cas, emb in forwards:
        for row in range(valid.shape[0]):
            n = int(valid[row].sum())
            video = by_length[n]
            act, _ = select_seeds(cas[row, :n, -1].detach().numpy(), video.point_steps, video.point_labels, C,
                                  cfg.bkg_seed_threshold, cfg.action_seed_threshold)
            means[n] = {c: (emb[row, :n][torch.as_tensor(act[:, c])].detach(), int(act[:, c].sum()))
                        for c in range(C) if act[:, c].any()}
    assert drawn[0] > drawn[1]                             # drawn first, but sorted second by length
    assert set(means[drawn[0]]) & set(means[drawn[1]])    # a class seeded in both videos

    def sequential(order):
        p = start.clone()
        for n in order:
            for c, (e, _) in means[n].items():
                p[c] = (1 - 0.5) * p[c] + 0.5 * e.mean(0)
        return p

    expected = sequential(drawn)
    got = teacher.model.prototypes
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, sequential(drawn[::-1]), atol=1e-3)        # the order matters
    batch_mean = start.clone()
    for c in set(means[drawn[0]]) | set(means[drawn[1]]):
        seeds = torch.cat([means[n][c][0] for n in drawn if c in means[n]])
        batch_mean[c] = 0.5 * start[c] + 0.5 * seeds.mean(0)
    assert not torch.allclose(got, batch_mean, atol=1e-3)                     # not one step per batch


def test_fit_does_not_touch_the_callers_rng():
    data = [v for v, _ in make_set(2, 2)]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    HRProTeacher(C, D, base_cfg(iterations=1, videos_per_iteration=2)).fit(data, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_log_callback_and_projection_of_other_feature_dims():
    data = [v for v, _ in make_set(3, 2)]
    rows = []
    teacher = HRProTeacher(C, D, base_cfg(embed_dim=16, iterations=2, videos_per_iteration=2))
    history = teacher.fit(data, log=rows.append, progress=False)
    assert rows == history and len(rows) == 2
    assert teacher.predict_cas(data[0].features).shape == (data[0].n_steps, C + 1)


def test_bad_inputs_are_onpoint_errors():
    with pytest.raises(ParamsError, match="instance_refinement"):
        HRProTeacher(C, D, base_cfg(instance_refinement=True))
    with pytest.raises(ParamsError, match="embed_dim"):
        HRProTeacher(C, D, base_cfg(embed_dim=30))
    teacher = HRProTeacher(C, D, base_cfg(iterations=1))
    good = make_set(4, 1)[0][0]
    wrong_dim = TeacherVideo("bad_dim", np.zeros((50, D + 1), np.float32), np.array([3]), np.array([0]))
    with pytest.raises(OnPointError, match="video bad_dim: .*T x 32"):
        teacher.fit([good, wrong_dim], progress=False)
    outside = TeacherVideo("late_point", np.zeros((50, D), np.float32), np.array([50]), np.array([0]))
    with pytest.raises(OnPointError, match="video late_point: point steps"):
        teacher.fit([outside], progress=False)
    bad_label = TeacherVideo("bad_label", np.zeros((50, D), np.float32), np.array([5]), np.array([C]))
    with pytest.raises(OnPointError, match="video bad_label: point labels"):
        teacher.fit([bad_label], progress=False)
    with pytest.raises(OnPointError, match="CAS must be"):
        teacher.detect(np.zeros((10, C)), PROPOSALS, detect_cfg())


# ---------------------------------------------------------------------------------------------
# Seeds


def test_seed_selection_on_a_hand_built_background_score():
    bkg = np.full(30, 0.5)
    bkg[[0, 2]] = 0.97                  # left of the first point: last high step is 2 -> seeds 0..2
    bkg[1] = 0.2
    bkg[6:10] = 0.05                    # grows left from the point at 10 down to 6
    bkg[11] = 0.05                      # grows right from 10 by one step (12 is 0.3)
    bkg[12] = 0.3
    bkg[[13, 15]] = [0.96, 0.97]        # between the points: first..last high step -> seeds 13..15
    bkg[17:20] = [0.08, 0.02, 0.02]     # grows left from the point at 20 down to 17
    bkg[21] = 0.05                      # grows right from 20 by one step
    bkg[22:30] = 0.9
    bkg[25] = 0.93                      # right of the last point: no high step -> from the argmax 25
    act, seed = select_seeds(bkg, [10, 20], [1, 0], num_classes=2)
    assert np.flatnonzero(seed).tolist() == [0, 1, 2, 13, 14, 15, 25, 26, 27, 28, 29]
    assert np.flatnonzero(act[:, 1]).tolist() == [6, 7, 8, 9, 10, 11]
    assert np.flatnonzero(act[:, 0]).tolist() == [17, 18, 19, 20, 21]


def test_seed_selection_single_high_step_between_points_keeps_the_argmax():
    bkg = np.array([0.1, 0.1, 0.05, 0.6, 0.8, 0.7, 0.05, 0.1, 0.5])
    act, seed = select_seeds(bkg, [1, 7], [0, 0], num_classes=1)
    # no step >= 0.95 between the points: only the argmax (4) is background
    assert seed[2:7].tolist() == [False, False, True, False, False]
    # left of the first point: no high step, argmax of bkg[:1] is 0 -> seed 0; right: from 8 on
    assert seed[0] and seed[8]
    assert np.flatnonzero(act[:, 0]).tolist() == [1, 2, 6, 7]


# ---------------------------------------------------------------------------------------------
# Proposals


def test_threshold_grid_includes_the_stop():
    assert np.allclose(threshold_grid([0.0, 0.225, 0.025]), np.arange(10) * 0.025)
    assert len(threshold_grid([0.5, 0.7, 0.025])) == 9


def test_upsample_is_linear_and_holds_the_end():
    # centre-aligned: sub-step centres sit at step positions -0.25, 0.25, 0.75, 1.25, 1.75, 2.25
    up = upsample(np.array([0.0, 1.0, 0.0]), 2)
    assert np.allclose(up, [0.0, 0.25, 0.75, 0.75, 0.25, 0.0])


def test_find_runs_per_column():
    mask = np.array([[1, 0], [1, 1], [0, 1], [1, 1], [1, 0]], bool)
    col, start, end = find_runs(mask)
    assert col.tolist() == [0, 0, 1]
    assert start.tolist() == [0, 3, 1]
    assert end.tolist() == [2, 5, 4]
    assert [x.size for x in find_runs(np.zeros(4, bool))] == [0, 0, 0]


def test_outer_inner_contrast_by_hand():
    signal = np.array([0, 0.5, 1, 1, 1, 1, 0.3, 0, 0, 0.9])
    # run [2, 6): length 4, flanks of ceil(0.25 * 4) = 1 step: signal[1] = 0.5, signal[6] = 0.3
    # run [9, 10): length 1, left flank signal[8] = 0, right flank outside the video
    score = outer_inner_contrast(signal, [0, 0], [2, 9], [6, 10], outer=0.25)
    assert np.allclose(score, [1 - 0.4, 0.9])


def test_cas_proposals_known_runs_without_upsampling():
    cas = np.zeros((20, 2))
    cas[3:8, 0] = 0.9                   # one run of class 0 for every threshold below 0.9
    cas[12:15, 1] = 0.3                 # class 1 run only above thresholds < 0.3
    props = cas_proposals(cas, classes=[0, 1], cas_thresholds=[0.1, 0.5], factor=1)
    got = {(int(l), s, e) for l, s, e, _ in props}
    assert got == {(0, 3.0, 8.0), (1, 12.0, 15.0)}   # the two thresholds' duplicates merged
    score = {int(l): sc for l, _, _, sc in props}
    assert np.isclose(score[0], 0.9)   # flanks are zero
    assert np.isclose(score[1], 0.3)


def test_cas_proposals_upsampled_boundaries_and_actionness():
    cas = np.zeros((20, 2))
    cas[3:8, 0] = 0.9
    # x2, centre-aligned: sub-steps 5 and 16 (at step positions 2.25, 7.75) get 0.225 < 0.5,
    # sub-steps 6..15 get >= 0.675 -> [6 / 2, 16 / 2) = [3, 8), the true span of steps 3..7
    props = cas_proposals(cas, classes=[0], cas_thresholds=[0.5], factor=2)
    assert props.shape == (1, 4)
    assert props[0, :3].tolist() == [0.0, 3.0, 8.0]
    # class-agnostic runs come out for every requested class
    actionness = np.zeros(20)
    actionness[10:14] = 0.8
    props = cas_proposals(cas, actionness, classes=[0, 1], actionness_thresholds=[0.6], factor=1)
    assert sorted(map(tuple, props[:, :3].tolist())) == [(0.0, 10.0, 14.0), (1.0, 10.0, 14.0)]


def test_cas_runs_are_scored_on_the_cas_zeroed_below_their_threshold():
    """As HR-Pro: a run found at CAS threshold th is scored on the CAS with every value below th
    set to 0, so low flanks count as 0 while a neighbouring run above th still counts."""
    cas = np.zeros((24, 1))
    cas[1], cas[2:6], cas[6] = 0.4, 0.9, 0.4          # A = [2, 6) at 0.5, inside [1, 7) at 0.3
    cas[10], cas[11], cas[12:20], cas[20] = 0.6, 0.2, 0.7, 0.2    # B = [12, 20), a 0.6 run two steps left
    props = cas_proposals(cas, classes=[0], cas_thresholds=[0.3, 0.5], factor=1)
    got = {(s, e): sc for _, s, e, sc in props}
    assert set(got) == {(1.0, 7.0), (2.0, 6.0), (10.0, 11.0), (12.0, 20.0)}
    # [1, 7) at 0.3: flanks of 2 -> step 0 (the video starts at 0) and steps 7, 8: all zero
    assert got[(1.0, 7.0)] == pytest.approx((2 * 0.4 + 4 * 0.9) / 6)
    # A at 0.5: its flanks (0.4, 0.4) are below 0.5 -> 0; on the raw CAS it would score 0.9 - 0.4
    assert got[(2.0, 6.0)] == pytest.approx(0.9)
    # [10, 11) at both thresholds: the flank 0.2 is below both -> 0
    assert got[(10.0, 11.0)] == pytest.approx(0.6)
    # B: flanks 0.6 (kept: above both thresholds), 0.2 -> 0, 0.2 -> 0, 0 -> outer 0.6 / 4
    assert got[(12.0, 20.0)] == pytest.approx(0.7 - 0.15)
    ranked = [(s, e) for _, s, e, _ in props[np.argsort(-props[:, 3], kind="stable")]]
    assert ranked == [(2.0, 6.0), (1.0, 7.0), (10.0, 11.0), (12.0, 20.0)]   # raw CAS: A (0.5) below [1, 7)


def test_duplicate_runs_keep_their_best_score_and_actionness_runs_use_the_raw_cas():
    """The same run found at several thresholds scores differently (each on its own zeroed CAS):
    the best (highest-threshold) score is kept. Runs of the class-agnostic actionness are scored
    on the raw class CAS, as HR-Pro does."""
    cas = np.zeros((16, 1))
    cas[1], cas[2], cas[3:8], cas[8] = 0.4, 0.1, 0.9, 0.1   # D = [3, 8), flanks of 2 steps
    props = cas_proposals(cas, classes=[0], cas_thresholds=[0.3, 0.5], factor=1)
    # D at 0.5: flanks 0.4, 0.1, 0.1, 0 all zeroed -> 0.9; at 0.3 the 0.4 stays -> 0.9 - 0.1
    np.testing.assert_allclose(props, [[0, 1, 2, 0.4], [0, 3, 8, 0.9]])
    actionness = np.zeros(16)
    actionness[3:8] = 0.8
    raw = cas_proposals(cas, actionness, classes=[0], actionness_thresholds=[0.6], factor=1)
    np.testing.assert_allclose(raw, [[0, 3, 8, 0.9 - (0.4 + 0.1 + 0.1 + 0.0) / 4]])
    both = cas_proposals(cas, actionness, classes=[0], cas_thresholds=[0.3, 0.5],
                         actionness_thresholds=[0.6], factor=1)
    np.testing.assert_allclose(both, props)


def test_hard_and_soft_nms_are_class_wise():
    props = np.array([[0, 0, 10, 0.9], [0, 1, 10, 0.8], [1, 0, 10, 0.7], [0, 20, 30, 0.5]])
    kept = nms(props, iou_threshold=0.5)
    assert kept[:, :4].tolist() == [[0, 0, 10, 0.9], [1, 0, 10, 0.7], [0, 20, 30, 0.5]]
    soft = nms(props, sigma=0.3)
    # [1, 10) vs [0, 10): tIoU 0.9 -> 0.8 * exp(-0.81 / 0.3); other class untouched
    assert len(soft) == 4
    decayed = soft[(soft[:, 0] == 0) & (soft[:, 1] == 1)][0, 3]
    assert np.isclose(decayed, 0.8 * np.exp(-0.81 / 0.3))
    assert soft[soft[:, 0] == 1][0, 3] == 0.7


def test_reliable_proposal_prefers_not_crossing_neighbours():
    props = np.array([
        [0, 5, 25, 0.9],     # contains both points 10 and 20: crosses
        [0, 8, 15, 0.5],     # contains 10 only
        [0, 18, 24, 0.4],    # contains 20 only
        [1, 12, 22, 0.99],   # wrong class
        [0, 38, 50, 0.7],    # contains 40 and 45 (no non-crossing alternative)
        [0, 58, 60, 0.8],    # ends at 60: does not contain 60
    ])
    steps = np.array([10, 20, 40, 45, 60])
    labels = np.array([0, 0, 0, 0, 0])
    rows = reliable_proposals(props, steps, labels)
    assert rows.tolist() == [
        [0, 8, 15, 0.5, 10],
        [0, 18, 24, 0.4, 20],
        [0, 38, 50, 0.7, 40],
        [0, 38, 50, 0.7, 45],
    ]
    # among non-crossing candidates the higher score wins
    more = np.vstack([props, [0, 9, 12, 0.6]])
    assert reliable_proposals(more, steps[:2], labels[:2])[0].tolist() == [0, 9, 12, 0.6, 10]
    # a neighbour of another class counts as a neighbour too
    assert reliable_proposals(props, [10, 12], [0, 1])[0].tolist() == [0, 5, 25, 0.9, 10]


def test_no_pseudo_segment_covers_most_of_its_video():
    """Two points of one class with nothing between them that stays inside: the lowest CAS
    threshold (0.0) yields a run over the whole video, which used to be picked for both."""
    teacher = HRProTeacher(2, D, base_cfg(iterations=1))
    cas = np.zeros((100, 3))
    cas[:, 0] = 0.02                    # class 0 above 0 everywhere: one whole-video run at threshold 0.0
    cas[:, 2] = 0.9
    cas[30:40, 0], cas[30:40, 2] = 0.8, 0.1     # a real action around the first point
    rows = teacher.pseudo_segments(cas, [35, 70], [0, 0], PROPOSALS, PSEUDO)
    longest = (rows[:, 2] - rows[:, 1]).max() if len(rows) else 0
    assert longest <= PSEUDO.max_fraction_of_video * len(cas)
    assert rows[:, 4].tolist() == [35]             # the second point has no short run: no segment
    assert abs(rows[0, 1] - 30) <= 1 and abs(rows[0, 2] - 40) <= 1
    # without the cap the whole-video run comes back
    whole = teacher.pseudo_segments(cas, [35, 70], [0, 0], PROPOSALS, PSEUDO.replace(max_fraction_of_video=1.0))
    assert (whole[:, 2] - whole[:, 1]).max() >= 0.99 * len(cas)


def test_teacher_pseudo_segments_on_hand_built_cas():
    teacher = HRProTeacher(2, D, base_cfg(iterations=1))
    cas = np.zeros((40, 3))
    cas[:, 2] = 0.9                     # background everywhere ...
    cas[5:12, 0] = 0.8                  # ... except one class-0 action
    cas[5:12, 2] = 0.1
    cas[25:30, 1] = 0.7                 # and one class-1 action
    cas[25:30, 2] = 0.2
    rows = teacher.pseudo_segments(cas, [8, 27, 35], [0, 1, 1], PROPOSALS, PSEUDO)
    assert rows[:, 4].tolist() == [8, 27]        # nothing of class 1 contains step 35
    assert rows[:, 0].tolist() == [0, 1]
    assert abs(rows[0, 1] - 5) <= 0.5 and abs(rows[0, 2] - 12) <= 0.5
    assert abs(rows[1, 1] - 25) <= 0.5 and abs(rows[1, 2] - 30) <= 0.5
    dets = teacher.detect(cas, PROPOSALS, detect_cfg())
    top = dets[dets[:, 0] == 0][0]
    assert abs(top[1] - 5) <= 0.5 and abs(top[2] - 12) <= 0.5


def test_detect_keeps_only_classes_the_video_score_supports():
    teacher = HRProTeacher(3, D, base_cfg(iterations=1))
    cas = np.zeros((80, 4))
    cas[:, 3] = 0.9
    cas[10:30, 0], cas[10:30, 3] = 0.8, 0.1       # strong class 0
    cas[50:60, 1], cas[50:60, 3] = 0.3, 0.6       # weak class 1
    scores = teacher.video_scores(cas, detect_cfg())
    assert scores[0] > scores[1] > scores[2]
    assert set(teacher.detect(cas, PROPOSALS, detect_cfg(), class_ratio=0.0)[:, 0].astype(int)) == {0, 1, 2}
    assert set(teacher.detect(cas, PROPOSALS, detect_cfg(), class_ratio=0.9)[:, 0].astype(int)) == {0}
    with pytest.raises(OnPointError, match="auto"):
        teacher.detect(cas, PROPOSALS, detect_cfg(video_class_ratio="auto"))
    with pytest.raises(ParamsError, match="hrpro.detect.video_class_ratio"):
        detect_cfg(video_class_ratio=1.5)


# ---------------------------------------------------------------------------------------------
# Crash-safe resume


class _Crash(Exception):
    pass


def _crash_at(k):
    def log(row):
        if row["iteration"] == k:
            raise _Crash(k)
    return log


def test_interrupted_fit_resumes_bit_identically(tmp_path):
    """Dropout (torch RNG) and random crops + epoch permutations (numpy RNG) all run, so the resumed
    fit only matches if every RNG, the batch queue, Adam and the prototypes were restored. The crash
    at iteration 5 comes after the checkpoint at 4, so iteration 5 is redone from the file."""
    data = [v for v, _ in make_set(6, 3)]
    cfg = base_cfg(iterations=7, videos_per_iteration=2, max_train_steps=90)
    reference = HRProTeacher(C, D, cfg)
    expected = reference.fit(data, progress=False)

    path = tmp_path / "resume" / "hrpro.pt"
    with pytest.raises(_Crash):
        HRProTeacher(C, D, cfg).fit(data, log=_crash_at(5), progress=False, checkpoint=path, checkpoint_every=2)
    saved = torch.load(path, weights_only=True)          # plain types + tensors only
    assert saved["iteration"] == 4 and saved["history"] == expected[:4]
    assert not list(path.parent.glob(".*tmp*"))           # no temp file left behind

    rows = []
    resumed = HRProTeacher(C, D, cfg)
    history = resumed.fit(data, log=rows.append, progress=False, checkpoint=path, checkpoint_every=2)
    assert history == expected
    assert rows == expected[4:]                           # log sees only the rows run in this call
    sa, sb = reference.state_dict(), resumed.state_dict()
    assert sa["model"].keys() == sb["model"].keys()
    for key in sa["model"]:
        assert torch.equal(sa["model"][key], sb["model"][key]), key
    assert not path.exists()                              # removed once training completed


def test_resume_file_from_other_inputs_is_refused(tmp_path):
    data = [v for v, _ in make_set(7, 3)]
    cfg = base_cfg(iterations=4, videos_per_iteration=2)
    path = tmp_path / "hrpro.pt"
    with pytest.raises(_Crash):
        HRProTeacher(C, D, cfg).fit(data, log=_crash_at(3), progress=False, checkpoint=path, checkpoint_every=2)
    assert path.exists()
    with pytest.raises(OnPointError, match=r"hrpro\.pt: .*other inputs .*cfg"):
        HRProTeacher(C, D, cfg.replace(lr=2e-3)).fit(data, progress=False, checkpoint=path, checkpoint_every=2)
    with pytest.raises(OnPointError, match=r"other inputs .*video_ids"):
        HRProTeacher(C, D, cfg).fit(data[:2] + [data[0]], progress=False, checkpoint=path, checkpoint_every=2)
    assert path.exists()                                  # a refused file is left for the user to judge
