"""Train, save, load and run a teacher on a canonical dataset: the glue the teacher stages call.

Only features and points reach the teacher (`teacher_videos`); ground-truth segments are read
by the metrics functions of this module, never by training, caching or pseudo-labelling.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import torch


from ..errors import OnPointError
from ..evaluation import evaluate_detections, frame_accuracy, segment_quality
from ..io import atomic_file
from ..progress import progress as progress_bar
from ..provenance import provenance
from .base import TeacherVideo
from .hrpro import HRProTeacher
from .tsaspc import TSASPCTeacher

TEACHERS = {"hrpro": HRProTeacher, "tsaspc": TSASPCTeacher}
TRAIN_SUBSETS = ("train",)          # the teacher fits on these; `val` is held out for selection/reporting
POINT_SUBSETS = ("train", "val")    # videos with point labels
PSEUDO_COLUMNS = ["video_id", "label", "start", "end", "score", "point"]
DETECTION_COLUMNS = ["video_id", "label", "start", "end", "score"]


def steps_per_second(dataset, video_id):
    """The teacher's feature rate of one video: n_steps / duration (never a hard-coded fps)."""
    return dataset.n_steps(video_id, teacher=True) / dataset.video(video_id)["duration"]


def point_steps(dataset, points_of_video, video_id):
    """Points of one video on the teacher's step grid: (sorted steps, class indices)."""
    group = points_of_video.sort_values("time", kind="stable")
    rate = steps_per_second(dataset, video_id)
    n_steps = dataset.n_steps(video_id, teacher=True)
    steps = np.clip(np.floor(group.time.to_numpy() * rate), 0, n_steps - 1).astype(np.int64)
    return steps, dataset.label_index(group.label)


def teacher_videos(dataset, points, subsets):
    """TeacherVideos of the given subsets: teacher features and point steps, nothing else."""
    by_video = dict(list(points.groupby("video_id")))
    empty = points.iloc[:0]
    videos = []
    for video_id in dataset.video_ids(*subsets):
        features = np.asarray(dataset.teacher_features(video_id), dtype=np.float32)
        steps, labels = point_steps(dataset, by_video.get(video_id, empty), video_id)
        videos.append(TeacherVideo(video_id, features, steps, labels))
    return videos


def build_teacher(kind, dataset, cfg):
    """A fresh teacher of `kind` for the dataset's teacher features; cfg: its typed training settings."""
    feature_dim = int(dataset.meta.get("teacher_feature_dim", dataset.meta["feature_dim"]))
    return TEACHERS[kind](dataset.num_classes, feature_dim, cfg)


def save_checkpoint(path, kind, teacher, dataset, history):
    """A self-contained teacher checkpoint of plain types and tensors (torch.load weights_only works)."""
    payload = {"kind": kind, "classes": list(dataset.classes), "state": teacher.state_dict(),
               "final_loss": float(history[-1]["loss"]) if history else None, **provenance("teacher_train")}
    with atomic_file(path, "wb") as handle:
        torch.save(payload, handle)


