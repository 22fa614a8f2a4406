"""Streaming inference: decode, MATR's online NMS, the batched engine and `onpoint stream`.

Hand cases use numbers worked out on paper; the random cases are checked against a plain
per-stream Python re-implementation of the online NMS written here.
"""

import json
import math
import os
import select
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from onpoint_core.errors import OnPointError
from onpoint_core.online.decode import decode, decode_instances, decode_points
from onpoint_core.online.engine import StreamingEngine, stream_videos
from onpoint_core.online.onms import OnlineNMS
from onpoint_core.online.stream_cli import stream_command
from onpoint_core.student.checkpoint import load_student, save_student
from onpoint_core.student.model import OnlineStudent, model_config

FEATURE_DIM, WINDOW, ANCHORS, CLASSES = 12, 8, [2, 4, 8], ["jump", "run", "throw"]
RATE = 4.0


def tiny_student(seed=0):
    """A random tiny student whose anchor queries differ (zeros would make all anchors alike)."""
    torch.manual_seed(seed)
    config = model_config(len(CLASSES), FEATURE_DIM, 1, WINDOW, ANCHORS, 4,
                          d_model=32, encoder_layers=1, encoder_heads=2, decoder_layers=1, decoder_heads=2,
                          ffn_dim=64, dropout=0.1, position_dropout=0.3)
    model = OnlineStudent(config)
    with torch.no_grad():
        model.queries.normal_()
        model.regressor[2].bias[0] -= 1.0        # ends before now: more proposals are emittable
    return model.eval()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine their spin-waits
    make these tests ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for mode in ("instance", "point"):
        paths[mode] = folder / f"{mode}.pt"
        model = tiny_student()
        if mode == "point":        # points in the older half of their anchors: segments complete at once
            with torch.no_grad():
                model.point_regressor[-1].bias.fill_(0.3)
        save_student(paths[mode], model, CLASSES, "onpoint" if mode == "instance" else "distillation_free",
                     {"inference": mode}, RATE)
    return paths


def features(n_steps, seed):
    return np.random.default_rng(seed).normal(size=(n_steps, FEATURE_DIM)).astype(np.float32)


def logits_of(probabilities):
    return torch.log(torch.tensor(probabilities, dtype=torch.float32))


# ---------------------------------------------------------------------------------------------
# (a) hand cases: decode


def test_decode_instances_by_hand():
    # stream 0: now = 10 steps, 2 steps/s; stream 1: now = 3 steps, 1 step/s. anchors 2 and 4 steps.
    class_logits = torch.stack([
        logits_of([[0.6, 0.3, 0.1], [0.05, 0.05, 0.9]]),     # anchor 0: class 0 p=.6; anchor 1: best action .05
        logits_of([[0.45, 0.45, 0.1], [0.2, 0.7, 0.1]]),
    ])
    regression = torch.tensor([[[-0.5, math.log(1.5)], [0.0, 0.0]],
                               [[-2.0, 0.0], [0.0, math.log(2.0)]]])
    found = decode_instances(class_logits, regression, [2, 4], [10, 3], [2.0, 1.0], 0.1)
    order = np.lexsort((found.anchor, found.stream))
    got = {(int(s), int(a)): (int(c), st, e, p) for s, a, c, st, e, p in zip(
        found.stream[order], found.anchor[order], found.label[order], found.start[order], found.end[order],
        found.score[order])}
    # (0, 0): end = 10 + 2*(-0.5) = 9 steps = 4.5 s; length 2*1.5 = 3 steps -> start 6 steps = 3 s
    # (0, 1): best action probability .05 < .1 -> no candidate
    # (1, 0): end = 3 + 2*(-2) = -1 step: wholly before the stream began -> dropped
    # (1, 1): end = 3 s; length 4*2 = 8 steps -> start -5 s, clipped to 0; class 1, p = .7
    assert set(got) == {(0, 0), (1, 1)}
    assert got[(0, 0)][:3] == (0, pytest.approx(3.0), pytest.approx(4.5))
    assert got[(0, 0)][3] == pytest.approx(0.6, abs=1e-6)
    assert got[(1, 1)][:3] == (1, 0.0, pytest.approx(3.0))
    assert got[(1, 1)][3] == pytest.approx(0.7, abs=1e-6)
    # a higher threshold drops the .6 one too
    assert len(decode_instances(class_logits, regression, [2, 4], [10, 3], [2.0, 1.0], 0.65)) == 1


