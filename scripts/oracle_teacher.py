"""OnPoint with a perfect teacher: how far can the student get when every teacher target is the truth?

    python scripts/oracle_teacher.py                 # after `dvc repro` (reads its dataset and points)
    python scripts/oracle_teacher.py --run oracle_frames       # only the CAS / class probabilities from GT
    python scripts/oracle_teacher.py --run fully_supervised    # the same script's reference row

The fully supervised reference of the comparison is OAT trained on ground-truth segments with the
instance loss alone. OnPoint also learns from the teacher's CAS (L_cass), its future class
probabilities (L_ant) and the points (L_pnt). When OnPoint scores above the reference, is that its
auxiliary losses, or a reference that fell short? This trains the OnPoint network with the
teacher replaced by the ground truth of the training videos: pseudo segments = GT segments, CAS =
the GT frame labels one-hot (background last), class probabilities = the same without background;
points from the points stage, as OnPoint. `oracle_frames` replaces only the frame targets (CAS
and class probabilities) and keeps the teacher's pseudo segments: is it the teacher's CAS that
holds OnPoint back? Both read GT of training videos, so like the fully supervised run they are
references, never POTAL numbers.

The run trains by the same convergence rule as every row (epoch chosen on val) and prints one JSON
line: the kept epoch's val score and the test score of that epoch (reported, never chosen on).
Nothing in the workspace is written.
"""

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import click
import numpy as np

from onpoint_core.config import StageParams, load_stage
from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.tables import read_points
from onpoint_core.errors import friendly_errors
from onpoint_core.online import runner as online
from onpoint_core.student import runner
from onpoint_core.student.checkpoint import load_student
from onpoint_core.student.inputs import read_pseudo_segments, student_videos
from onpoint_core.student.variants import RUNS


def ground_truth_frames(dataset, video, segments):
    """T x (C+1) one-hot of the GT label at each student step centre (background last);
    `segments`: the video's rows of the GT segment table."""
    frames = np.zeros((video.num_steps, dataset.num_classes + 1), dtype=np.float32)
    frames[:, -1] = 1.0
    centres = (np.arange(video.num_steps) + 0.5) / video.rate
    labels = dataset.label_index(segments.label) if len(segments) else []
    for start, end, label in zip(segments.start, segments.end, labels):
        inside = (centres >= start) & (centres < end)
        frames[inside] = 0.0
        frames[inside, label] = 1.0
    return frames


def oracle_inputs(dataset, points, pseudo=None):
    """OnPoint's variant and training videos with the teacher's frame targets (CAS, class
    probabilities) replaced by the ground truth, and its pseudo segments too unless `pseudo` (the
    teacher's table) is given."""
    variant = replace(RUNS["onpoint"], instance_targets="gt" if pseudo is None else "pseudo")
    reader = replace(variant, cass=False, anticipation=False)        # read no teacher cache
    videos = student_videos(dataset, runner.TRAIN_SUBSETS, reader, points=points, pseudo=pseudo)
    by_video = dataset.segments.groupby("video_id")
    empty = dataset.segments.iloc[:0]
    for video in videos:
        rows = by_video.get_group(video.video_id) if video.video_id in by_video.groups else empty
        video.teacher_cas = ground_truth_frames(dataset, video, rows)
        video.teacher_class_prob = video.teacher_cas[:, :-1].copy()
    return variant, videos


def _scores(model_and_meta, dataset, online_cfg, subset):
    proposals, _ = online.stream_subset(online.engine_for(*model_and_meta, online_cfg), dataset, subset=subset,
                                        progress=False)
    result, _ = online.score(dataset, proposals, subset=subset)
    return {f"{subset}_{k}": round(result[k], 2) for k in ("avg_0.1_0.5", "avg_0.1_0.7", "f1_0.5")}


@click.command()
@click.option("--run", default="oracle", show_default=True,
              type=click.Choice(["oracle", "oracle_frames", "fully_supervised"]),
              help="oracle: OnPoint with ground-truth teacher targets; oracle_frames: only the CAS and class "
                   "probabilities from the ground truth, the teacher's pseudo segments kept; "
                   "fully_supervised: the reference row, trained and scored by this same script.")
@click.option("--seed", type=int, default=None, help="student.seed (default: params.yaml's).")
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@friendly_errors
def main(run, seed, params_path):
    cfg = load_stage("student_train", params_path)
    student = cfg.student.replace(run="onpoint" if run.startswith("oracle") else run,
                                  **({} if seed is None else {"seed": seed}))
    cfg = StageParams(cfg.stage, {**cfg.objects, "student": student}, cfg.view)
    dataset = load_dataset("data/dataset", check_files=False)
    paths = {"points": "data/points/points.parquet", "pseudo": "data/pseudo/pseudo_segments.parquet",
             "teacher_cache": "data/teacher", "resume": None}
    inputs = None
    if run.startswith("oracle"):
        pseudo = read_pseudo_segments(paths["pseudo"]) if run == "oracle_frames" else None
        inputs = oracle_inputs(dataset, read_points(paths["points"]), pseudo)
    began = time.perf_counter()
    model, variant, _, summary = runner.train(cfg, dataset, paths, progress=False, inputs=inputs)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "student.pt"
        runner.save(path, model, dataset, cfg, variant, summary)
        loaded = load_student(path)
    online_cfg = load_stage("online_eval", params_path).online
    print(json.dumps({"run": run, "seed": student.seed, "best_epoch": summary["best_epoch"],
                      "epochs_trained": summary["epochs_trained"],
                      "kept_val_avg_0.1_0.7": round(summary["val_avg_0.1_0.7"], 2),
                      **_scores(loaded, dataset, online_cfg, "val"), **_scores(loaded, dataset, online_cfg, "test"),
                      "seconds": round(time.perf_counter() - began)}))


if __name__ == "__main__":
    main()
