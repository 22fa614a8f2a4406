"""What a perfect model scores through our decode and online NMS, on a dataset's test split.

    python scripts/oracle_decode.py [--dataset data/dataset] [--params params.yaml]

Prints one row per oracle: perfect instance heads (OAT's decode of the GT segments), perfect point
heads with points drawn as the points stage draws them (Gaussian around each GT centre, the
dataset's `points` settings) and with points at the GT centres. The point rows are the ceiling of
the distillation-free run; GT of the test split is used because that is what the ceiling is about
(nothing here trains or selects anything).
"""

from __future__ import annotations

import click

from onpoint_core.config import load_params
from onpoint_core.data.dataset import load_dataset
from onpoint_core.errors import friendly_errors
from onpoint_core.evaluation import evaluate_detections
from onpoint_core.online.oracle import stream_oracle
from onpoint_core.points.labels import gaussian_points


def _videos(dataset, ids, gt, points):
    videos = []
    for video_id in ids:
        rows, mine = gt[gt.video_id == video_id], points[points.video_id == video_id]
        info = dataset.video(video_id)
        videos.append({"video_id": video_id, "n_steps": int(info["n_steps"]), "duration": float(info["duration"]),
                       "segments": rows[["start", "end"]].to_numpy(), "segment_labels": dataset.label_index(rows.label),
                       "points": mine.time.to_numpy(), "point_labels": dataset.label_index(mine.label)})
    return videos


@click.command()
@click.option("--dataset", "dataset_dir", default="data/dataset", show_default=True)
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@friendly_errors
def main(dataset_dir, params_path):
    params = load_params(params_path)
    data, online, points_cfg = params.data, params.online, params.data.points
    dataset = load_dataset(dataset_dir, check_files=False)
    ids = dataset.video_ids("test")
    gt = dataset.segments[dataset.segments.video_id.isin(ids)].reset_index(drop=True)
    sigma = points_cfg.sigma_fraction if points_cfg.sigma_fraction is not None else 1 / 6
    rows = {"instance heads (GT segments)": ("instance", gt.assign(time=0.0)[["video_id", "label", "time"]]),
            f"point heads, Gaussian points (sigma {sigma:.3f} x length)":
                ("point", gaussian_points(gt, seed=points_cfg.seed or 0, sigma_fraction=sigma)),
            "point heads, points at GT centres":
                ("point", gt.assign(time=(gt.start + gt.end) / 2)[["video_id", "label", "time"]])}
    click.echo(f"{len(ids)} test videos, {len(gt)} GT segments; anchors {list(data.anchors)}, window {data.window}")
    click.echo(f"{'oracle':<52} {'mAP@0.5':>8} {'avg 0.1:0.7':>12} {'F1@0.5':>7} {'segments':>9}")
    for name, (mode, points) in rows.items():
        found = stream_oracle(_videos(dataset, ids, gt, points), data.anchors, dataset.classes, mode, data.window,
                              online.score_threshold, online.nms_iou, online.tiou_floor_seconds)
        result = evaluate_detections(gt, found, ambiguous=dataset.ambiguous, videos=ids)
        click.echo(f"{name:<52} {result['mAP']['0.5']:>8.1f} {result['avg_0.1_0.7']:>12.1f} "
                   f"{result['f1_0.5']:>7.1f} {len(found):>9}")


if __name__ == "__main__":
    main()