def load_checkpoint(path, dataset=None):
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise OnPointError(f"{path}: teacher checkpoint not found (run the teacher_train stage)") from None
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise OnPointError(f"{path}: not a readable teacher checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(payload, dict) or payload.get("kind") not in TEACHERS:
        raise OnPointError(f"{path}: not a teacher checkpoint")
    if dataset is not None and list(payload["classes"]) != list(dataset.classes):
        raise OnPointError(f"{path}: trained on classes {payload['classes']}, the dataset has {dataset.classes}")
    return payload["kind"], TEACHERS[payload["kind"]].from_state(payload["state"])


def run_teacher(teacher, dataset, batch_videos, progress=True):
    """Frozen teacher over every video, a batch of videos per forward pass: {video_id: TeacherOutput}."""
    ids = dataset.video_ids()
    outputs = {}
    bar = progress_bar(total=len(ids), desc="teacher CAS", unit="video", disable=not progress)
    for begin in range(0, len(ids), batch_videos):
        chunk = ids[begin:begin + batch_videos]
        found = teacher.predict_batch([np.asarray(dataset.teacher_features(v), np.float32) for v in chunk],
                                      batch_videos)
        outputs.update(zip(chunk, found))
        bar.update(len(chunk))
    bar.close()
    return outputs


def to_seconds_table(dataset, rows_by_video, columns, point_in_seconds=False):
    """N x 5 teacher rows in steps (label, start, end, score, point) -> a table in seconds."""
    frames = []
    for video_id, rows in rows_by_video.items():
        if not len(rows):
            continue
        scale = 1.0 / steps_per_second(dataset, video_id)
        duration = dataset.video(video_id)["duration"]
        frame = pd.DataFrame({
            "video_id": video_id,
            "label": [dataset.classes[int(c)] for c in rows[:, 0]],
            "start": np.clip(rows[:, 1] * scale, 0, duration),
            "end": np.clip(rows[:, 2] * scale, 0, duration),
            "score": rows[:, 3],
            "point": rows[:, 4] if point_in_seconds else (rows[:, 4] + 0.5) * scale,
        })
        frames.append(frame[columns])
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object" if c in ("video_id", "label") else float) for c in columns})
    return pd.concat(frames, ignore_index=True)


CLASS_RATIO_CANDIDATES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def choose_class_ratio(teacher, dataset, cas_by_video, points, detect, subset="val"):
    """HR-Pro teacher: the video-level class ratio whose class sets best match the point classes.

    Chosen on the validation videos with their points only (mean F1 of the predicted class set
    against the classes of the video's points); never on the test split, never with segments.
    Returns (ratio, {ratio: F1}); the configured value when it is not 'auto' or there is no val.
    """
    configured = getattr(detect, "video_class_ratio", None)
    if configured is None:           # a teacher without a class ratio (TSASPC): nothing to choose
        return None, {}
    videos = [v for v in dataset.video_ids(subset) if v in set(points.video_id)]
    if configured != "auto":
        return float(configured), {}
    if not videos:
        return 0.8, {}
    truth = {v: set(dataset.label_index(g.label)) for v, g in points[points.video_id.isin(videos)].groupby("video_id")}
    table = {}
    for ratio in CLASS_RATIO_CANDIDATES:
        f1 = []
        for video_id in videos:
            scores = teacher.video_scores(cas_by_video[video_id], detect)
            predicted = set(np.flatnonzero(scores >= ratio * scores.max()).tolist())
            hits = len(predicted & truth[video_id])
            f1.append(2 * hits / (len(predicted) + len(truth[video_id])))
        table[ratio] = float(np.mean(f1))
    best = max(table, key=lambda r: (table[r], r))
    return best, table


def detections(teacher, dataset, cas_by_video, proposals, detect, class_ratio=None):
    """The teacher's offline detections (no points needed), in seconds."""
    rows = {vid: teacher.detect(cas, proposals, detect, class_ratio=class_ratio) for vid, cas in cas_by_video.items()}
    return to_seconds_table(dataset, rows, DETECTION_COLUMNS)


def pseudo_segments(teacher, dataset, cas_by_video, points, proposals, pseudo):
    """Pseudo segments of the videos with points (train and val), in seconds.

    Their `point` column is the original time of the point the segment was chosen for (teachers
    report the point's step); NaN where a segment has no point.
    """
    by_video = dict(list(points.groupby("video_id")))
    rows = {}
    for video in teacher_videos(dataset, points, POINT_SUBSETS):
        found = teacher.pseudo_segments(cas_by_video[video.video_id], video.point_steps, video.point_labels,
                                        proposals, pseudo)
        if len(found):
            # point_steps are sorted by time, so the first point on a step matches teacher_videos' order
            group = by_video[video.video_id].sort_values("time", kind="stable")
            first = {}
            for step, label, time in zip(video.point_steps, video.point_labels, group.time):
                first.setdefault((int(step), int(label)), float(time))
            found = found.copy()
            found[:, 4] = [first.get((int(p), int(c)), np.nan) if np.isfinite(p) else np.nan
                           for c, p in zip(found[:, 0], found[:, 4])]
        rows[video.video_id] = found
    return to_seconds_table(dataset, rows, PSEUDO_COLUMNS, point_in_seconds=True)


# --------------------------------------------------------------------------------------------
# Metrics: the only functions here that read ground-truth segments.

def cas_frame_accuracy(dataset, cas_by_video, subsets):
    """Share of steps whose CAS argmax equals the GT label (background last) over `subsets`."""
    correct = total = 0
    for video_id in dataset.video_ids(*subsets):
        gt = dataset.segments_of(video_id)
        rows = np.stack([dataset.label_index(gt.label), gt.start, gt.end], axis=1) if len(gt) else np.zeros((0, 3))
        c, t = frame_accuracy(cas_by_video[video_id], rows, dataset.video(video_id)["duration"])
        correct += c
        total += t
    return 100.0 * correct / max(total, 1)


def offline_map(dataset, detected, subset="test", tious=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)):
    """The teacher's own offline mAP on one subset (the paper's 'teacher' reference)."""
    videos = dataset.video_ids(subset)
    gt = dataset.segments[dataset.segments.video_id.isin(videos)]
    if gt.empty:
        return None
    result = evaluate_detections(gt, detected[detected.video_id.isin(videos)], tious,
                                 ambiguous=dataset.ambiguous, videos=videos)
    keep = ("mAP", "avg_0.1_0.5", "avg_0.3_0.7", "avg_0.1_0.7", "num_gt", "num_pred")
    return {k: result[k] for k in keep if k in result}


def covered_points(pseudo, points):
    """How many points lie inside a pseudo segment of their class (points only, no GT)."""
    pairs = points.reset_index(drop=True).reset_index().merge(pseudo, on=["video_id", "label"], how="inner")
    return int(pairs[(pairs.time >= pairs.start) & (pairs.time <= pairs.end)]["index"].nunique())


def point_coverage(pseudo, points):
    """Share of the points that lie inside a pseudo segment of their class (0 without points)."""
    return covered_points(pseudo, points) / len(points) if len(points) else 0.0


def check_point_coverage(pseudo, points, minimum, key):
    """Stop with one line naming `key` when the teacher's pseudo segments cover too few points:
    the students would train on next to nothing, and the comparison would say nothing."""
    share = point_coverage(pseudo, points)
    if not len(pseudo) or share < minimum:
        raise OnPointError(f"params.yaml: {key}: the teacher's {len(pseudo)} pseudo segments cover "
                           f"{100 * share:.1f}% of the {len(points)} points, below {100 * minimum:.0f}%: the teacher "
                           f"has not learned (give it more training, or lower {key})")
    return share


def pseudo_quality(dataset, pseudo, points, tiou_threshold=0.5):
    """Pseudo segments against the training GT: precision, recall, mean tIoU, points left without one."""
    videos = dataset.video_ids(*POINT_SUBSETS)
    gt = dataset.segments[dataset.segments.video_id.isin(videos)]
    quality = segment_quality(gt, pseudo, tiou_threshold)
    quality["num_points"] = int(len(points))
    quality["points_without_pseudo_segment"] = int(len(points)) - covered_points(pseudo, points)
    return quality
