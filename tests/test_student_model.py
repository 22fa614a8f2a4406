"""The student network (docs/method.md 4): causality of its input, actionness calibration, output
shapes, size and cost counted by hand on a tiny config, and self-contained checkpoints."""

import copy
import math

import numpy as np
import pytest
import torch

from onpoint_core.errors import OnPointError
from onpoint_core.student.checkpoint import load_student, save_student
from onpoint_core.student.inputs import StudentVideo
from onpoint_core.student.model import OnlineStudent, count_parameters, flops_per_step, model_config
from onpoint_core.student.variants import RUNS
from onpoint_core.student.windows import WindowData

C, FEATURES, WINDOW, ANCHORS, HORIZON = 3, 8, 6, [1, 2, 4, 6], 3
D, FFN, ENC_LAYERS, DEC_LAYERS = 16, 32, 2, 2
STUDENT = {"d_model": D, "ffn_dim": FFN, "encoder_layers": ENC_LAYERS, "encoder_heads": 2,
           "decoder_layers": DEC_LAYERS, "decoder_heads": 2, "dropout": 0.1, "position_dropout": 0.3}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core machine their spin-waits
    make each forward pass a hundred times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(calibration=True, seed=0):
    torch.manual_seed(seed)
    config = model_config(C, FEATURES, 2, WINDOW, ANCHORS, HORIZON, **STUDENT, calibration=calibration)
    return OnlineStudent(config).eval()


def _video(seed, num_steps=30, duration=15.0):
    """A StudentVideo with random features and teacher CAS (2 steps/s), one segment, one point."""
    rng = np.random.default_rng(seed)
    return StudentVideo(
        "v", rng.normal(size=(num_steps, FEATURES)).astype(np.float32), duration,
        segments=np.array([[2.0, 5.0]]), segment_labels=np.array([1]),
        points=np.array([3.0]), point_labels=np.array([1]),
        teacher_cas=rng.uniform(size=(num_steps, C + 1)).astype(np.float32),
        teacher_class_prob=rng.uniform(size=(num_steps, C)).astype(np.float32))


def _windows(*videos):
    return WindowData(list(videos), C, WINDOW, ANCHORS, HORIZON)


def _at(data, *steps):
    return data.batch(torch.tensor(steps))


@pytest.mark.parametrize("step", [2, 12])
def test_outputs_at_step_t_do_not_see_the_future(step):
    video = _video(0)
    future = copy.deepcopy(video)
    rng = np.random.default_rng(1)
    # perturb every step after t: features, teacher CAS, and a segment and a point in the future
    future.features[step + 1:] = rng.normal(size=future.features[step + 1:].shape) * 5
    future.teacher_cas[step + 1:] = rng.uniform(size=future.teacher_cas[step + 1:].shape)
    future.teacher_class_prob[step + 1:] = rng.uniform(size=future.teacher_class_prob[step + 1:].shape)
    future.segments = np.array([[2.0, 5.0], [(step + 2) / 2, (step + 6) / 2]])
    future.segment_labels = np.array([1, 2])
    future.points = np.array([3.0, (step + 3) / 2])
    future.point_labels = np.array([1, 0])
    data, data_future = _windows(video), _windows(future)

    here, there = _at(data, step), _at(data_future, step)
    for key in ("windows", "cas", "valid"):
        assert torch.equal(here[key], there[key]), key
    model = _model()
    with torch.no_grad():
        out, out_future = model(here["windows"]), model(there["windows"])
        assert set(out) == {"cas", "anticipation", "class_logits", "regression", "point_logits", "point_offset"}
        for key in out:
            assert torch.equal(out[key], out_future[key]), key
        # not vacuous: one step later the perturbation is in the window and the outputs move
        later, later_future = _at(data, step + 1)["windows"], _at(data_future, step + 1)["windows"]
        assert not torch.equal(later, later_future)
        assert not torch.equal(model(later)["class_logits"], model(later_future)["class_logits"])


