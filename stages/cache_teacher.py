"""Stage `teacher_cache`: run the frozen teacher once over every video; cache CAS, class
probabilities (for the anticipation targets) and detections.

Reads `<teacher>.proposals` and `<teacher>.detect` only: changing them never retrains the teacher.
"""

import time

import click
import numpy as np
import pandas as pd

from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.tables import read_points
from onpoint_core.errors import friendly_errors
from onpoint_core.io import atomic_dir, save_npy, write_json, write_parquet
from onpoint_core.pipeline import start, write_run_log
from onpoint_core.teachers.runner import (
    cas_frame_accuracy,
    choose_class_ratio,
    detections,
    load_checkpoint,
    offline_map,
    run_teacher,
)


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--dataset", "dataset_dir", default="data/dataset", show_default=True)
@click.option("--points", "points_path", default="data/points/points.parquet", show_default=True)
@click.option("--model", default="models/teacher.pt", show_default=True)
@click.option("--out", default="data/teacher", show_default=True)
@click.option("--metrics", default="metrics/teacher_cache.json", show_default=True)
@friendly_errors
def main(params_path, dataset_dir, points_path, model, out, metrics):
    cfg = start("teacher_cache", params_path)
    dataset = load_dataset(dataset_dir, check_files=False)
    kind, teacher = load_checkpoint(model, dataset)
    began = time.perf_counter()
    outputs = run_teacher(teacher, dataset, cfg.detect.predict_batch)
    cas = {video_id: out.cas for video_id, out in outputs.items()}
    # which classes a video's detections may have: chosen on the val videos' points (HR-Pro)
    ratio, table = choose_class_ratio(teacher, dataset, cas, read_points(points_path), cfg.detect)
    detected = detections(teacher, dataset, cas, cfg.proposals, cfg.detect, class_ratio=ratio)
    seconds = time.perf_counter() - began
    with atomic_dir(out) as tmp:
        for video_id, output in outputs.items():
            save_npy(tmp / "cas" / f"{video_id}.npy", output.cas.astype(np.float32))
            save_npy(tmp / "class_prob" / f"{video_id}.npy", output.class_prob.astype(np.float32))
        table_ = dataset.videos[["video_id", "subset", "duration"]].copy()
        table_["n_steps"] = [len(cas[v]) for v in table_.video_id]
        write_parquet(tmp / "videos.parquet", table_)
        scores = [(v, name, float(score)) for v, c in cas.items()
                  for name, score in zip(dataset.classes, teacher.video_scores(c, cfg.detect))]
        write_parquet(tmp / "video_scores.parquet", pd.DataFrame(scores, columns=["video_id", "label", "score"]))
        write_parquet(tmp / "detections.parquet", detected)
    offline = offline_map(dataset, detected, "test")
    accuracy = {s: round(cas_frame_accuracy(dataset, cas, (s,)), 2) for s in ("train", "val", "test")
                if dataset.video_ids(s)}
    write_json(metrics, {"offline_test": {k: v for k, v in (offline or {}).items() if k not in ("num_gt", "num_pred")},
                         "frame_accuracy_test": accuracy.get("test")})
    write_run_log("teacher_cache", {"teacher": kind, "seconds": round(seconds, 1), "video_class_ratio": ratio,
                                    "val_class_f1": {str(k): round(v, 4) for k, v in table.items()},
                                    "frame_accuracy": accuracy,
                                    "offline_test_counts": {k: (offline or {}).get(k) for k in ("num_gt", "num_pred")}})
    test = offline or {}
    click.echo(f"teacher cache: {len(cas)} videos in {seconds:.1f} s; offline test mAP avg "
               f"{test.get('avg_0.1_0.7', float('nan')):.2f}; frame accuracy {accuracy} -> {out}")


if __name__ == "__main__":
    main()
