"""Stage `teacher_train`: fit the chosen offline teacher on the training videos' points.

Reads the teacher's training settings only; `models/teacher.pt` stores them and nothing about
detection or pseudo segments (those are the next two stages' params).
"""

import time

import click
import pandas as pd

from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.tables import read_points
from onpoint_core.errors import friendly_errors
from onpoint_core.io import atomic_file, write_json
from onpoint_core.live import LiveCurves
from onpoint_core.pipeline import start, write_run_log, write_terms_csv
from onpoint_core.provenance import git_revision
from onpoint_core.teachers.runner import TRAIN_SUBSETS, build_teacher, save_checkpoint, teacher_videos


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--dataset", "dataset_dir", default="data/dataset", show_default=True)
@click.option("--points", "points_path", default="data/points/points.parquet", show_default=True)
@click.option("--out", default="models/teacher.pt", show_default=True)
@click.option("--metrics", default="metrics/teacher_train.json", show_default=True)
@click.option("--curve", default="metrics/teacher_loss.csv", show_default=True)
@click.option("--terms-curve", default="metrics/teacher_terms.csv", show_default=True,
              help="The loss terms in long form (step, term, value), one colour per term in dvc plots.")
@click.option("--resume-file", default="models/teacher.resume.pt", show_default=True,
              help="Training state saved every few iterations/epochs; a crashed run resumes from it.")
@friendly_errors
def main(params_path, dataset_dir, points_path, out, metrics, curve, terms_curve, resume_file):
    cfg = start("teacher_train", params_path)
    dataset = load_dataset(dataset_dir, check_files=False)
    points = read_points(points_path)
    videos = teacher_videos(dataset, points, TRAIN_SUBSETS)   # features + points: no GT segments
    teacher = build_teacher(cfg.teacher, dataset, cfg.train)
    began = time.perf_counter()
    # live curves: every loss term per HR-Pro iteration / TSASPC epoch (live/teacher_train/plots/metrics)
    curves = LiveCurves("teacher_train", "iteration" if cfg.teacher == "hrpro" else "epoch")
    history = teacher.fit(videos, checkpoint=resume_file, log=curves.row)
    curves.end()
    seconds = time.perf_counter() - began
    save_checkpoint(out, cfg.teacher, teacher, dataset, history)
    frame = pd.DataFrame(history)
    frame.insert(0, "step", range(1, len(frame) + 1))
    with atomic_file(curve) as handle:
        frame.to_csv(handle, index=False)
    # every loss column of the teacher (HR-Pro: point, background, contrast; TSASPC: ce, smoothing, ...)
    write_terms_csv(terms_curve, frame, "step", {c: ("total" if c == "loss" else c.removeprefix("loss_"))
                                                 for c in frame.columns if c.startswith("loss")})
    final_loss = float(frame.loss.iloc[-1]) if len(frame) else None
    write_json(metrics, {"final_loss": final_loss})
    facts = {"teacher": cfg.teacher, "recipe": cfg.recipe, "train_videos": len(videos),
             "train_points": int(sum(len(v.point_steps) for v in videos)), "steps": len(history),
             "seconds": round(seconds, 1), **teacher.training_report(),
             "git_revision": git_revision(".", "teacher_train")}
    write_run_log("teacher_train", facts)
    click.echo(f"teacher {cfg.teacher}: {len(history)} steps in {seconds:.1f} s, final loss {final_loss:.4f} -> {out}")


if __name__ == "__main__":
    main()
