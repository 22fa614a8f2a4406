"""Glue the student_train stage calls: gather the run's inputs, train, save, summarise."""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np
import pandas as pd
import torch

from ..data.tables import read_points
from ..provenance import provenance
from ..runtime import pick_device
from .checkpoint import save_student
from .diagnostics import anticipation_positive_rate, calibration_gap
from .inputs import read_pseudo_segments, student_videos
from .model import OnlineStudent, count_parameters, flops_per_step, model_config, network_sizes
from .training import TERMS, train_student
from .variants import variant as variant_named
from .windows import WindowData

TRAIN_SUBSETS = ("train",)        # `val` stays out of training (held out for selection and reporting)


def loss_weights(cfg):
    """alpha, beta, delta, regression from `student.loss_weights`; gamma (L_ant) from the dataset entry."""
    return {**cfg.student.loss_weights.as_dict(), "gamma": float(cfg.data.gamma)}


def build_model(cfg, dataset, variant):
    """cfg: the student_train stage's params (`data`: StudentData, `student`: StudentCfg)."""
    data = cfg.data
    config = model_config(dataset.num_classes, dataset.meta["feature_dim"], dataset.meta.get("streams", 1),
                          data.window, data.anchors, data.anticipation, **network_sizes(cfg.student),
                          calibration=variant.calibration)
    torch.manual_seed(int(cfg.student.seed))
    return OnlineStudent(config)


def gather_inputs(cfg, dataset, paths, subsets=TRAIN_SUBSETS):
    """The StudentVideos of the run named by student.run, reading only what that run may read."""
    variant = variant_named(cfg.student.run)
    points = read_points(paths["points"]) if variant.points else None
    pseudo = read_pseudo_segments(paths["pseudo"]) if variant.instance_targets == "pseudo" else None
    teacher_cache = paths["teacher_cache"] if (variant.cass or variant.anticipation) else None
    return variant, student_videos(dataset, subsets, variant, points=points, pseudo=pseudo, teacher_cache=teacher_cache)


def inputs_fingerprint(videos):
    """A hash of everything the run trains on (features, segments, points, teacher arrays)."""
    digest = hashlib.sha256()
    for v in videos:
        digest.update(v.video_id.encode())
        for array in (v.features, v.segments, v.segment_labels, v.points, v.point_labels, v.teacher_cas,
                      v.teacher_class_prob):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


SELECTION_SUBSET = "val"
SELECTION_METRIC = "avg_0.1_0.7"


def val_scorer(dataset, variant, selection, batch_size=64):
    """`evaluate(model)` for the convergence rule: stream the val videos through the real engine
    with the online decode settings (`selection`: config.SelectionDecode) and return their avg
    mAP 0.1:0.7. The val GT is read here, for selection only; training never sees it. None when
    the dataset has no val videos (then every epoch runs and the last one is kept)."""
    from ..evaluation import evaluate_detections
    from ..online.engine import StreamingEngine, stream_videos

    ids = dataset.video_ids(SELECTION_SUBSET)
    gt = dataset.segments[dataset.segments.video_id.isin(ids)].reset_index(drop=True)
    if not ids or not len(gt):
        return None
    features = {v: np.asarray(dataset.features(v), dtype=np.float32) for v in ids}
    durations = {v: float(dataset.video(v)["duration"]) for v in ids}

    def evaluate(model):
        meta = {"config": model.config, "classes": list(dataset.classes), "variant": {"inference": variant.inference}}
        engine = StreamingEngine(model, meta, score_threshold=selection.score_threshold, nms_iou=selection.nms_iou,
                                 tiou_floor_seconds=selection.tiou_floor_seconds)
        found = stream_videos(engine, features, durations, batch_size=batch_size, progress=False)
        return evaluate_detections(gt, found, ambiguous=dataset.ambiguous, videos=ids)[SELECTION_METRIC]

    return evaluate