def test_window_is_the_last_w_steps_left_zero_padded_and_never_crosses_videos():
    first, second = _video(0, num_steps=10, duration=5.0), _video(1, num_steps=12, duration=6.0)
    data = _windows(first, second)
    assert len(data) == 22
    # step 2 of the first video: W - 3 = 3 zero rows, then steps 0, 1, 2
    batch = _at(data, 2)
    want = np.concatenate([np.zeros((3, FEATURES), np.float32), first.features[:3]])
    np.testing.assert_array_equal(batch["windows"][0].numpy(), want)
    np.testing.assert_array_equal(batch["valid"][0].numpy(), [False] * 3 + [True] * 3)
    np.testing.assert_array_equal(batch["cas"][0, 3:].numpy(), first.teacher_cas[:3])
    np.testing.assert_array_equal(batch["cas"][0, :3].numpy(), 0)
    # step 7 of the first video: steps 2..7, no padding
    np.testing.assert_array_equal(_at(data, 7)["windows"][0].numpy(), first.features[2:8])
    # step 0 of the second video (sample 10): zeros, then its own first step; nothing of the first video
    start = _at(data, 10)
    want = np.concatenate([np.zeros((WINDOW - 1, FEATURES), np.float32), second.features[:1]])
    np.testing.assert_array_equal(start["windows"][0].numpy(), want)
    np.testing.assert_array_equal(start["cas"][0, -1].numpy(), second.teacher_cas[0])


def test_a_sample_does_not_depend_on_the_rest_of_its_batch():
    data, model = _windows(_video(0)), _model()
    with torch.no_grad():
        alone = model(_at(data, 12)["windows"])
        together = model(_at(data, 3, 12, 29)["windows"])
    for key in alone:
        torch.testing.assert_close(alone[key][0], together[key][1], rtol=1e-5, atol=1e-6)


def test_calibration_bias_is_r_plus_log_r_of_the_background_probability():
    """CASS regresses the teacher's probabilities: r = clamp(1 - background, eps, 1), no sigmoid."""
    cas = torch.rand(2, WINDOW, C + 1)
    cas[0, 0, -1] = 1.0                    # background certain: r clamped at eps 1e-6
    cas[1, 1, -1] = 0.0                    # action certain: r = 1, bias = 1 + log 1 = 1
    cas[1, 2, -1] = 1.3                    # a regression overshoot is clamped too
    cas[1, 3, -1] = 0.9                    # r = 0.1: bias = 0.1 + log 0.1 = -2.2 (a sigmoid gave -0.8)
    bias = _model().calibration_bias(cas)
    assert bias.shape == (2, 1, 1, WINDOW)
    r = np.clip(1.0 - cas[..., -1].double().numpy(), 1e-6, 1.0)
    np.testing.assert_allclose(bias[:, 0, 0].double().numpy(), r + np.log(r), rtol=1e-5, atol=1e-5)
    assert abs(float(bias[0, 0, 0, 0]) - (1e-6 + math.log(1e-6))) < 1e-4
    assert abs(float(bias[1, 0, 0, 1]) - 1.0) < 1e-6
    assert abs(float(bias[1, 0, 0, 3]) - (0.1 + math.log(0.1))) < 1e-5
    # over the range of teacher probabilities the bias spans more than 10 (the sigmoid gave 0.85)
    assert float(bias.max() - bias.min()) > 10


def test_cross_attention_adds_the_bias_to_every_query_and_head():
    """One decoder layer against the formula written out: softmax(QK^T / sqrt(d) + bias) V."""
    layer = _model().decoder[0]
    heads, head_dim = STUDENT["decoder_heads"], D // STUDENT["decoder_heads"]
    torch.manual_seed(5)
    queries, query_pos = torch.randn(2, len(ANCHORS), D), torch.randn(1, len(ANCHORS), D)
    memory, bias = torch.randn(2, WINDOW, D), torch.randn(2, 1, 1, WINDOW) * 2
    memory_pos = torch.randn(WINDOW, D)
    with torch.no_grad():
        got = layer(queries, query_pos, memory, memory_pos, bias)
        with_pos = queries + query_pos
        x = layer.norms[0](queries + layer.self_attn(with_pos, with_pos, queries, need_weights=False)[0])
        q = layer.q(x + query_pos).view(2, -1, heads, head_dim)
        k = layer.k(memory + memory_pos).view(2, WINDOW, heads, head_dim)
        v = layer.v(memory).view(2, WINDOW, heads, head_dim)
        logits = torch.einsum("bmhd,bwhd->bhmw", q, k) / math.sqrt(head_dim) + bias[:, :, 0, :][:, :, None, :]
        attended = torch.einsum("bhmw,bwhd->bmhd", logits.softmax(-1), v).reshape(2, -1, D)
        x = layer.norms[1](x + layer.out(attended))
        want = layer.norms[2](x + layer.ffn(x))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def _perturb_cass(model):
    other = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in other.cass.parameters():
            parameter.add_(torch.randn_like(parameter))
    return other


