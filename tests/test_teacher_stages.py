"""Teacher stages end to end on tiny data: integrity (no GT reaches the teacher), determinism, outputs."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO_ROOT

TINY = {
    "synthetic": {"num_train_videos": 8, "num_test_videos": 3, "video_seconds": [40, 60]},
    "synthetic_dense": {"num_train_videos": 6, "num_test_videos": 2, "video_seconds": [60, 90]},
}
TEACHER_TINY = {"hrpro": {"iterations": 4, "videos_per_iteration": 4},
                "tsaspc": {"epochs": 3, "growth_epochs": 2, "batch_size": 4}}


def _stage(script, cwd, *args):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "stages" / script), *args], cwd=cwd,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result


TEACHER_OF = {"synthetic": "hrpro", "synthetic_dense": "tsaspc"}


def _workdir(tmp_path, dataset, raw_params):
    params = raw_params
    kind = TEACHER_OF[dataset]
    params.update(dataset=dataset, teacher=kind)
    params["datasets"][dataset]["generator"].update(TINY[dataset])
    recipe = params["hrpro" if kind == "hrpro" else "tsaspc"]["recipes"][params["recipe"]]
    for key, value in TEACHER_TINY[kind].items():      # each key where it lives: the recipe or `train`
        (recipe if key in recipe else params[kind]["train"])[key] = value
    params[kind]["pseudo"]["min_point_coverage"] = 0.0   # a few updates teach nothing: keep going anyway
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _teacher_outputs(work):
    _stage("train_teacher.py", work)
    _stage("cache_teacher.py", work)
    _stage("pseudo_segments.py", work)
    cas = {p.name: np.load(p) for p in sorted((work / "data" / "teacher" / "cas").glob("*.npy"))}
    return cas, pd.read_parquet(work / "data" / "pseudo" / "pseudo_segments.parquet")


@pytest.mark.parametrize("dataset", ["synthetic", "synthetic_dense"])
def test_training_gt_never_reaches_the_teacher(tmp_path, raw_params, dataset):
    work = _workdir(tmp_path / "w", dataset, raw_params)
    _stage("make_dataset.py", work)
    _stage("make_points.py", work)
    cas, pseudo = _teacher_outputs(work)

    # Shuffle labels and scramble the times of every training segment; points stay as they were.
    segments_path = work / "data" / "dataset" / "segments.parquet"
    segments = pd.read_parquet(segments_path)
    videos = pd.read_parquet(work / "data" / "dataset" / "videos.parquet")
    train = segments.video_id.isin(videos.video_id[videos.subset.isin(["train", "val"])])
    rng = np.random.default_rng(1)
    segments.loc[train, "label"] = rng.permutation(segments.loc[train, "label"].to_numpy())
    segments.loc[train, "start"] = segments.loc[train, "start"] * 0.5
    segments.to_parquet(segments_path)
    shutil.rmtree(work / "data" / "teacher")
    cas_after, pseudo_after = _teacher_outputs(work)

    assert cas.keys() == cas_after.keys()
    for name in cas:
        assert np.array_equal(cas[name], cas_after[name]), name
    pd.testing.assert_frame_equal(pseudo, pseudo_after)


def test_same_seed_same_cache_and_the_outputs_a_user_reads(tmp_path, raw_params):
    first = _workdir(tmp_path / "a", "synthetic", raw_params)
    _stage("make_dataset.py", first)
    _stage("make_points.py", first)
    cas, pseudo = _teacher_outputs(first)
    second = tmp_path / "b"
    shutil.copytree(first, second, ignore=shutil.ignore_patterns("teacher", "pseudo", "models", "metrics", "plots"))
    cas_again, pseudo_again = _teacher_outputs(second)
    assert all(np.array_equal(cas[k], cas_again[k]) for k in cas)
    pd.testing.assert_frame_equal(pseudo, pseudo_again)

    videos = pd.read_parquet(first / "data" / "dataset" / "videos.parquet")
    num_classes = len(json.loads((first / "data" / "dataset" / "classes.json").read_text())["classes"])
    for row in videos.itertuples():
        values = cas[f"{row.video_id}.npy"]
        assert values.shape == (row.n_steps, num_classes + 1)
    assert list(pseudo.columns) == ["video_id", "label", "start", "end", "score", "point"]
    assert (pseudo.start <= pseudo.end).all()
    assert set(pseudo.video_id) <= set(videos.video_id[videos.subset.isin(["train", "val"])])

    assert (first / "models" / "teacher.pt").exists()
    assert not (first / "models" / "teacher.resume.pt").exists()   # resume state is dropped once done
    train_metrics = json.loads((first / "metrics" / "teacher_train.json").read_text())
    train_log = json.loads((first / "logs" / "teacher_train.json").read_text())
    cache_metrics = json.loads((first / "metrics" / "teacher_cache.json").read_text())
    pseudo_metrics = json.loads((first / "metrics" / "pseudo_segments.json").read_text())
    pseudo_log = json.loads((first / "logs" / "pseudo_segments.json").read_text())
    # metrics hold results only (what dvc exp show compares); run facts go to logs/
    assert set(train_metrics) == {"final_loss"} and train_log["steps"] == TEACHER_TINY["hrpro"]["iterations"]
    assert set(cache_metrics["offline_test"]["mAP"]) == {"0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"}
    assert "seconds" not in cache_metrics and "average" not in cache_metrics["offline_test"]
    assert set(pseudo_metrics) == {"precision", "recall", "f1", "mean_tiou", "longest_fraction_of_video"}
    assert 0 < pseudo_metrics["longest_fraction_of_video"] <= 1
    assert "points_without_pseudo_segment" in pseudo_log
    curve = pd.read_csv(first / "metrics" / "teacher_loss.csv")
    assert len(curve) == train_log["steps"] and curve.loss.notna().all()
    pngs = sorted((first / "plots" / "teacher_timelines").glob("*.png"))
    assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_a_teacher_whose_pseudo_segments_miss_the_points_stops_its_stage(tmp_path, raw_params):
    work = _workdir(tmp_path / "w", "synthetic", raw_params)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["hrpro"]["pseudo"]["min_point_coverage"] = 1.0      # every point must be covered: a tiny teacher cannot
    params["hrpro"]["pseudo"]["max_fraction_of_video"] = 0.01  # (and nothing longer than 1% of a video)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    for script in ("make_dataset.py", "make_points.py", "train_teacher.py", "cache_teacher.py"):
        _stage(script, work)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "stages" / "pseudo_segments.py")], cwd=work,
                            capture_output=True, text=True)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]         # (the stage prints its params first)
    assert "Traceback" not in result.stderr and last.startswith("Error: params.yaml: hrpro.pseudo.min_point_coverage:")
    assert "% of the" in last and "points, below 100%" in last
    assert not (work / "data" / "pseudo" / "pseudo_segments.parquet").exists()
