"""TSASPC-style teacher: clustering pseudo labels, background stamps, MS-TCN training, outputs.

Data are built here: dense back-to-back actions whose frames carry a planted class pattern plus
noise, one point per instance drawn near the middle (Gaussian, sigma = length / 6).
"""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from onpoint_core.config import ParamsError, TSASPCDetect, TSASPCProposals, TSASPCPseudo, TSASPCTrain, build
from onpoint_core.errors import OnPointError
from onpoint_core.teachers import clustering
from onpoint_core.teachers.base import TeacherVideo
from onpoint_core.teachers.tsaspc import TSASPCTeacher, cluster_loss, confidence_loss, smoothing_loss

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
PSEUDO = build(TSASPCPseudo, PARAMS["tsaspc"]["pseudo"], "params.yaml", "tsaspc.pseudo")

C = 5        # action classes; background is index C
D = 32       # feature dim


def _patterns(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((C, D)) * 0.7          # norm about 4 per class pattern


def _video(rng, patterns, video_id, steps=300, gaps=(), noise=0.8):
    """Back-to-back instances (15..35 steps, class changes at each boundary) filling `steps`.

    `gaps`: (start, length) stretches of pure background inserted at those steps.
    Returns (TeacherVideo, per-frame ground truth with C for background).
    """
    truth = np.full(steps, -1)
    for start, length in gaps:
        truth[start:start + length] = C
    starts, ends, labels = [], [], []
    t, prev = 0, -1
    while t < steps:
        if truth[t] == C:
            t += 1
            continue
        free_end = t
        while free_end < steps and truth[free_end] != C:
            free_end += 1
        length = int(rng.integers(15, 36))
        end = min(t + length, free_end)
        if end - t < 8 and starts and ends[-1] == t:      # too short: extend the previous instance
            truth[t:end] = labels[-1]
            ends[-1] = end
        else:
            c = int(rng.choice([k for k in range(C) if k != prev]))
            truth[t:end] = c
            starts.append(t)
            ends.append(end)
            labels.append(c)
            prev = c
        t = end
    x = noise * rng.standard_normal((steps, D))
    action = truth < C
    x[action] += patterns[truth[action]]
    points = []
    for s, e in zip(starts, ends):
        p = rng.normal((s + e - 1) / 2.0, (e - s) / 6.0)
        points.append(int(np.clip(round(p), s, e - 1)))
    video = TeacherVideo(video_id, x.astype(np.float32), np.asarray(points, np.int64), np.asarray(labels, np.int64))
    return video, truth


def _dataset(n, seed=1, gaps=(), steps=300):
    """n videos of steps, steps + 20, steps + 40, ... (different lengths exercise the padding)."""
    patterns = _patterns()
    rng = np.random.default_rng(seed)
    return [_video(rng, patterns, f"vid{seed}_{i}", steps=steps + 20 * (i % 3), gaps=gaps) for i in range(n)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convolutions run many times faster on one thread than on two busy ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(**over):
    cfg = {"seed": 7, "stages": 2, "layers": 5, "feature_maps": 24, "feature_dim": 48,
           "batch_size": 4, "lr": 5e-3, "epochs": 8, "growth_epochs": 5,
           "input_dropout": 0.1, "dropout": 0.2,
           "loss_weights": {"smoothing": 0.15, "confidence": 0.075, "cluster": 0.15},
           "smoothing_clamp": 16, "background_stamps": True, "background_gap_factor": 1.5}
    cfg.update(over)
    return build(TSASPCTrain, cfg, "test", "tsaspc.train")


# ------------------------------------------------------------------------------ clustering


def _cut_error(cuts, truth):
    """Mean distance of the inner cuts to the nearest true class change."""
    changes = np.flatnonzero(truth[1:] != truth[:-1]) + 1
    inner = cuts[1:-1]
    return float(np.abs(inner[:, None] - changes[None, :]).min(axis=1).mean())


@pytest.mark.parametrize("method", [clustering.energy_cuts, clustering.kmedoids_cuts, clustering.agglomerative_cuts])
def test_each_clustering_finds_planted_boundaries(method):
    for video, truth in _dataset(3, seed=2):
        cuts = method(video.features, video.point_steps)
        assert cuts[0] == 0 and cuts[-1] == video.n_steps and len(cuts) == len(video.point_steps) + 1
        # every stamp inside its own segment
        assert np.all(cuts[:-1] <= video.point_steps) and np.all(video.point_steps < cuts[1:])
        assert _cut_error(cuts, truth) < 2.0


def test_agglomerative_exact_on_piecewise_constant_signal():
    x = np.repeat(np.eye(4) * 5.0, [7, 5, 9, 4], axis=0)        # four blocks, cuts at 7, 12, 21
    cuts = clustering.agglomerative_cuts(x, np.array([3, 9, 15, 23]))
    assert cuts.tolist() == [0, 7, 12, 21, 25]


def test_agreement_is_the_intersection_and_fills_same_class_neighbours():
    # stamps at 2, 8, 14 (classes 0, 1, 1); three partitions of 20 frames
    cuts = np.array([[0, 5, 11, 20],
                     [0, 6, 12, 20],
                     [0, 4, 10, 20]])
    left, right = clustering.agreement_intervals(cuts, np.array([0, 1, 1]))
    # stamp 0: [0, 4); stamp 1: [6, 11) then filled to the median cut 11; stamp 2: [11, 20)
    assert left.tolist() == [0, 6, 11] and right.tolist() == [4, 11, 20]
    labels, owner = clustering.intervals_to_labels(20, left, right, np.array([0, 1, 1]))
    assert labels.tolist() == [0] * 4 + [-100] * 2 + [1] * 14
    assert owner.tolist() == [0] * 4 + [-1] * 2 + [1] * 5 + [2] * 9


def test_ensemble_labels_agree_with_planted_segments():
    labelled = correct = total = 0
    for video, truth in _dataset(4, seed=3):
        info = clustering.pseudo_frame_labels(video.features, video.point_steps, video.point_labels, C,
                                              background=False)
        y = info["labels"]
        m = y != clustering.IGNORE
        assert np.all(y[video.point_steps] == video.point_labels)     # stamps keep their class
        labelled += m.sum()
        correct += (y[m] == truth[m]).sum()
        total += len(y)
    assert labelled / total > 0.6
    assert correct / labelled > 0.9


def test_background_stamp_rule_by_hand():
    # L = 10, each point covers 5 steps each side; free stretches [0,5) [15,15) [25,55) [65,100)
    steps = clustering.background_stamp_steps(np.array([10, 20, 60]), 100, 10.0, 1.5)   # > 5 steps
    assert steps.tolist() == [40, 82]
    steps = clustering.background_stamp_steps(np.array([10, 20, 60]), 100, 10.0, 4.0)   # > 30 steps
    assert steps.tolist() == [82]
    assert clustering.background_stamp_steps(np.zeros(0), 50, None, 1.5).tolist() == [25]


def test_background_frames_labelled_only_with_background_stamps():
    gaps = ((0, 40), (150, 70))              # background at the start and in the middle
    data = _dataset(3, seed=4, gaps=gaps)
    videos = [v for v, _ in data]
    truth = np.concatenate([t for _, t in data])
    reports = {}
    for on in (False, True):
        teacher = TSASPCTeacher(C, D, _cfg(background_stamps=on))
        labels = teacher.make_labels(videos)
        y = np.concatenate([labels[v.video_id] for v in videos])
        reports[on] = teacher.label_report()
        if not on:
            assert not np.any(y == C)
            assert reports[on]["background_stamps_added"] == 0
        else:
            assert reports[on]["background_stamps_added"] >= 2 * len(videos)
            is_bg = y == C
            assert (truth[is_bg] == C).mean() > 0.8                 # background labels are right
            assert is_bg[truth == C].mean() > 0.5                   # and cover most of the background
            m = y != clustering.IGNORE
            assert (y[m] == truth[m]).mean() > 0.85
    assert reports[True]["background_labelled_fraction"] > 0 == reports[False]["background_labelled_fraction"]


def test_label_growth_moves_into_the_gap_by_similarity():
    emb = np.zeros((10, 2))
    emb[:5, 0] = 1.0                          # frames 0-4 look like interval 0
    emb[5:, 1] = 1.0                          # frames 5-9 like interval 1
    left, right = clustering.grow_intervals(emb, np.array([0, 7]), np.array([3, 10]))
    assert right.tolist() == [5, 10] and left.tolist() == [0, 5]


def test_bad_points_are_reported_with_the_video():
    video = TeacherVideo("broken", np.zeros((20, D), np.float32), np.array([3, 25]), np.array([0, 1]))
    with pytest.raises(OnPointError, match="broken.*outside"):
        TSASPCTeacher(C, D, _cfg()).make_labels([video])


# ------------------------------------------------------------------------------ losses


def _logits_from_probs(p):
    """1 x K x T logits whose softmax is p (K x T)."""
    return torch.log(torch.as_tensor(p, dtype=torch.float32)).unsqueeze(0)


def test_confidence_loss_penalises_only_rises_away_from_the_stamp():
    # two stamps: class 0 at t=0, class 1 at t=4; pairs (t, t+1) for t = 0..3 lie between them
    away = torch.zeros(1, 4, dtype=torch.long)
    toward = torch.ones(1, 4, dtype=torch.long)
    ok = torch.ones(1, 4)
    p0 = np.array([0.9, 0.7, 0.5, 0.3, 0.1])              # class 0 falls away from its stamp
    monotone = np.stack([p0, 1 - p0])
    assert float(confidence_loss(_logits_from_probs(monotone), away, ok, toward, ok)) == pytest.approx(0.0, abs=1e-6)
    p0 = np.array([0.9, 0.5, 0.7, 0.3, 0.1])              # class 0 rises again at t=2
    bump = np.stack([p0, 1 - p0])
    expected = (np.log(0.7) - np.log(0.5)) / 4 + (np.log(0.5) - np.log(0.3)) / 4   # rise of 0, fall of 1
    assert float(confidence_loss(_logits_from_probs(bump), away, ok, toward, ok)) == pytest.approx(expected, rel=1e-5)


def test_smoothing_and_cluster_losses():
    mask = torch.ones(1, 1, 5)
    flat = torch.zeros(1, 3, 5)
    assert float(smoothing_loss(flat, mask, 16.0)) == 0.0
    jump = flat.clone()
    jump[0, 0, 3:] = 100.0                                   # a huge step is truncated at the clamp
    lp = torch.log_softmax(jump, dim=1)[0, :, 2:4]
    expected = float(torch.clamp((lp[:, 1] - lp[:, 0]) ** 2, max=16.0).sum()) / (4 * 3)
    assert float(smoothing_loss(jump, mask, 16.0)) == pytest.approx(expected, rel=1e-5)
    hidden = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])    # 1 x 2 x 4
    stamp_at = torch.tensor([[0, 0, 3, 3]])
    assert float(cluster_loss(hidden, stamp_at, torch.ones(1, 4))) == pytest.approx(0.0, abs=1e-6)
    stamp_at = torch.tensor([[0, 0, 0, 3]])                  # frame 2 belongs to stamp 0: distance sqrt(2)
    assert float(cluster_loss(hidden, stamp_at, torch.ones(1, 4))) == pytest.approx(np.sqrt(2) / 4, rel=1e-5)