def test_decode_points_by_hand():
    # one stream, now = 10 steps at 2 steps/s, anchors 2 and 4 steps
    point_logits = logits_of([[[0.5, 0.4, 0.1], [0.2, 0.7, 0.1]]])
    offsets = torch.tensor([[-0.3, 0.25]])
    found = decode_points(point_logits, offsets, [2, 4], [10], [2.0], 0.1)
    order = np.argsort(found.anchor)
    # d = (centre - point) / L, signed; the segment is the anchor's length centred on the point:
    # anchor 0: centre 9, point 9.6 (newer half) -> [8.6, 10.6) steps = [4.3, 5.3) s, class 0 p=.5
    #           (it ends after now: the online NMS holds it back)
    # anchor 1: centre 8, point 7 -> [5, 9) steps = [2.5, 4.5) s, class 1 p=.7
    np.testing.assert_allclose(found.start[order], [4.3, 2.5])
    np.testing.assert_allclose(found.end[order], [5.3, 4.5])
    assert found.label[order].tolist() == [0, 1]
    np.testing.assert_allclose(found.score[order], [0.5, 0.7], atol=1e-6)
    # an offset beyond the anchor's half length is clipped: the point stays inside the anchor
    clipped = decode_points(point_logits, torch.tensor([[-3.0, 0.9]]), [2, 4], [10], [2.0], 0.1)
    order = np.argsort(clipped.anchor)
    np.testing.assert_allclose(clipped.start[order], [4.5, 2.0])    # points 10 and 6 (steps)
    np.testing.assert_allclose(clipped.end[order], [5.5, 4.0])
    outputs = {"point_logits": point_logits, "point_offset": offsets}
    assert len(decode(outputs, "point", [2, 4], [10], [2.0], 0.6)) == 1
    with pytest.raises(ValueError):
        decode(outputs, "segments", [2, 4], [10], [2.0])


# ---------------------------------------------------------------------------------------------
# (a) hand cases: online NMS (one call = one step; times in seconds)


def nms_step(nms, rows, now):
    """rows: (stream, label, start, end, score); returns the emitted rows."""
    stream, label, start, end, score = (np.array(c) for c in zip(*rows))
    emitted = nms.step(stream, label, start.astype(float), end.astype(float), score.astype(float),
                       np.full(len(rows), float(now)))
    return [rows[i] for i in np.flatnonzero(emitted)]


def test_onms_suppression_by_earlier_emitted_and_no_cross_class():
    nms = OnlineNMS(n_streams=2, num_classes=2)
    assert nms_step(nms, [(0, 0, 1.0, 4.0, 0.9)], now=5) == [(0, 0, 1.0, 4.0, 0.9)]
    later = [
        (0, 0, 1.5, 4.5, 0.95),   # tIoU with [1, 4] = 2.5 / 3.5 > .3: suppressed although it scores higher
        (0, 1, 1.5, 4.5, 0.5),    # same span, other class: no cross-class suppression
        (0, 0, 4.2, 5.8, 0.4),    # same class, no overlap with [1, 4]
        (1, 0, 1.0, 4.0, 0.3),    # other stream: its own history is empty
    ]
    assert nms_step(nms, later, now=6) == later[1:]
    # the suppressed one was never emitted, so it does not suppress anything later
    assert nms_step(nms, [(0, 0, 3.2, 5.5, 0.2)], now=7) == []           # but [4.2, 5.8] does: 1.3/2.6
    assert nms_step(nms, [(0, 0, 2.6, 5.3, 0.2)], now=7) == []           # [1, 4]: 1.4/4.3 > .3
    assert nms_step(nms, [(0, 0, 6.0, 7.0, 0.2)], now=7) == [(0, 0, 6.0, 7.0, 0.2)]


def test_onms_emits_only_complete_segments():
    nms = OnlineNMS(n_streams=1, num_classes=1)
    rows = [(0, 0, 5.0, 6.5, 0.9),     # ends after now = 6: dropped (predicted again later)
            (0, 0, 2.0, 6.0, 0.5)]     # ends exactly at now: emitted (no overlap with [5, 6.5] > .3: 1/4.5)
    assert nms_step(nms, rows, now=6) == [rows[1]]
    # same-step NMS runs before the end test: a kept, still-running segment suppresses a weaker complete one
    rows = [(0, 0, 8.0, 9.5, 0.9), (0, 0, 8.0, 8.9, 0.5)]                # tIoU .9 / 1.5 = .6
    assert nms_step(nms, rows, now=9) == []
    assert len(nms) == 1


def test_onms_one_second_floor():
    # [0, .2] and [.1, .3]: intersection .1, union .3 -> raw tIoU .33 > .3, floored: .1 / 1 = .1
    floored = OnlineNMS(n_streams=1, num_classes=1)
    assert len(nms_step(floored, [(0, 0, 0.0, 0.2, 0.9)], now=1)) == 1
    assert len(nms_step(floored, [(0, 0, 0.1, 0.3, 0.9)], now=1)) == 1
    raw = OnlineNMS(n_streams=1, num_classes=1, tiou_floor=1e-6)
    assert len(nms_step(raw, [(0, 0, 0.0, 0.2, 0.9)], now=1)) == 1
    assert nms_step(raw, [(0, 0, 0.1, 0.3, 0.9)], now=1) == []
    # the floor also applies inside one step
    assert len(nms_step(OnlineNMS(1, 1), [(0, 0, 0.0, 0.2, 0.9), (0, 0, 0.1, 0.3, 0.8)], now=1)) == 2


