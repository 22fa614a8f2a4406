"""How good can the TSASPC teacher's pseudo segments be on this data? Three references.

    python scripts/teacher_ceiling.py                        # after `dvc repro` with teacher=tsaspc
    python scripts/teacher_ceiling.py --dataset D --points P --params params.yaml

Item 4 of the teacher's quality target compares the pseudo segments of one timing with those of
another (P/R at tIoU 0.5 on the val videos). Data differ in how hard they are to cut at that
tIoU: at 2 steps/s a 1 s action is two steps long, and one step off halves its tIoU. This script
measures, on the val videos:

- `grid`: runs of the ground-truth labels on the teacher's step grid, as pseudo segments (what
  step quantisation alone costs);
- `initial_labels`: runs of the teacher's initial clustering-ensemble labels around the points
  (where training starts from; computed from features and points only);
- `supervised_runs`, `supervised_point_anchored`: the same MS-TCN, recipe and losses, its cross
  entropy trained on the ground-truth frame labels of every training frame (no growth), its pseudo
  segments made either way of `tsaspc.pseudo.segments`: the network's ceiling when its labels are
  perfect.

`supervised_*` reads the GT of training videos, so it is a reference, never a POTAL number. Prints
one JSON line; nothing in the workspace is written.
"""

from __future__ import annotations

import dataclasses
import json
import time

import click
import numpy as np

from onpoint_core.config import TSASPCPseudo, load_stage
from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.tables import read_points
from onpoint_core.errors import friendly_errors
from onpoint_core.teachers import clustering
from onpoint_core.teachers.runner import (PSEUDO_COLUMNS, build_teacher, pseudo_segments, run_teacher,
                                          steps_per_second, teacher_videos, to_seconds_table)
from pseudo_quality import quality as split_quality     # the sibling script (run as python scripts/...)


def grid_labels(dataset, video_id):
    """GT label of each teacher step (background = num_classes), sampled at the step centres."""
    n = dataset.n_steps(video_id, teacher=True)
    rate = steps_per_second(dataset, video_id)
    labels = np.full(n, dataset.num_classes, np.int64)
    centres = (np.arange(n) + 0.5) / rate
    gt = dataset.segments_of(video_id)
    if len(gt):
        for start, end, label in zip(gt.start, gt.end, dataset.label_index(gt.label)):
            labels[(centres >= start) & (centres < end)] = label
    return labels


def runs_table(dataset, labels_by_video):
    """Action runs of per-step labels as a pseudo-segment table in seconds (score 1)."""
    rows = {}
    for video_id, labels in labels_by_video.items():
        starts, ends, classes = clustering.runs(np.asarray(labels))
        keep = (classes >= 0) & (classes < dataset.num_classes)
        rows[video_id] = np.stack([classes[keep], starts[keep], ends[keep], np.ones(keep.sum()),
                                   np.full(keep.sum(), np.nan)], axis=1).astype(np.float64)
    return to_seconds_table(dataset, rows, PSEUDO_COLUMNS, point_in_seconds=True)


def quality(dataset, table, videos, tiou):
    """P/R (%) and mean tIoU at `tiou` on the val videos (`videos`: the val ids, for the caller's
    readability; pseudo_quality's measure, so both scripts count alike)."""
    return split_quality(dataset, table[table.video_id.isin(videos)], ("val",), tiou)["val"]


def train_supervised(teacher, dataset, videos):
    """Fit the teacher with its ensemble labels replaced by the GT frame labels, growth off."""
    teacher.cfg = dataclasses.replace(teacher.cfg, growth_epochs=0)
    original = teacher.make_labels

    def make_labels(vids):
        out = original(vids)
        for video in vids:
            teacher._info[video.video_id]["labels"] = grid_labels(dataset, video.video_id)
        teacher._refresh_labels()
        return out

    teacher.make_labels = make_labels
    teacher._grow = lambda *args, **kwargs: None
    return teacher.fit(videos, progress=True)


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--dataset", "dataset_dir", default="data/dataset", show_default=True)
@click.option("--points", "points_path", default="data/points/points.parquet", show_default=True)
@click.option("--tiou", default=0.5, show_default=True)
@click.option("--skip-supervised", is_flag=True, help="Only the grid and initial-label references (seconds).")
@friendly_errors
def main(params_path, dataset_dir, points_path, tiou, skip_supervised):
    cfg = load_stage("teacher_train", params_path)
    if cfg.teacher != "tsaspc":
        raise click.UsageError(f"{params_path}: teacher is {cfg.teacher!r}; this script measures the tsaspc teacher")
    dataset = load_dataset(dataset_dir, check_files=False)
    points = read_points(points_path)
    val = dataset.video_ids("val")
    out = {"dataset": dataset.meta.get("source"), "val_videos": len(val)}
    out["grid"] = quality(dataset, runs_table(dataset, {v: grid_labels(dataset, v) for v in val}), val, tiou)

    teacher = build_teacher("tsaspc", dataset, cfg.train)
    val_videos = teacher_videos(dataset, points, ("val",))
    teacher.make_labels(val_videos)
    out["initial_labels"] = quality(dataset, runs_table(dataset, teacher.initial_labels), val, tiou)
    out["initial_labelled_fraction"] = round(teacher.report["labelled_fraction_initial"], 3)

    if not skip_supervised:
        began = time.perf_counter()
        teacher = build_teacher("tsaspc", dataset, cfg.train)
        train_supervised(teacher, dataset, teacher_videos(dataset, points, ("train",)))
        cas = {v: o.cas for v, o in run_teacher(teacher, dataset, 1, progress=False).items()}
        for mode in ("runs", "point_anchored"):
            way = TSASPCPseudo(segments=mode, min_point_coverage=0.0)
            out[f"supervised_{mode}"] = quality(dataset, pseudo_segments(teacher, dataset, cas, points, None, way),
                                                val, tiou)
        out["supervised_seconds"] = round(time.perf_counter() - began, 1)
    click.echo(json.dumps(out))


if __name__ == "__main__":
    main()