# ------------------------------------------------------------------------------ teacher


@pytest.fixture(scope="module")
def trained():
    data = _dataset(8, seed=5, gaps=((100, 40),))
    teacher = TSASPCTeacher(C, D, _cfg())
    rows = []
    history = teacher.fit([v for v, _ in data], log=rows.append, progress=False)
    return teacher, data, history, rows


def test_history_rows_and_loss_decreases(trained):
    teacher, _, history, rows = trained
    assert rows == history and [r["epoch"] for r in history] == list(range(1, 9))
    for row in history:
        assert set(row) == {"epoch", "loss", "loss_ce", "loss_smoothing", "loss_confidence", "loss_cluster",
                            "labelled_fraction"}
        assert all(np.isfinite(v) for v in row.values())
    first_phase = [r["loss"] for r in history[:5]]          # labels fixed until growth starts
    assert first_phase[-1] < 0.7 * first_phase[0]
    assert history[-1]["labelled_fraction"] >= history[0]["labelled_fraction"]   # growth only adds
    assert teacher.label_report()["growth_rounds"] == 3


class _CrossEntropySpy:
    """Stands in for torch.nn.functional inside the training module: records every CE target."""

    def __init__(self, real, calls):
        self._real, self._calls = real, calls

    def __getattr__(self, name):
        return getattr(self._real, name)

    def cross_entropy(self, logits, target, **kw):
        self._calls.append(target.detach().cpu().numpy().copy())
        return self._real.cross_entropy(logits, target, **kw)