def test_without_calibration_the_cass_head_cannot_change_the_instance_outputs():
    windows = torch.randn(3, WINDOW, FEATURES)
    with torch.no_grad():
        plain = _model(calibration=False)
        a, b = plain(windows), _perturb_cass(plain)(windows)
        assert not torch.equal(a["cas"], b["cas"])
        for key in ("class_logits", "regression", "point_logits", "point_offset", "anticipation"):
            assert torch.equal(a[key], b[key]), key

        calibrated = _model(calibration=True)
        a, b = calibrated(windows), _perturb_cass(calibrated)(windows)
        assert not torch.allclose(a["class_logits"], b["class_logits"])
        assert not torch.allclose(a["regression"], b["regression"])


def test_output_shapes():
    model = _model()
    with torch.no_grad():
        out = model(torch.randn(5, WINDOW, FEATURES))
        inference = model(torch.randn(5, WINDOW, FEATURES), heads="inference")
    m = len(ANCHORS)
    assert out["cas"].shape == (5, WINDOW, C + 1)
    assert out["anticipation"].shape == (5, C + 1)
    assert out["class_logits"].shape == (5, m, C + 1)
    assert out["regression"].shape == (5, m, 2)
    assert out["point_logits"].shape == (5, m, C + 1)
    assert out["point_offset"].shape == (5, m)
    assert "anticipation" not in inference and inference["class_logits"].shape == (5, m, C + 1)


def test_heads_of_one_decode_equal_the_full_inference_outputs():
    """The engine asks for its decode's heads only: the same numbers, bit for bit, without the others."""
    model = _model().eval()
    windows = torch.randn(4, WINDOW, FEATURES)
    with torch.no_grad():
        full = model(windows, heads="inference")
        instance, point = model(windows, heads="instance"), model(windows, heads="point")
    assert set(instance) == {"cas", "class_logits", "regression"}
    assert set(point) == {"cas", "point_logits", "point_offset"}
    for key in ("class_logits", "regression"):
        assert torch.equal(instance[key], full[key])
    for key in ("point_logits", "point_offset"):
        assert torch.equal(point[key], full[key])
    with pytest.raises(ValueError, match="heads must be one of"):
        model(windows, heads="segments")


def _linear(d_in, d_out):
    return d_in * d_out + d_out


