"""Stage `teacher_cache`: run the frozen teacher once over every video; cache CAS and detections."""

import time

import click
import numpy as np
import pandas as pd

from onpoint_core.data.dataset import load_dataset
from onpoint_core.errors import friendly_errors
from onpoint_core.io import atomic_dir, save_npy, write_json, write_parquet
from onpoint_core.teachers.runner import (
    cas_frame_accuracy,
    choose_class_ratio,
    detections,
    load_checkpoint,
    offline_map,
    read_points,
    run_teacher,
    video_scores,
)


@click.command()
@click.option("--dataset", "dataset_dir", default="data/dataset", show_default=True)
@click.option("--points", "points_path", default="data/points/points.parquet", show_default=True)
@click.option("--model", default="models/teacher.pt", show_default=True)
@click.option("--out", default="data/teacher", show_default=True)
@click.option("--metrics", default="metrics/teacher_cache.json", show_default=True)
@friendly_errors
def main(dataset_dir, points_path, model, out, metrics):
    dataset = load_dataset(dataset_dir, check_files=False)
    kind, teacher = load_checkpoint(model, dataset)
    began = time.perf_counter()
    cas = run_teacher(teacher, dataset)
    options, selection = {}, {}
    if kind == "hrpro":   # which classes a video's detections may have: chosen on val points
        ratio, table = choose_class_ratio(teacher, dataset, cas, read_points(points_path))
        options["class_ratio"] = ratio
        selection = {"video_class_ratio": ratio, "val_class_f1": {str(k): round(v, 4) for k, v in table.items()}}
    detected = detections(teacher, dataset, cas, **options)
    seconds = time.perf_counter() - began
    with atomic_dir(out) as tmp:
        for video_id, values in cas.items():
            save_npy(tmp / "cas" / f"{video_id}.npy", values.astype(np.float32))
        table = dataset.videos[["video_id", "subset", "duration"]].copy()
        table["n_steps"] = [len(cas[v]) for v in table.video_id]
        write_parquet(tmp / "videos.parquet", table)
        scores = [(v, name, float(score)) for v, c in cas.items()
                  for name, score in zip(dataset.classes, video_scores(teacher, c))]
        write_parquet(tmp / "video_scores.parquet", pd.DataFrame(scores, columns=["video_id", "label", "score"]))
        write_parquet(tmp / "detections.parquet", detected)
    summary = {"teacher": kind, "seconds": round(seconds, 1), **selection,
               "offline_test": offline_map(dataset, detected, "test"),
               "frame_accuracy": {s: round(cas_frame_accuracy(dataset, cas, (s,)), 2)
                                  for s in ("train", "val", "test") if dataset.video_ids(s)}}
    write_json(metrics, summary)
    test = summary["offline_test"] or {}
    click.echo(f"teacher cache: {len(cas)} videos in {seconds:.1f} s; offline test mAP avg "
               f"{test.get('average', float('nan')):.2f}; frame accuracy {summary['frame_accuracy']} -> {out}")


if __name__ == "__main__":
    main()