def test_phase_one_trains_on_the_stamps_and_phase_two_on_the_grown_ensemble(monkeypatch):
    """Epochs 1..growth_epochs: the CE sees only the stamp frames (points and background stamps);
    later epochs: the ensemble labels as grown in that very batch. One video per batch and one
    length per video, so every CE target row names its video by its length."""
    from onpoint_core.teachers.tsaspc import training

    videos = [v for v, _ in _dataset(3, seed=9, gaps=((40, 30),), steps=120)]
    cfg = _cfg(epochs=5, growth_epochs=3, batch_size=1, stages=2, layers=4, feature_maps=16)
    calls, per_epoch = [], []
    monkeypatch.setattr(training, "F", _CrossEntropySpy(training.F, calls))
    teacher = TSASPCTeacher(C, D, cfg)
    history = teacher.fit(videos, log=lambda row: per_epoch.append(calls[len(sum(per_epoch, [])):]),
                          progress=False)
    by_length = {v.n_steps: v.video_id for v in videos}
    assert [len(e) for e in per_epoch] == [len(videos) * cfg.stages] * cfg.epochs   # one CE per stage
    initial, final = teacher.frame_labels(initial=True), teacher.frame_labels()
    for epoch, targets in enumerate(per_epoch, start=1):
        for target in targets:
            vid = by_length[target.shape[1]]
            info = teacher._info[vid]
            if epoch <= cfg.growth_epochs:
                stamp_only = np.full(target.shape[1], clustering.IGNORE)
                stamp_only[info["stamps"]] = info["stamp_labels"]
                assert np.array_equal(target[0], stamp_only), (epoch, vid)
            else:
                seen = initial[vid] != clustering.IGNORE          # growth only adds to the ensemble
                assert np.array_equal(target[0][seen], initial[vid][seen]), (epoch, vid)
                assert (target[0] != clustering.IGNORE).sum() > len(info["stamps"])
                if epoch == cfg.epochs:                           # the last growth is the final labels
                    assert np.array_equal(target[0], final[vid]), vid
    assert any(info["background_added"] for info in teacher._info.values())   # background stamps count
    # the cluster loss keeps the ensemble intervals in phase 1 (on the stamps alone it would be 0)
    assert all(row["loss_cluster"] > 0 for row in history[:cfg.growth_epochs])
    report = teacher.label_report()
    assert report["phase1_epochs"] == 3 and report["growth_rounds"] == 2
    assert report["phase1_labelled_fraction"] == pytest.approx(
        sum(len(i["stamps"]) for i in teacher._info.values()) / report["frames"])


