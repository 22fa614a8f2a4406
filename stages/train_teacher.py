"""Stage `teacher_train`: fit the dataset's offline teacher on the training videos' points."""

import time

import click
import pandas as pd

from onpoint_core.config import load_params
from onpoint_core.data.dataset import load_dataset
from onpoint_core.errors import friendly_errors
from onpoint_core.io import atomic_file, write_json
from onpoint_core.teachers.runner import (
    TRAIN_SUBSETS,
    build_teacher,
    read_points,
    save_checkpoint,
    teacher_videos,
)


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--dataset", "dataset_dir", default="data/dataset", show_default=True)
@click.option("--points", "points_path", default="data/points/points.parquet", show_default=True)
@click.option("--out", default="models/teacher.pt", show_default=True)
@click.option("--metrics", default="metrics/teacher_train.json", show_default=True)
@click.option("--curve", default="metrics/teacher_loss.csv", show_default=True)
@click.option("--resume-file", default="models/teacher.resume.pt", show_default=True,
              help="Training state saved every few iterations/epochs; a crashed run resumes from it.")
@friendly_errors
def main(params_path, dataset_dir, points_path, out, metrics, curve, resume_file):
    cfg = load_params(params_path)
    kind = cfg["data"]["teacher"]
    dataset = load_dataset(dataset_dir, check_files=False)
    points = read_points(points_path)
    videos = teacher_videos(dataset, points, TRAIN_SUBSETS)   # features + points: no GT segments
    teacher = build_teacher(kind, dataset, cfg[kind])
    began = time.perf_counter()
    history = teacher.fit(videos, checkpoint=resume_file)
    seconds = time.perf_counter() - began
    save_checkpoint(out, kind, teacher, dataset, history)
    frame = pd.DataFrame(history)
    frame.insert(0, "step", range(1, len(frame) + 1))
    with atomic_file(curve) as handle:
        frame.to_csv(handle, index=False)
    summary = {"teacher": kind, "train_videos": len(videos), "train_points": int(sum(len(v.point_steps) for v in videos)),
               "steps": len(history), "final_loss": float(frame.loss.iloc[-1]) if len(frame) else None,
               "seconds": round(seconds, 1)}
    if hasattr(teacher, "label_report"):
        summary["labels"] = teacher.label_report()
    write_json(metrics, summary)
    click.echo(f"teacher {kind}: {len(history)} steps in {seconds:.1f} s, final loss {summary['final_loss']:.4f} -> {out}")


if __name__ == "__main__":
    main()