def test_onms_same_step_greedy_nms():
    x = (0, 0, 0.0, 4.0, 0.9)
    y = (0, 0, 1.0, 5.0, 0.8)     # vs x: 3/5 = .6 -> suppressed
    z = (0, 0, 2.2, 6.2, 0.7)     # vs x: 1.8/6.2 = .29 -> kept; vs y: 2.8/5.2 = .54, but y is gone
    other_class = (0, 1, 1.0, 5.0, 0.1)
    other_stream = (1, 0, 1.0, 5.0, 0.8)
    rows = [z, other_class, y, x, other_stream]
    emitted = nms_step(OnlineNMS(n_streams=2, num_classes=2), rows, now=7)
    assert sorted(emitted) == sorted([x, z, other_class, other_stream])


def reference_onms(steps, num_classes, iou=0.3, floor=1.0):
    """Plain Python MATR online NMS, one stream and class at a time; returns emitted (step, index)."""
    def overlap(a, b):
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        union = (a[1] - a[0]) + (b[1] - b[0]) - inter
        return inter / max(union, floor)

    history, emitted = {}, set()
    for step, (rows, now) in enumerate(steps):
        for key in {(r[0], r[1]) for r in rows}:
            mine = sorted([i for i, r in enumerate(rows) if (r[0], r[1]) == key], key=lambda i: (-rows[i][4], i))
            kept = []
            for i in mine:
                if all(overlap(rows[i][2:4], rows[j][2:4]) <= iou for j in kept):
                    kept.append(i)
            for i in kept:
                span = rows[i][2:4]
                if span[1] <= now + 1e-9 and all(overlap(span, h) <= iou for h in history.get(key, [])):
                    emitted.add((step, i))
            for i in kept:
                if (step, i) in emitted:
                    history.setdefault(key, []).append(rows[i][2:4])
    return emitted


def test_onms_matches_a_plain_reference_on_random_steps():
    rng = np.random.default_rng(3)
    n_streams, num_classes = 3, 2
    steps = []
    for step in range(120):
        now = (step + 1) * 0.5
        rows = []
        for _ in range(rng.integers(0, 9)):
            length = rng.choice([0.3, 1.0, 2.0, 6.0, 20.0]) * rng.uniform(0.5, 1.5)
            end = now + rng.uniform(-3.0, 1.0)
            rows.append((int(rng.integers(n_streams)), int(rng.integers(num_classes)), max(end - length, 0.0), end,
                         float(np.round(rng.uniform(0.1, 1.0), 2))))   # rounded: ties in score happen
        steps.append((rows, now))
    nms = OnlineNMS(n_streams, num_classes)
    got = set()
    for step, (rows, now) in enumerate(steps):
        if not rows:
            continue
        stream, label, start, end, score = (np.array(c) for c in zip(*rows))
        mask = nms.step(stream, label, start, end, score, np.full(len(rows), now))
        got |= {(step, int(i)) for i in np.flatnonzero(mask)}
    expected = reference_onms(steps, num_classes)
    assert len(expected) > 50
    assert got == expected


# ---------------------------------------------------------------------------------------------
# the engine: window convention, causality, one stream vs many


def test_engine_windows_are_the_last_w_steps_zero_padded():
    """The model's input at a stream's step t is steps t-W+1..t, zeros before the stream began; a
    stream masked out of a push does not advance, and its proposals match it streamed alone."""
    model = tiny_student()
    meta = {"config": model.config, "classes": CLASSES}
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    engine = StreamingEngine(model, meta).start([RATE, RATE])
    video = [features(30, 1), features(30, 2)]
    cursor, proposals = [0, 0], [[], []]
    for push in range(30):
        active = np.array([push % 3 != 0, push % 3 != 1])     # alone, alone, together
        rows = np.stack([video[0][min(cursor[0], 29)], video[1][min(cursor[1], 29)]])
        for stream, emitted in enumerate(engine.push(rows, active)):
            proposals[stream] += emitted
        windows = seen.pop()
        assert windows.shape[0] == int(active.sum())
        for row, stream in enumerate(np.flatnonzero(active)):
            t = cursor[stream]
            expected = np.zeros((WINDOW, FEATURE_DIM), np.float32)
            past = video[stream][max(0, t - WINDOW + 1):t + 1]
            expected[WINDOW - len(past):] = past
            np.testing.assert_array_equal(windows[row].numpy(), expected)
            cursor[stream] += 1
    handle.remove()
    assert cursor == [20, 20]
    for stream in (0, 1):
        alone = stream_one(model, meta, video[stream][:20])
        assert alone and len(proposals[stream]) == len(alone)
        for got, want in zip(proposals[stream], alone):
            assert got["label"] == want["label"] and got["gen_time"] == want["gen_time"]
            assert got["start"] == pytest.approx(want["start"], abs=1e-5)
            assert got["end"] == pytest.approx(want["end"], abs=1e-5)


