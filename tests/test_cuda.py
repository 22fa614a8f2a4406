"""The CUDA path: bf16 training, checkpoints that move between devices, fp16 streaming.

Skipped on machines without a GPU (CI and the 2-core development machines); `bench/gpu_check.sh`
runs this file on a GPU machine. The CPU tests cover the same code in float32.
"""

import numpy as np
import pytest
import torch

from onpoint_core.online.engine import StreamingEngine, stream_videos
from onpoint_core.student import runner
from onpoint_core.student.checkpoint import load_student
from tests.test_online import RATE, checkpoints, features, stream_one, stream_with_future_noise  # noqa: F401
from tests.test_student_training import tiny_cfg, world  # noqa: F401  (world is a fixture)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
CUDA = torch.device("cuda")


def test_student_trains_on_cuda_and_its_checkpoint_runs_on_the_cpu(world, tmp_path):  # noqa: F811
    cfg = tiny_cfg("onpoint", epochs=3, train_stride=1, lr=1e-3, lr_step=100)
    model, variant, history, summary = runner.train(cfg, world["dataset"], world["paths"], device=CUDA,
                                                    progress=False)
    assert summary["device"].startswith("cuda")
    epochs = [row["loss"] for row in history if row["kind"] == "epoch"]
    assert all(np.isfinite(epochs)) and epochs[-1] < epochs[0]
    path = tmp_path / "student.pt"
    runner.save(path, model, world["dataset"], cfg, variant, summary)
    on_cpu, _ = load_student(path, device=torch.device("cpu"))
    assert next(on_cpu.parameters()).device.type == "cpu"
    windows = torch.randn(5, cfg.data.window, world["dataset"].meta["feature_dim"])
    model.eval()
    with torch.no_grad():
        expected = model(windows.to(CUDA), heads="inference")
        got = on_cpu(windows, heads="inference")
    for key, value in got.items():
        torch.testing.assert_close(value, expected[key].float().cpu(), rtol=1e-3, atol=1e-3)


def test_cuda_streaming_is_causal_and_agrees_with_the_cpu(checkpoints):  # noqa: F811
    model, meta = load_student(checkpoints["instance"], device=CUDA)
    video, clean, perturbed, cutoff = stream_with_future_noise(model, meta, precision="fp16")
    early = [p for p in clean if p["gen_time"] <= cutoff]
    assert len(early) >= 3
    assert [p for p in perturbed if p["gen_time"] <= cutoff] == early
    # fp16 on the GPU vs float32 on the CPU: the same proposals up to half-precision rounding
    cpu_model, cpu_meta = load_student(checkpoints["instance"], device=torch.device("cpu"))
    on_cpu = stream_one(cpu_model, cpu_meta, video)
    assert len(on_cpu) >= 3
    matched = sum(any(p["label"] == q["label"] and p["gen_time"] == q["gen_time"] and abs(p["start"] - q["start"]) < 0.05
                      and abs(p["end"] - q["end"]) < 0.05 for q in clean) for p in on_cpu)
    assert matched >= 0.9 * len(on_cpu), (matched, len(on_cpu), len(clean))


def test_cuda_batched_streams_agree_with_single_streams(checkpoints):  # noqa: F811
    model, meta = load_student(checkpoints["instance"], device=CUDA)
    lengths = {"a": 20, "b": 35, "c": 13, "d": 44}
    videos = {v: features(n, i + 10) for i, (v, n) in enumerate(lengths.items())}
    durations = {v: n / RATE for v, n in lengths.items()}
    table = stream_videos(StreamingEngine(model, meta, precision="fp16"), videos, durations, batch_size=3,
                          progress=False)
    for video, rows in table.groupby("video_id", sort=False):
        expected = stream_one(model, meta, videos[video], precision="fp16")
        assert rows.label.tolist() == [p["label"] for p in expected]
        np.testing.assert_allclose(rows.start, [p["start"] for p in expected], atol=2e-2)
    assert len(table) >= 5


def test_cuda_graph_replay_gives_the_eager_proposals(checkpoints):  # noqa: F811
    """One stream with the push captured as a CUDA graph: exactly the eager path's proposals, in
    fp32 and fp16; a second start() with another number of streams captures afresh."""
    model, meta = load_student(checkpoints["instance"], device=CUDA)
    video = features(60, 4)
    for precision in ("fp32", "fp16"):
        graphed = stream_one(model, meta, video, precision=precision)
        eager = stream_one(model, meta, video, precision=precision, cuda_graphs=False)
        assert len(eager) >= 3 and graphed == eager, precision
    engine = StreamingEngine(model, meta).start([RATE])
    engine.push(video[:1])
    assert engine._graph is not None and engine._graph.batch == 1
    engine.start([RATE, RATE])
    engine.push(np.stack([video[0], video[1]]))
    assert engine._graph.batch == 2