def train(cfg, dataset, paths, *, rank=0, world_size=1, device=None, progress=True, on_epoch=None, on_batch=None,
          inputs=None):
    """Train the run's student by the convergence rule (training.train_student, val_scorer);
    returns (model, variant, history, summary). `inputs` (variant, StudentVideos) replaces what
    gather_inputs reads for the run: diagnostics only (scripts/oracle_teacher.py), never a stage."""
    device = device or pick_device()
    variant, videos = inputs or gather_inputs(cfg, dataset, paths)
    data_cfg = cfg.data
    windows = WindowData(videos, dataset.num_classes, data_cfg.window, list(data_cfg.anchors),
                         data_cfg.anticipation, device=device)
    model = build_model(cfg, dataset, variant).to(device)
    fingerprint = {"inputs": inputs_fingerprint(videos), "model": json.dumps(model.config, sort_keys=True),
                   "student": json.dumps(cfg.student.as_dict(), sort_keys=True, default=str),
                   "train_stride": data_cfg.train_stride, "gamma": float(data_cfg.gamma), "world_size": world_size}
    began = time.perf_counter()
    history, throughput, selection = train_student(
        model, windows, variant, cfg.student, loss_weights(cfg), device, train_stride=data_cfg.train_stride,
        fingerprint=fingerprint, resume_path=paths.get("resume"), checkpoints_per_epoch=cfg.student.checkpoints_per_epoch,
        progress=progress, rank=rank, world_size=world_size, on_epoch=on_epoch, on_batch=on_batch,
        evaluate=val_scorer(dataset, variant, cfg.selection))
    seconds = time.perf_counter() - began
    epoch_rows = [row for row in history if row["kind"] == "epoch"]
    # the loss terms reported are those of the epoch whose weights are kept
    kept = epoch_rows[selection["best_epoch"] - 1] if selection else epoch_rows[-1]
    summary = {
        "run": cfg.student.run,
        "variant": variant.as_dict(),
        "train_videos": len(videos),
        "train_steps": len(windows),
        "windows_per_epoch": len(windows) // data_cfg.train_stride,
        "epochs": cfg.student.epochs,
        "epochs_trained": len(epoch_rows),
        "best_epoch": selection["best_epoch"] if selection else len(epoch_rows),
        "val_avg_0.1_0.7": selection["val_avg"] if selection else None,
        "final_loss": kept["loss"],
        **{f"final_{k}": kept[k] for k in TERMS},
        # can the modules do their job? (see student/diagnostics.py; GT of val read by the metric only)
        "anticipation_positive_rate": anticipation_positive_rate(windows),
        "calibration_gap": calibration_gap(model, dataset) if rank == 0 else None,
        "windows_per_second": throughput["windows_per_second"],
        "parameters": count_parameters(model),
        "flops_per_step": flops_per_step(model),
        "device": str(device),
        "processes": world_size,
        "seconds": round(seconds, 1),
    }
    return model, variant, history, summary


def save(path, model, dataset, cfg, variant, summary):
    """The checkpoint, with what a model card needs: the online decode settings its epoch was
    selected with (`onpoint stream`/`predict` defaults), the resolved params of the stage, the val
    score, the code's version and revision (provenance.py)."""
    rate = float(np.median(dataset.videos.n_steps / dataset.videos.duration))
    save_student(path, model, dataset.classes, cfg.student.run, variant.as_dict(), rate,
                 extra={"dataset": cfg.dataset_name, "final_loss": summary["final_loss"],
                        "online": cfg.selection.as_dict(), "params": cfg.view,
                        "val_avg_0.1_0.7": summary.get("val_avg_0.1_0.7"), "best_epoch": summary.get("best_epoch"),
                        **provenance("student_train")})


def curves(history):
    """Per-epoch and per-batch loss curves as tables (one column per loss term)."""
    frame = pd.DataFrame(history)
    if frame.empty:
        return frame, frame
    frame["step"] = np.arange(1, len(frame) + 1)
    epochs = frame[frame.kind == "epoch"].drop(columns=["kind", "batch", "step"])
    batches = frame[frame.kind == "batch"].drop(columns=["kind"]).copy()
    batches["step"] = np.arange(1, len(batches) + 1)
    # every loss-term column stays (empty where the run switches a term off): the DVC plot names them all
    return epochs, batches


def distributed_context():
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, None) when not launched."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, None
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