def test_engine_times_follow_the_step_convention():
    """At step t: now = (t+1)/rate, anchors end at now, end = now + L*z0, start = end - L*exp(z1)."""
    model = tiny_student(seed=2)
    rate, n_steps = 2.5, 24
    video = features(n_steps, 8)
    windows = np.zeros((n_steps, WINDOW, FEATURE_DIM), np.float32)
    for t in range(n_steps):
        past = video[max(0, t - WINDOW + 1):t + 1]
        windows[t, WINDOW - len(past):] = past
    with torch.no_grad():
        out = model(torch.as_tensor(windows), heads="inference")
    probs = torch.softmax(out["class_logits"], -1).numpy()
    z = out["regression"].numpy().astype(np.float64)
    # an NMS threshold of .99 suppresses nothing here, so every complete candidate is emitted
    engine = StreamingEngine(model, {"config": model.config, "classes": CLASSES}, nms_iou=0.99).start([rate])
    total = 0
    for t in range(n_steps):
        now = (t + 1) / rate
        expected = []
        for j, length in enumerate(ANCHORS):
            label = int(np.argmax(probs[t, j, :-1]))
            end = (t + 1 + length * z[t, j, 0]) / rate
            start = end - length * math.exp(z[t, j, 1]) / rate
            if probs[t, j, label] >= 0.1 and 0 < end <= now:
                expected.append((CLASSES[label], max(start, 0.0), end, float(probs[t, j, label])))
        got = engine.push(video[t][None])[0]
        assert all(p["gen_time"] == now for p in got)
        got = sorted((p["label"], p["start"], p["end"], p["score"]) for p in got)
        expected.sort()
        assert [g[0] for g in got] == [e[0] for e in expected]
        np.testing.assert_allclose(np.array([g[1:] for g in got]).reshape(-1, 3),
                                   np.array([e[1:] for e in expected]).reshape(-1, 3), atol=1e-5)
        total += len(got)
    assert total >= 5


def stream_one(model, meta, video, rate=RATE, **options):
    engine = StreamingEngine(model, meta, **options).start([rate])
    out = []
    for row in video:
        out += engine.push(row[None])[0]
    return out


def stream_with_future_noise(model, meta, k=29, **options):
    """A 60-step video streamed as is and with noise after step k: (video, clean, perturbed, the
    generation time of step k)."""
    video = features(60, 4)
    noisy = video.copy()
    noisy[k + 1:] = np.random.default_rng(9).normal(scale=3.0, size=noisy[k + 1:].shape)
    return video, stream_one(model, meta, video, **options), stream_one(model, meta, noisy, **options), (k + 1) / RATE


@pytest.mark.parametrize("mode", ["instance", "point"])
def test_causality_future_noise_changes_nothing_already_emitted(checkpoints, mode):
    model, meta = load_student(checkpoints[mode])
    video, clean, perturbed, cutoff = stream_with_future_noise(model, meta)
    early = [p for p in clean if p["gen_time"] <= cutoff]
    assert len(early) >= 3, "the test needs proposals before step k"
    assert [p for p in perturbed if p["gen_time"] <= cutoff] == early
    assert [p for p in perturbed if p["gen_time"] > cutoff] != [p for p in clean if p["gen_time"] > cutoff]
    for p in clean + perturbed:
        assert p["end"] <= p["gen_time"] + 1e-9 and 0 <= p["start"] <= p["end"]
        assert p["label"] in CLASSES
        steps = p["gen_time"] * RATE
        assert abs(steps - round(steps)) < 1e-9 and 1 <= round(steps) <= len(video)


def test_one_stream_and_batched_streams_agree(checkpoints):
    model, meta = load_student(checkpoints["instance"])
    lengths = {"a": 20, "b": 35, "c": 13, "d": 44}
    videos = {v: features(n, i + 10) for i, (v, n) in enumerate(lengths.items())}
    durations = {"a": 5.0, "b": 7.0, "c": 6.5, "d": 11.0}     # rates 4, 5, 2, 4 steps/s
    single = {v: stream_one(model, meta, videos[v], rate=len(videos[v]) / durations[v]) for v in videos}
    assert all(single[v] for v in videos)
    for batch_size in (4, 3):        # one batch with masked, finished streams; and two batches
        table = stream_videos(StreamingEngine(model, meta), videos, durations, batch_size=batch_size,
                              progress=False)
        assert list(table.columns) == ["video_id", "label", "start", "end", "score", "gen_time"]
        assert table.video_id.unique().tolist() == list(videos)
        for video, rows in table.groupby("video_id", sort=False):
            expected = single[video]
            assert len(rows) == len(expected)
            assert rows.label.tolist() == [p["label"] for p in expected]
            np.testing.assert_allclose(rows.gen_time, [p["gen_time"] for p in expected], rtol=0, atol=1e-12)
            for key in ("start", "end", "score"):
                np.testing.assert_allclose(rows[key], [p[key] for p in expected], rtol=0, atol=1e-5)