def test_parameter_count_by_hand():
    # docs/method.md 4 layer by layer; D = 16, two streams of 4 features each -> D/2 each.
    attention = 4 * _linear(D, D)                           # in_proj (q, k, v) + out_proj
    layer_norm = 2 * D
    projection = 2 * _linear(FEATURES // 2, D // 2)
    encoder = ENC_LAYERS * (attention + _linear(D, FFN) + _linear(FFN, D) + 2 * layer_norm) + layer_norm
    cass = _linear(D, D) + _linear(D, C + 1)
    anticipation = _linear(D, D // 4) + _linear(WINDOW * (D // 4), D) + _linear(D, C + 1)
    queries = 2 * len(ANCHORS) * D                          # content (zeros) + position per anchor
    decoder = DEC_LAYERS * (attention + 4 * _linear(D, D) + _linear(D, FFN) + _linear(FFN, D) + 3 * layer_norm)
    heads = (2 * (_linear(D, D) + _linear(D, C + 1))       # instance and point classifiers
             + _linear(D, D) + _linear(D, 2)                # (z0, z1) regressor
             + _linear(D, D) + _linear(D, 1))               # point offset regressor
    total = projection + encoder + cass + anticipation + queries + decoder + heads
    assert count_parameters(_model()) == total


def _matmul(rows, d_in, d_out):
    return 2 * rows * d_in * d_out


def test_flops_per_step_counts_something_and_the_training_head_costs_more():
    model = _model()
    inference, everything = flops_per_step(model), flops_per_step(model, heads="all")
    assert 0 < inference < everything
    assert model.training is False and flops_per_step(model.train()) == inference and model.training


def test_flops_per_step_by_hand():
    """Every matrix product of one step's inference path, 2 FLOPs per multiply-add.

    Regression test for a fixed bug: on the CPU torch's flop counter does not count the fused attention
    kernel (aten._scaled_dot_product_flash_attention_for_cpu) that the unmasked self-attention
    of the encoder and decoder runs on, so flops_per_step misses QK^T and AV of those layers
    (2 * 2 * W * W * D per encoder layer, 2 * 2 * M * M * D per decoder layer). Counting under
    torch.nn.attention.sdpa_kernel(SDPBackend.MATH) gives this hand count exactly.
    """
    w, m = WINDOW, len(ANCHORS)
    projection = 2 * _matmul(w, FEATURES // 2, D // 2)
    encoder = ENC_LAYERS * (_matmul(w, D, 3 * D) + 2 * 2 * w * w * D + _matmul(w, D, D)
                            + _matmul(w, D, FFN) + _matmul(w, FFN, D))
    cass = _matmul(w, D, D) + _matmul(w, D, C + 1)
    decoder = DEC_LAYERS * (_matmul(m, D, 3 * D) + 2 * 2 * m * m * D + _matmul(m, D, D)     # self-attention
                            + _matmul(m, D, D) + 2 * _matmul(w, D, D) + 2 * 2 * m * w * D   # cross: q, k, v, QK, AV
                            + _matmul(m, D, D) + _matmul(m, D, FFN) + _matmul(m, FFN, D))
    heads = (2 * (_matmul(m, D, D) + _matmul(m, D, C + 1)) + _matmul(m, D, D) + _matmul(m, D, 2)
             + _matmul(m, D, D) + _matmul(m, D, 1))
    inference = projection + encoder + cass + decoder + heads
    anticipation = _matmul(w, D, D // 4) + _matmul(1, w * (D // 4), D) + _matmul(1, D, C + 1)
    model = _model()
    assert flops_per_step(model) == inference
    assert flops_per_step(model, heads="all") == inference + anticipation


# ----------------------------------------------------------------------------- checkpoints

def _saved(tmp_path):
    model = _model(calibration=True, seed=3)
    path = tmp_path / "student.pt"
    save_student(path, model, ["a", "b", "c"], "onpoint", RUNS["onpoint"].as_dict(), 4.0, extra={"dataset": "x"})
    return model, path


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model, path = _saved(tmp_path)
    torch.load(path, weights_only=True)            # plain types and tensors only
    loaded, meta = load_student(path)
    assert not loaded.training
    windows = torch.randn(4, WINDOW, FEATURES)
    with torch.no_grad():
        want, got = model(windows), loaded(windows)
    for key in want:
        assert torch.equal(want[key], got[key]), key
    assert meta["classes"] == ["a", "b", "c"] and meta["run"] == "onpoint"
    assert meta["variant"] == RUNS["onpoint"].as_dict() and meta["steps_per_second"] == 4.0
    assert meta["config"]["window"] == WINDOW and meta["config"]["anchors"] == ANCHORS
    assert meta["config"]["calibration"] is True and meta["extra"] == {"dataset": "x"}
    assert "state" not in meta


def _one_line_error(path, match):
    with pytest.raises(OnPointError) as error:
        load_student(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and match in message, message


def test_bad_checkpoints_fail_with_one_line(tmp_path):
    _, path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)

    future = tmp_path / "future.pt"
    torch.save({**payload, "version": 99}, future)
    _one_line_error(future, "version 99")

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a torch file\n" * 10)
    _one_line_error(garbage, "not a readable student checkpoint")

    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "something-else", "version": 1}, foreign)
    _one_line_error(foreign, "not an OnPoint student checkpoint")

    mismatched = tmp_path / "mismatched.pt"
    torch.save({**payload, "config": {**payload["config"], "d_model": 2 * D, "ffn_dim": 2 * FFN}}, mismatched)
    _one_line_error(mismatched, "weights do not fit")

    _one_line_error(tmp_path / "missing.pt", "not found")


def test_instance_loss_by_hand_with_a_regression_scale():
    from onpoint_core.student.losses import total_loss

    # 1 window, 2 anchors, 1 action class + background; anchor 0 positive, anchor 1 background
    out = {"class_logits": torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]]),
           "regression": torch.tensor([[[1.0, -1.0], [5.0, 5.0]]])}
    batch = {"classes": torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]),
             "regression": torch.tensor([[[0.5, 0.0], [0.0, 0.0]]]),
             "positive": torch.tensor([[True, False]])}
    # CE: anchor 0 -log(1/2), anchor 1 -log(1/4), mean over anchors; L1 over the positive
    # anchor's two coordinates: (|1 - 0.5| + |-1 - 0|) / 2 = 0.75 (anchor 1's 5s never count)
    ce = (math.log(2.0) + math.log(4.0)) / 2
    weights = {"alpha": 2.0, "beta": 1.0, "gamma": 1.0, "delta": 1.0}
    for scale, expected in ((1.0, ce + 0.75), (0.1, ce + 0.075), (0.0, ce)):   # the weight is always given
        weights["regression"] = scale
        total, terms = total_loss(out, batch, RUNS["teacher_oat"], weights)
        assert terms["ins"] == pytest.approx(expected, rel=1e-6)
        assert float(total) == pytest.approx(2.0 * expected, rel=1e-6)
        assert terms["cass"] is None and terms["ant"] is None and terms["pnt"] is None