def test_cas_shape_rows_and_accuracy_above_chance(trained):
    teacher, _, _, _ = trained
    test = _dataset(3, seed=6, gaps=((100, 40),))
    cas = teacher.predict_cas_batch([v.features for v, _ in test], 4)
    hits = total = 0
    for (video, truth), a in zip(test, cas):
        assert a.shape == (video.n_steps, C + 1) and a.dtype == np.float32
        assert np.allclose(a.sum(axis=1), 1.0, atol=1e-5) and (a >= 0).all()
        hits += (a.argmax(axis=1) == truth).sum()
        total += len(truth)
    majority = max(np.bincount(np.concatenate([t for _, t in test])) / total)
    assert majority < 0.35
    assert hits / total > 0.7                                   # chance is at most 0.35 here
    single = teacher.predict_cas(test[1][0].features)
    assert np.allclose(single, cas[1], atol=1e-5)               # padding does not leak into a video


def test_detect_and_pseudo_segments_on_hand_built_cas():
    teacher = TSASPCTeacher(2, D, _cfg())                       # classes 0, 1; background 2
    #          t: 0    1    2    3    4    5    6    7    8    9
    winner = [2, 2, 0, 0, 0, 1, 1, 2, 0, 0]
    top = [0.9, 0.8, 0.6, 0.7, 0.8, 0.5, 0.7, 0.6, 0.9, 0.5]
    cas = np.zeros((10, 3), np.float32)
    for t, (w, p) in enumerate(zip(winner, top)):
        cas[t] = (1 - p) / 2
        cas[t, w] = p
    rows = teacher.detect(cas, TSASPCProposals(), TSASPCDetect(predict_batch=8))
    expected = [[0, 2, 5, (0.6 + 0.7 + 0.8) / 3], [1, 5, 7, 0.6], [0, 8, 10, 0.7]]
    assert rows.shape == (3, 5)
    assert np.allclose(rows[:, :4], expected)
    assert np.isnan(rows[:, 4]).all()
    runs = PSEUDO.replace(segments="runs")
    seg = teacher.pseudo_segments(cas, np.array([3, 6, 8, 9]), np.array([0, 0, 0, 0]), TSASPCProposals(), runs)
    assert np.allclose(seg[:, :4], expected)
    # run 1 is class 1, its point is class 0 -> none; run 2 holds 8 and 9, centre 8.5: tie -> first
    assert seg[0, 4] == 3 and np.isnan(seg[1, 4]) and seg[2, 4] == 8