def test_stream_videos_refuses_bad_features(checkpoints):
    from onpoint_core.errors import OnPointError

    model, meta = load_student(checkpoints["instance"])
    bad = features(10, 0)
    bad[4, 2] = np.inf
    with pytest.raises(OnPointError, match="video v: feature step 4"):
        stream_videos(model, {"v": bad}, {"v": 2.5}, progress=False, meta=meta)
    with pytest.raises(OnPointError, match="video w: features of shape"):
        stream_videos(model, {"w": np.zeros((5, 3))}, {"w": 2.5}, progress=False, meta=meta)


# ---------------------------------------------------------------------------------------------
# (d) `onpoint stream`


def run_stream(*args, stdin=None):
    result = CliRunner().invoke(stream_command, [str(a) for a in args], input=stdin)
    return result


def as_text(array):
    return "".join(" ".join(repr(float(x)) for x in row) + "\n" for row in array)


def test_stream_cli_file_and_stdin_agree(tmp_path, checkpoints):
    video = features(36, 5)
    np.save(tmp_path / "v.npy", video)
    ckpt = checkpoints["instance"]
    from_file = run_stream("--model", ckpt, "--features", tmp_path / "v.npy", "--duration", len(video) / RATE)
    assert from_file.exit_code == 0, from_file.stderr
    lines = from_file.stdout.splitlines()
    assert len(lines) >= 3
    for line in lines:
        proposal = json.loads(line)
        assert set(proposal) == {"label", "start", "end", "score", "gen_time"}
        assert proposal["end"] <= proposal["gen_time"] + 1e-9
    # rows as text, comma separated text, and raw float32 rows on stdin; rate from the checkpoint or the option
    text = run_stream("--model", ckpt, stdin=as_text(video))
    commas = run_stream("--model", ckpt, "--features", "-", "--step-rate", RATE,
                        stdin=as_text(video).replace(" ", ", "))
    raw = run_stream("--model", ckpt, "--stdin-format", "npy-rows", stdin=video.astype("<f4").tobytes())
    for other in (text, commas, raw):
        assert other.exit_code == 0, other.stderr
        assert other.stdout == from_file.stdout
    # the same proposals the engine gives
    model, meta = load_student(ckpt)
    assert [json.loads(line) for line in lines] == stream_one(model, meta, video)


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_stream_cli_bad_input(tmp_path, checkpoints):
    ckpt = checkpoints["instance"]
    video = features(40, 6)
    clean = run_stream("--model", ckpt, stdin=as_text(video)).stdout.splitlines()

    # a NaN step: the proposals of the steps before it are already out
    k = 30
    broken = video.copy()
    broken[k, 3] = np.nan
    np.save(tmp_path / "nan.npy", broken)
    result = run_stream("--model", ckpt, "--features", tmp_path / "nan.npy", "--duration", len(video) / RATE)
    assert_one_line_error(result, "nan.npy", f"step {k}", "NaN")
    before = [line for line in clean if json.loads(line)["gen_time"] <= k / RATE]
    assert before and result.stdout.splitlines() == before
    inf_text = as_text(video[:k]) + as_text(video[k:k + 1]).replace(repr(float(video[k, 0])), "inf", 1)
    result = run_stream("--model", ckpt, stdin=inf_text)
    assert_one_line_error(result, "stdin", f"step {k}")
    assert result.stdout.splitlines() == before

    np.save(tmp_path / "wide.npy", np.zeros((10, FEATURE_DIM + 1), np.float32))
    assert_one_line_error(run_stream("--model", ckpt, "--features", tmp_path / "wide.npy", "--duration", 5),
                          "wide.npy", f"width {FEATURE_DIM + 1}", str(FEATURE_DIM))
    np.save(tmp_path / "empty.npy", np.zeros((0, FEATURE_DIM), np.float32))
    assert_one_line_error(run_stream("--model", ckpt, "--features", tmp_path / "empty.npy", "--duration", 5),
                          "empty.npy", "no feature steps")
    assert_one_line_error(run_stream("--model", ckpt, stdin=""), "stdin", "no feature steps")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    assert_one_line_error(run_stream("--model", ckpt, "--features", tmp_path / "junk.npy", "--duration", 5),
                          "junk.npy")

    # truncated stdin: half a float32 row after 3 full rows; a text line with a value missing
    partial = video[:3].astype("<f4").tobytes() + video[3].astype("<f4").tobytes()[:10]
    assert_one_line_error(run_stream("--model", ckpt, "--stdin-format", "npy-rows", stdin=partial),
                          "step 3", "truncated", "10 of 48 bytes")
    short = as_text(video[:2]) + " ".join(["0.5"] * (FEATURE_DIM - 1)) + "\n"
    assert_one_line_error(run_stream("--model", ckpt, stdin=short), "step 2", f"{FEATURE_DIM - 1} values")
    assert_one_line_error(run_stream("--model", ckpt, stdin=as_text(video[:2]) + "0.1 abc" + " 1" * 10 + "\n"),
                          "step 2", "not a number")

    # a checkpoint of another version
    payload = torch.load(ckpt, weights_only=True)
    payload["version"] = 99
    torch.save(payload, tmp_path / "old.pt")
    assert_one_line_error(run_stream("--model", tmp_path / "old.pt", stdin=as_text(video)), "old.pt", "version 99")
    assert_one_line_error(run_stream("--model", ckpt, "--duration", 3, stdin=as_text(video)), "--duration")


