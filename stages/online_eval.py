"""Stage `online_eval`: stream every test video through the student, score the emitted proposals,
time the engine, and score the offline teacher's detections beside it as the reference row."""

from pathlib import Path

import click
import pandas as pd
import torch

from onpoint_core.data.dataset import load_dataset
from onpoint_core.errors import friendly_errors
from onpoint_core.evaluation import evaluate_detections, load_table
from onpoint_core.evaluation.activitynet import results_json
from onpoint_core.evaluation.plots import per_class_ap_png, pr_curve_png, stream_timeline_png
from onpoint_core.io import atomic_dir, atomic_file, write_json, write_parquet
from onpoint_core.online import runner
from onpoint_core.pipeline import start, write_run_log
from onpoint_core.runtime import pick_device
from onpoint_core.student.checkpoint import load_student
from onpoint_core.student.model import count_parameters, flops_per_step

PLOTTED_TIOUS = (0.3, 0.5, 0.7)
CURVE_POINTS = 200          # per tIoU in the DVC plot file


def _thin(curves):
    """At most CURVE_POINTS rows per tIoU (evenly spaced ranks, last one kept) for the plot file."""
    parts = []
    for _, part in curves.groupby("tiou", sort=True):
        step = max(1, len(part) // CURVE_POINTS)
        parts.append(pd.concat([part.iloc[::step], part.iloc[-1:]]).drop_duplicates())
    return pd.concat(parts) if parts else curves


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--dataset", "dataset_dir", default="data/dataset", show_default=True)
@click.option("--model", default="models/student.pt", show_default=True)
@click.option("--teacher-detections", default="data/teacher/detections.parquet", show_default=True)
@click.option("--out", default="data/online/proposals.parquet", show_default=True)
@click.option("--results-json", "results_json_path", default=None,
              help="The same proposals in the ActivityNet detection layout (for other evaluators); default: "
                   "results.json beside --out.")
@click.option("--metrics", default="metrics/online_eval.json", show_default=True)
@click.option("--pr-curve", default="metrics/online_pr.csv", show_default=True,
              help="Precision-recall curve at tIoU 0.5 (a DVC plot); the PNG has 0.3, 0.5 and 0.7.")
@click.option("--plots", "plots_dir", default="plots/online", show_default=True)
@click.option("--num-timelines", default=4, show_default=True, help="How many test videos to draw.")
@friendly_errors
def main(params_path, dataset_dir, model, teacher_detections, out, results_json_path, metrics, pr_curve, plots_dir,
         num_timelines):
    online = start("online_eval", params_path).online
    dataset = load_dataset(dataset_dir, check_files=False)
    student, meta = load_student(model, device=pick_device())
    if list(meta["classes"]) != list(dataset.classes):
        raise click.ClickException(f"{model}: trained on classes {meta['classes']}, the dataset has {dataset.classes}")
    engine = runner.engine_for(student, meta, online)
    proposals, timing = runner.stream_subset(engine, dataset, batch_size=online.stream_batch)
    write_parquet(out, proposals)
    write_json(results_json_path or Path(out).with_name("results.json"), results_json(proposals, videos=dataset.video_ids(runner.EVAL_SUBSET)))
    result, curves = runner.score(dataset, proposals)
    first_test = dataset.video_ids(runner.EVAL_SUBSET)[0]
    speed = {
        "steps_per_second_single": runner.single_stream_speed(engine, dataset.features(first_test)),
        "steps_per_second_batched": timing["steps_per_second_batched"],
        "stream_batch": timing["stream_batch"],
        "device": str(engine.device),
        "precision": engine.precision,
        "threads": torch.get_num_threads(),
    }
    teacher = evaluate_detections(dataset.segments, load_table(teacher_detections, "proposals"),
                                  ambiguous=dataset.ambiguous, videos=dataset.video_ids(runner.EVAL_SUBSET))
    summary = runner.summary_metrics(result)
    counts = {k: summary.pop(k) for k in ("num_gt", "num_pred") if k in summary}
    write_json(metrics, summary)   # results only; the teacher's offline row is teacher_cache's metric
    teacher_row = runner.summary_metrics(teacher)
    write_run_log("online_eval", {"run": meta["run"], **counts, "speed": speed, "parameters": count_parameters(student),
                                  "flops_per_step": flops_per_step(student), "test_videos": timing["videos"],
                                  "test_steps": timing["steps"], "teacher_offline": teacher_row})
    with atomic_file(pr_curve) as handle:
        _thin(curves[curves.tiou == 0.5]).drop(columns="tiou").to_csv(handle, index=False)
    with atomic_dir(plots_dir) as tmp:
        pr_curve_png(tmp / "precision_recall.png", curves[curves.tiou.isin(PLOTTED_TIOUS)])
        per_class_ap_png(tmp / "per_class_ap.png", result["per_class"])
        for video_id in dataset.video_ids(runner.EVAL_SUBSET)[:num_timelines]:
            stream_timeline_png(tmp / f"timeline_{video_id}.png", video_id, dataset.video(video_id)["duration"],
                                dataset.classes, dataset.segments_of(video_id),
                                proposals[proposals.video_id == video_id])
    aedt = "n/a" if summary.get("aedt") is None else f"{summary['aedt']:+.2f} s"
    click.echo(f"online {meta['run']}: mAP avg(0.1:0.7) {summary['avg_0.1_0.7']:.1f} "
               f"(teacher offline {teacher_row['avg_0.1_0.7']:.1f}), F1@0.5 {summary['f1_0.5']:.1f}, "
               f"AEDT {aedt}; {speed['steps_per_second_batched']:.0f} steps/s batched, "
               f"{speed['steps_per_second_single']:.0f} single -> {out}")


if __name__ == "__main__":
    main()