def test_point_anchored_pseudo_segments_grow_from_each_point_up_to_halfway():
    """One segment per point whose frame favours its class over background, grown while that holds,
    never past halfway to a neighbouring point; the runs way would merge, drop and add segments."""
    teacher = TSASPCTeacher(2, D, _cfg())                       # classes 0, 1; background 2
    #   t:     0  1  2  3  4  5  6  7  8  9 10 11
    winner = [2, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 2]              # frame 8: class 1 wins, class 0 still beats bg
    cas = np.full((12, 3), 0.1, np.float32)
    for t, w in enumerate(winner):
        cas[t, w] = 0.8
    cas[8] = [0.3, 0.6, 0.1]
    anchored = PSEUDO.replace(segments="point_anchored")
    assert PSEUDO.segments == "point_anchored"                  # the default in params.yaml
    # two class-0 points in one run (2, 5) split halfway (3 | 4); point 9 of class 0 keeps frame 8
    # (0.3 > bg 0.1); point 11 sits on background: no segment
    seg = teacher.pseudo_segments(cas, np.array([5, 2, 9, 11, 9]), np.array([0, 0, 0, 1, 0]), TSASPCProposals(),
                                  anchored)
    assert seg[:, [0, 1, 2, 4]].tolist() == [[0, 1, 4, 2], [0, 4, 7, 5], [0, 8, 11, 9]]
    assert np.isclose(seg[2, 3], (0.3 + 0.8 + 0.8) / 3)
    runs = teacher.pseudo_segments(cas, np.array([5, 2, 9, 11]), np.array([0, 0, 0, 1]), TSASPCProposals(),
                                   PSEUDO.replace(segments="runs"))
    assert runs[:, :3].tolist() == [[0, 1, 7], [1, 8, 9], [0, 9, 11]]