def test_stream_cli_writes_each_proposal_while_stdin_is_still_open(checkpoints):
    """A live pipe: the first proposal arrives before the input ends (flushed line by line)."""
    video = features(200, 7)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(os.getcwd()), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "onpoint_core.online.stream_cli", "--model",
                                str(checkpoints["instance"]), "--device", "cpu"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    first_line, written = None, 0
    deadline = time.monotonic() + 60
    try:
        while first_line is None and written < len(video) and time.monotonic() < deadline:
            process.stdin.write(as_text(video[written:written + 1]).encode())
            process.stdin.flush()
            written += 1
            ready, _, _ = select.select([process.stdout], [], [], 0.2 if written > 5 else 2.0)
            if ready:
                first_line = process.stdout.readline()
        assert first_line, process.stderr.read1() if process.poll() is not None else "no proposal in time"
        assert written < len(video)
        proposal = json.loads(first_line)
        assert proposal["gen_time"] <= written / RATE + 1e-9
    finally:
        process.stdin.close()
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()


# ---------------------------------------------------------------------------------------------
# (e) `onpoint stream` on hostile input (issue 12): one line, never silence, never a traceback


def test_stream_cli_huge_features_are_an_error_not_silence(tmp_path, checkpoints):
    """Finite features of 1e30 overflow inside the network: NaN scores passed no threshold and the
    stream went on silently with no proposals (exit 0)."""
    ckpt = checkpoints["instance"]
    video = features(40, 6)
    clean = run_stream("--model", ckpt, stdin=as_text(video)).stdout.splitlines()
    k = 30
    video[k:] = 1e30
    np.save(tmp_path / "huge.npy", video)
    result = run_stream("--model", ckpt, "--features", tmp_path / "huge.npy", "--duration", len(video) / RATE)
    assert_one_line_error(result, "huge.npy", f"step {k}", "NaN or inf", "1e+30")
    assert result.stdout.splitlines() == [line for line in clean if json.loads(line)["gen_time"] <= k / RATE]
    from onpoint_core.errors import OnPointError

    model, meta = load_student(ckpt)
    with pytest.raises(OnPointError, match=f"video w: step {k}: the network's output is NaN or inf"):
        stream_videos(model, {"v": features(40, 1), "w": video}, {"v": 10.0, "w": 10.0}, progress=False, meta=meta)