# ----------------------------------------------------------------------------- module diagnostics

def test_anticipation_positive_rate_counts_windows_with_a_positive_target():
    from onpoint_core.student.diagnostics import anticipation_positive_rate

    video = _video(3)
    video.teacher_cas[:] = 0.9                   # the CAS does not decide the targets ...
    video.teacher_class_prob[:] = 0.1            # ... the class probabilities do:
    video.teacher_class_prob[20:22, 0] = 0.9     # class 0 reaches 0.5 at steps 20 and 21 only
    data = _windows(video)
    # the target at step t looks at steps t+1..t+HORIZON: positive for t in [20 - HORIZON, 20]
    expected = (21 - max(0, 20 - HORIZON)) / video.num_steps
    assert anticipation_positive_rate(data) == pytest.approx(expected)
    video.teacher_class_prob = None               # a run without teacher probabilities has no such targets
    assert anticipation_positive_rate(_windows(video)) is None


class _Videos:
    """The dataset methods calibration_gap reads: one val video, action where feature 0 is 1."""

    def __init__(self, features, duration, segments):
        import pandas as pd

        self._features, self._duration = features, duration
        self._segments = pd.DataFrame(segments, columns=["start", "end"])

    def video_ids(self, subset):
        return ["v"] if subset == "val" else []

    def features(self, video_id):
        return self._features

    def video(self, video_id):
        return {"duration": self._duration}

    def segments_of(self, video_id):
        return self._segments


class _BiasModel(torch.nn.Module):
    """CASS background probability = 0.5 + scale x (0.5 - feature 0): with scale 1, certain
    background off actions (feature 0 = 0) and certain action on them."""

    def __init__(self, scale):
        super().__init__()
        self.config = {"calibration": True, "window": WINDOW}
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))

    def forward(self, windows, heads="all"):
        cas = torch.zeros(*windows.shape[:2], C + 1)
        cas[..., -1] = 0.5 + self.scale * (0.5 - windows[..., 0])
        return {"cas": cas}

    calibration_bias = OnlineStudent.calibration_bias


def test_calibration_gap_measures_how_far_the_bias_separates_action_from_background():
    from onpoint_core.student.diagnostics import calibration_gap

    features = np.zeros((40, FEATURES), np.float32)
    features[10:20, 0] = 1.0                    # 2 steps/s: action from 5 s to 10 s
    videos = _Videos(features, 20.0, [[5.0, 10.0]])
    # scale 1: r = 1 inside (bias 1), r = eps outside (bias ~ log 1e-6)
    gap = calibration_gap(_BiasModel(1.0), videos, stride=1)
    assert gap == pytest.approx(1.0 - (1e-6 + math.log(1e-6)), rel=1e-4)
    assert calibration_gap(_BiasModel(0.0), videos, stride=1) == pytest.approx(0.0, abs=1e-6)   # float32 sums
    off = _BiasModel(1.0)
    off.config["calibration"] = False
    assert calibration_gap(off, videos) is None


def test_the_ablation_without_cass_has_no_calibration():
    """Without CASS nothing supervises what the calibration would read (docs/method.md 7): the paper's row
    drops both; the other switches stay as in OnPoint."""
    ablation, onpoint = RUNS["no_cass_anticipation"], RUNS["onpoint"]
    assert not ablation.cass and not ablation.anticipation and not ablation.calibration
    assert (ablation.instance_targets, ablation.points, ablation.inference) == \
        (onpoint.instance_targets, onpoint.points, onpoint.inference)