def test_pseudo_segment_way_is_checked_in_params():
    with pytest.raises(ParamsError, match="tsaspc.pseudo.segments"):
        build(TSASPCPseudo, {**PARAMS["tsaspc"]["pseudo"], "segments": "anchored"}, "params.yaml", "tsaspc.pseudo")


def test_same_seed_gives_bit_identical_cas_and_other_seed_does_not():
    data = _dataset(4, seed=7)
    videos = [v for v, _ in data]
    cfg = _cfg(epochs=3, growth_epochs=2)
    cas = []
    for run, seed in enumerate((11, 11, 12)):
        torch.manual_seed(1000 + run)           # the caller's RNG state must not matter
        teacher = TSASPCTeacher(C, D, cfg.replace(seed=seed))
        teacher.fit(videos, progress=False)
        cas.append(teacher.predict_cas(videos[0].features))
    assert np.array_equal(cas[0], cas[1])
    assert not np.array_equal(cas[0], cas[2])


def test_state_round_trip(trained):
    teacher = trained[0]
    buf = io.BytesIO()
    torch.save(teacher.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    again = TSASPCTeacher.from_state(state)
    x = trained[1][0][0].features
    assert np.array_equal(again.predict_cas(x), teacher.predict_cas(x))
    assert again.label_report() == teacher.label_report()
    with pytest.raises(OnPointError, match="not a TSASPC"):
        TSASPCTeacher.from_state({**state, "kind": "hrpro"})


class _Crash(Exception):
    """Raised from the log callback to simulate a crash after an epoch."""


@pytest.mark.parametrize("crash, every, saved_epoch, saved_rounds", [
    (5, 2, 4, 0),      # saved on the last stamp-only epoch: the resumed fit crosses into phase 2
    (6, 1, 5, 1),      # saved after growth began: the grown labels come back from the file
])
def test_interrupted_fit_resumes_bit_identical(tmp_path, crash, every, saved_epoch, saved_rounds):
    videos = [v for v, _ in _dataset(3, seed=8, steps=120)]
    cfg = _cfg(epochs=6, growth_epochs=4, feature_maps=16, layers=4)      # growth at 5/7 of training
    whole = TSASPCTeacher(C, D, cfg)
    expected = whole.fit(videos, progress=False)
    ckpt = tmp_path / "resume.pt"

    def crash_at(k):
        def log(row):
            if row["epoch"] == k:
                raise _Crash
        return log

    first = TSASPCTeacher(C, D, cfg)
    torch.manual_seed(99)                      # the caller's RNG state must not matter
    with pytest.raises(_Crash):
        first.fit(videos, log=crash_at(crash), progress=False, checkpoint=ckpt, checkpoint_every=every)
    saved = torch.load(ckpt, weights_only=True)      # plain types and tensors only
    assert saved["epoch"] == saved_epoch and saved["growth_rounds"] == saved_rounds

    # other inputs must not resume from this file
    with pytest.raises(OnPointError, match="resume.pt.*differs in: cfg"):
        TSASPCTeacher(C, D, cfg.replace(lr=1e-3)).fit(videos, progress=False, checkpoint=ckpt)
    assert ckpt.exists()

    logged = []
    resumed = TSASPCTeacher(C, D, cfg)
    history = resumed.fit(videos, log=logged.append, progress=False, checkpoint=ckpt, checkpoint_every=every)
    assert [r["epoch"] for r in logged] == list(range(saved_epoch + 1, 7))    # resumed, not restarted
    assert not ckpt.exists()                        # removed once training completed
    assert history == expected
    a, b = resumed.state_dict(), whole.state_dict()
    assert a["label_report"] == b["label_report"] and a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for vid, labels in whole.frame_labels().items():
        assert np.array_equal(resumed.frame_labels()[vid], labels)