def test_stream_cli_bad_device_is_one_line(checkpoints, monkeypatch):
    ckpt = checkpoints["instance"]
    assert_one_line_error(run_stream("--model", ckpt, "--device", "bogus", stdin="1\n"), "--device 'bogus'", "cpu")
    assert_one_line_error(run_stream("--model", ckpt, "--device", "mps", stdin="1\n"), "--device mps", "cpu and cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_one_line_error(run_stream("--model", ckpt, "--device", "cuda", stdin="1\n"), "--device cuda", "not available")


def _crafted(tmp_path, checkpoints, name, change):
    payload = torch.load(checkpoints["instance"], weights_only=True)
    change(payload)
    torch.save(payload, tmp_path / f"{name}.pt")
    return tmp_path / f"{name}.pt"


@pytest.mark.parametrize("name, change, fragments", [
    ("nan_weights", lambda p: p["state"]["queries"].fill_(float("nan")), ["weight queries", "NaN"]),
    ("no_d_model", lambda p: p["config"].pop("d_model"), ["malformed", "d_model"]),
    ("config_text", lambda p: p.update(config="x"), ["malformed"]),
    ("wrong_shape", lambda p: p["state"].update(queries=torch.zeros(2, 2)), ["weights do not fit"]),
    ("classes", lambda p: p.update(classes=["jump"]), ["1 class names for 3 classes"]),
])
def test_stream_cli_refuses_crafted_checkpoints(tmp_path, checkpoints, name, change, fragments):
    """NaN weights streamed silently with no output; a config without a key or of the wrong type
    raised KeyError / ValueError tracebacks."""
    ckpt = _crafted(tmp_path, checkpoints, name, change)
    assert_one_line_error(run_stream("--model", ckpt, stdin=as_text(features(20, 3))), f"{name}.pt", *fragments)


class _WritesAMarker:
    """Unpickling this object would call open(marker, 'w'): code run by merely loading a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_stream_cli_never_runs_code_from_a_checkpoint_pickle(tmp_path, checkpoints):
    """Guard: loading with weights_only=False would run it; removing that left the suite green."""
    marker = tmp_path / "ran.txt"
    payload = torch.load(checkpoints["instance"], weights_only=True)
    payload["extra"] = {"payload": _WritesAMarker(marker)}
    torch.save(payload, tmp_path / "evil.pt")
    assert not marker.exists()
    assert_one_line_error(run_stream("--model", tmp_path / "evil.pt", stdin=as_text(features(20, 3))),
                          "evil.pt", "not a readable student checkpoint")
    assert not marker.exists()


def test_stream_cli_threads(checkpoints, monkeypatch):
    """--threads (default 1: one stream at batch 1 gains nothing from more, and a busy machine's
    spin-waiting threads made it 80 times slower); the same proposals at any thread count, up to
    float rounding (reductions split over threads add in another order)."""
    seen = []
    push = StreamingEngine.push
    monkeypatch.setattr(StreamingEngine, "push", lambda self, *a, **k: seen.append(torch.get_num_threads())
                        or push(self, *a, **k))
    text = as_text(features(30, 4))
    torch.set_num_threads(2)
    try:
        default = run_stream("--model", checkpoints["instance"], stdin=text)
        two = run_stream("--model", checkpoints["instance"], "--threads", 2, stdin=text)
        assert torch.get_num_threads() == 2               # restored for an in-process caller
    finally:
        torch.set_num_threads(1)
    assert default.exit_code == 0 and two.exit_code == 0, default.output + two.output
    assert set(seen[:30]) == {1} and set(seen[30:]) == {2}
    one_thread, two_threads = ([json.loads(line) for line in r.stdout.splitlines()] for r in (default, two))
    assert [p["label"] for p in one_thread] == [p["label"] for p in two_threads] and one_thread
    for a, b in zip(one_thread, two_threads):
        assert [a[k] for k in ("start", "end", "score", "gen_time")] == pytest.approx(
            [b[k] for k in ("start", "end", "score", "gen_time")], abs=1e-5)
    zero = run_stream("--model", checkpoints["instance"], "--threads", 0, stdin=text)
    assert zero.exit_code == 2 and "Invalid value for '--threads'" in zero.output


def test_stream_cli_on_a_terminal_without_features_hints_and_exits_2(checkpoints):
    """stdin a terminal (a pseudo-terminal here) and no --features: one hint line on stderr and
    exit 2 at once, instead of waiting silently for typed rows."""
    import pty

    controller, terminal = pty.openpty()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        process = subprocess.run([sys.executable, "-m", "onpoint_core.online.stream_cli", "--model",
                                  str(checkpoints["instance"])], stdin=terminal, capture_output=True, text=True,
                                 env=env, timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    finally:
        os.close(terminal)
        os.close(controller)
    assert process.returncode == 2
    assert process.stdout == ""
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and "--features" in lines[0] and "Traceback" not in process.stderr


# ---------------------------------------------------------------------------------------------
# (f) `onpoint predict`: many videos, one engine, the same proposals as streaming each alone


def assert_same_proposals(rows, expected):
    """As one-stream vs batched above: same labels and generation times, times and scores to 1e-5
    (a batched matmul rounds differently from a single one)."""
    assert len(rows) == len(expected) > 0
    assert [r["label"] for r in rows] == [p["label"] for p in expected]
    np.testing.assert_allclose([r["gen_time"] for r in rows], [p["gen_time"] for p in expected], rtol=0, atol=1e-12)
    for key in ("start", "end", "score"):
        np.testing.assert_allclose([r[key] for r in rows], [p[key] for p in expected], rtol=0, atol=1e-5)


def run_predict(*args):
    from onpoint_core.online.predict_cli import predict_command

    return CliRunner().invoke(predict_command, ["--no-progress", *[str(a) for a in args]])


def test_predict_batches_videos_and_equals_streaming_each_alone(tmp_path, checkpoints):
    ckpt = checkpoints["instance"]
    model, meta = load_student(ckpt)
    folder = tmp_path / "feats"
    folder.mkdir()
    videos = {f"vid{i}": features(30 + 17 * i, 20 + i) for i in range(5)}
    for name, array in videos.items():
        np.save(folder / f"{name}.npy", array)
    durations = pd.DataFrame({"video_id": list(videos), "duration": [len(a) / RATE * 1.5 for a in videos.values()]})
    durations.to_csv(tmp_path / "durations.csv", index=False)
    result = run_predict("--model", ckpt, "--features", folder, "--durations", tmp_path / "durations.csv",
                         "--batch", 2, "--out", tmp_path / "out.parquet")
    assert result.exit_code == 0, result.stderr
    table = pd.read_parquet(tmp_path / "out.parquet")
    for name, array in videos.items():
        alone = stream_one(model, meta, array, rate=RATE / 1.5)
        assert_same_proposals(table[table.video_id == name].to_dict("records"), alone)
    # ActivityNet JSON lists every video; a file and a folder together; the checkpoint's rate without durations
    np.save(tmp_path / "extra.npy", features(25, 9))
    result = run_predict("--model", ckpt, "--features", folder, "--features", tmp_path / "extra.npy",
                         "--out", tmp_path / "out.json")
    assert result.exit_code == 0, result.stderr
    results = json.loads((tmp_path / "out.json").read_text())["results"]
    assert set(results) == set(videos) | {"extra"}
    assert_same_proposals([dict(e, start=e["segment"][0], end=e["segment"][1]) for e in results["extra"]],
                          stream_one(model, meta, features(25, 9)))


def test_predict_refuses_bad_inputs_with_one_line(tmp_path, checkpoints):
    ckpt = checkpoints["instance"]
    good = tmp_path / "good.npy"
    np.save(good, features(20, 1))
    out = tmp_path / "out.parquet"
    assert_one_line_error(run_predict("--model", ckpt, "--features", tmp_path / "missing", "--out", out), "missing",
                          "no such file or folder")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_predict("--model", ckpt, "--features", tmp_path / "empty", "--out", out),
                          "no .npy feature files")
    np.save(tmp_path / "wide.npy", np.zeros((20, FEATURE_DIM + 1), np.float32))
    assert_one_line_error(run_predict("--model", ckpt, "--features", tmp_path / "wide.npy", "--out", out), "wide.npy",
                          f"expects {FEATURE_DIM}")
    bad = features(20, 2)
    bad[7, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert_one_line_error(run_predict("--model", ckpt, "--features", tmp_path / "nan.npy", "--out", out), "nan.npy",
                          "step 7")
    other = tmp_path / "other"
    other.mkdir()
    np.save(other / "good.npy", features(20, 3))
    assert_one_line_error(run_predict("--model", ckpt, "--features", good, "--features", other, "--out", out),
                          "'good' also comes from")
    assert_one_line_error(run_predict("--model", ckpt, "--features", good, "--out", tmp_path / "out.xlsx"),
                          "unsupported output type")
    pd.DataFrame({"video_id": ["good"], "duration": [-1.0]}).to_csv(tmp_path / "d.csv", index=False)
    assert_one_line_error(run_predict("--model", ckpt, "--features", good, "--durations", tmp_path / "d.csv",
                                      "--out", out), "d.csv", "positive number")
    assert not out.exists()


def test_engine_precisions_track_fp32_and_refuse_what_the_device_cannot_run(checkpoints):
    """bf16 autocast and int8 dynamic quantisation (CPU) give about fp32's proposals; the int8 copy
    leaves the caller's float model alone; fp16 on the CPU and unknown modes are refused by name."""
    model, meta = load_student(checkpoints["instance"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    video = features(60, 4)
    reference = stream_one(model, meta, video)
    assert len(reference) >= 3
    for precision in ("bf16", "int8"):
        engine = StreamingEngine(model, meta, precision=precision)
        assert engine.precision == precision
        got = stream_one(model, meta, video, precision=precision)
        close = sum(any(p["label"] == q["label"] and p["gen_time"] == q["gen_time"] and abs(p["start"] - q["start"]) < 0.1
                        and abs(p["end"] - q["end"]) < 0.1 for q in got) for p in reference)
        assert close >= 0.8 * len(reference), (precision, close, len(reference), len(got))
    assert type(StreamingEngine(model, meta, precision="int8").model) is type(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(OnPointError, match="precision fp16 runs on CUDA only"):
        StreamingEngine(model, meta, precision="fp16")
    with pytest.raises(OnPointError, match="precision must be one of fp32, fp16, bf16, int8, got 'fp64'"):
        StreamingEngine(model, meta, precision="fp64")


def test_predict_precision_option(tmp_path, checkpoints):
    """--precision reaches the engine: int8 runs (close to fp32); fp16 on the CPU is one line naming it."""
    np.save(tmp_path / "v.npy", features(40, 5))
    out = tmp_path / "out.parquet"
    result = run_predict("--model", checkpoints["instance"], "--features", tmp_path / "v.npy", "--out", out,
                         "--precision", "int8")
    assert result.exit_code == 0, result.stderr
    assert len(pd.read_parquet(out)) > 0
    assert_one_line_error(run_predict("--model", checkpoints["instance"], "--features", tmp_path / "v.npy", "--out", out,
                                      "--precision", "fp16"), "fp16 runs on CUDA only")
