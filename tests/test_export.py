"""`onpoint export`: the student's window network as TorchScript gives the checkpoint's outputs,
streams to the same proposals through the StreamingEngine, and carries the checkpoint's meta."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from onpoint_core.cli import main
from onpoint_core.errors import OnPointError
from onpoint_core.online.engine import StreamingEngine, stream_videos
from onpoint_core.student.checkpoint import load_student
from onpoint_core.student.export import OUTPUT_KEYS, load_exported
from tests.test_online import checkpoints, features, one_thread  # noqa: F401  (fixtures)


@pytest.mark.parametrize("mode", ["instance", "point"])
def test_exported_network_matches_the_checkpoint_and_streams_the_same(tmp_path, checkpoints, mode):  # noqa: F811
    out = tmp_path / "student.ts"
    result = CliRunner().invoke(main, ["export", "--model", str(checkpoints[mode]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    model, meta = load_student(checkpoints[mode])
    exported, exported_meta = load_exported(out)
    assert exported_meta["classes"] == meta["classes"] and exported_meta["variant"] == meta["variant"]
    assert exported_meta["config"] == meta["config"] and exported_meta["steps_per_second"] == meta["steps_per_second"]
    window, dim = meta["config"]["window"], meta["config"]["feature_dim"]
    for batch in (1, 3, 7):                        # traced at 2: the batch size stays dynamic
        windows = torch.randn(batch, window, dim, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            mine, theirs = exported(windows), model(windows, heads="inference")
        assert set(mine) == set(OUTPUT_KEYS)
        for key in OUTPUT_KEYS:
            torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=1e-5)
    # plain torch.jit.load works without this package's loader, on the same windows
    plain = torch.jit.load(str(out))
    with torch.no_grad():
        torch.testing.assert_close(plain(windows)["class_logits"], theirs["class_logits"], rtol=0, atol=1e-5)
    videos = {f"v{i}": features(25 + 9 * i, 40 + i) for i in range(3)}
    durations = {v: len(a) / 4.0 for v, a in videos.items()}
    original = stream_videos(StreamingEngine(model, meta), videos, durations, progress=False)
    streamed = stream_videos(StreamingEngine(exported, exported_meta), videos, durations, progress=False)
    assert len(original) > 0 and original.video_id.tolist() == streamed.video_id.tolist()
    assert original.label.tolist() == streamed.label.tolist()
    np.testing.assert_allclose(streamed[["start", "end", "score", "gen_time"]].to_numpy(),
                               original[["start", "end", "score", "gen_time"]].to_numpy(), rtol=0, atol=1e-5)


def test_load_exported_refuses_files_it_did_not_write(tmp_path):
    (tmp_path / "junk.ts").write_bytes(b"not a model")
    with pytest.raises(OnPointError, match="junk.ts: not a TorchScript file"):
        load_exported(tmp_path / "junk.ts")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "foreign.ts"))
    with pytest.raises(OnPointError, match="foreign.ts: TorchScript file without the onpoint meta"):
        load_exported(tmp_path / "foreign.ts")
    result = CliRunner().invoke(main, ["export", "--model", str(tmp_path / "missing.pt"), "--out",
                                       str(tmp_path / "x.ts")])
    assert result.exit_code == 1 and "missing.pt" in result.output and not (tmp_path / "x.ts").exists()
