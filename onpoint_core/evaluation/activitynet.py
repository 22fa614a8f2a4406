"""ActivityNet-style JSON for ground truth and detections, in and out.

Most temporal action localisation code (ActivityNet's evaluator, ActionFormer, OpenTAD, OAT, HR-Pro)
keeps its tables in two JSON layouts:

  ground truth  {"database": {video: {"subset": ..., "duration": s,
                                      "annotations": [{"label": name, "segment": [start, end]}, ...]}}}
  detections    {"results": {video: [{"label": name, "score": p, "segment": [start, end]}, ...]}}

Times are seconds in both. `read_table` turns either into the flat tables the evaluator uses
(video_id, label, start, end[, score]; see detection.TABLE_KINDS) and leaves every other file to
`detection.load_table`, so `onpoint evaluate` accepts Parquet, CSV, JSON lines and ActivityNet JSON
alike and scores them identically. `results_json` writes proposals in the detection layout; the
extra per-entry key `gen_time` (when the online model emitted it) is ignored by other readers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..errors import fail
from .detection import _check_frame, load_table

LAYOUT_KEYS = {"segments": "database", "proposals": "results"}


def _load_json(path):
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        fail(path, f"not valid JSON (line {exc.lineno}: {exc.msg})")
    except UnicodeDecodeError:
        fail(path, "not a text file")


def is_activitynet(path):
    """True for a .json file whose top level is an object with "database" or "results"."""
    path = Path(path)
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    with open(path, "rb") as handle:
        head = handle.read(64).lstrip()
    if not head.startswith(b"{"):
        return False
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False            # e.g. JSON lines in a .json file: load_table reads those
    return isinstance(data, dict) and ("database" in data or "results" in data)


def _segment(entry, path, video, index):
    """(start, end) of one entry's "segment", checked, naming the file, video and entry."""
    segment = entry.get("segment") if isinstance(entry, dict) else None
    if (not isinstance(segment, (list, tuple)) or len(segment) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in segment)):
        fail(path, f"entry {index}: \"segment\" must be [start, end] in seconds, got {segment!r}", video)
    start, end = float(segment[0]), float(segment[1])
    if not (math.isfinite(start) and math.isfinite(end)):
        fail(path, f"entry {index}: non-finite segment {segment!r}", video)
    return start, end


def _label(entry, path, video, index):
    label = entry.get("label")
    if label is None or (isinstance(label, str) and not label.strip()):
        fail(path, f"entry {index}: no \"label\"", video)
    return str(label)


def _typed(frame):
    """Numeric columns as float64 also when there is no row (a model that found nothing)."""
    return frame.astype({c: "float64" for c in ("start", "end", "score", "gen_time") if c in frame})


def _gt_frame(database, path, subset):
    """Segments of the videos of `subset` (case-insensitive; None = all videos)."""
    if not isinstance(database, dict):
        fail(path, "\"database\" must be an object {video: {subset, annotations}}")
    subsets = sorted({str(v.get("subset")) for v in database.values() if isinstance(v, dict)})
    wanted = None if subset is None else str(subset).lower()
    rows, kept = [], 0
    for video, info in database.items():
        if not isinstance(info, dict):
            fail(path, "each \"database\" entry must be an object with \"annotations\"", video)
        if wanted is not None and str(info.get("subset", "")).lower() != wanted:
            continue
        kept += 1
        annotations = info.get("annotations", [])
        if not isinstance(annotations, list):
            fail(path, "\"annotations\" must be a list", video)
        for i, entry in enumerate(annotations):
            start, end = _segment(entry, path, video, i)
            rows.append((str(video), _label(entry, path, video, i), start, end))
    if wanted is not None and not kept:
        fail(path, f"no video of subset {subset!r} (the file has {subsets}; choose one with --subset)")
    return _typed(pd.DataFrame(rows, columns=["video_id", "label", "start", "end"]))


def _results_frame(results, path):
    if not isinstance(results, dict):
        fail(path, "\"results\" must be an object {video: [{label, score, segment}, ...]}")
    rows, has_gen = [], False
    for video, entries in results.items():
        if not isinstance(entries, list):
            fail(path, "each \"results\" entry must be a list of detections", video)
        for i, entry in enumerate(entries):
            start, end = _segment(entry, path, video, i)
            score = entry.get("score")
            if not isinstance(score, (int, float)) or isinstance(score, bool):
                fail(path, f"entry {i}: \"score\" must be a number, got {score!r}", video)
            gen = entry.get("gen_time")
            has_gen = has_gen or gen is not None
            rows.append((str(video), _label(entry, path, video, i), start, end, float(score),
                         float(gen) if isinstance(gen, (int, float)) else float("nan")))
    frame = _typed(pd.DataFrame(rows, columns=["video_id", "label", "start", "end", "score", "gen_time"]))
    if not has_gen:
        frame = frame.drop(columns="gen_time")
    elif frame.gen_time.isna().any():
        row = int(frame.gen_time.isna().to_numpy().nonzero()[0][0])
        fail(path, f"\"gen_time\" is missing or not a number in some entries (first: row {row})",
             frame.video_id.iloc[row])
    return frame


def read_activitynet(path, kind, subset=None):
    """The `kind` table ("segments" or "proposals") of an ActivityNet JSON file, checked."""
    if kind not in LAYOUT_KEYS:
        raise ValueError(f"ActivityNet JSON holds segments or proposals, not {kind!r}")
    data = _load_json(path)
    key = LAYOUT_KEYS[kind]
    if not isinstance(data, dict) or key not in data:
        other = next(k for k in LAYOUT_KEYS.values() if k != key)
        if isinstance(data, dict) and other in data:
            fail(path, f"holds \"{other}\", but {'ground truth' if kind == 'segments' else 'detections'} "
                       f"need \"{key}\" (are --gt and --pred swapped?)")
        fail(path, f"no \"{key}\" object at the top level")
    frame = _gt_frame(data[key], path, subset) if kind == "segments" else _results_frame(data[key], path)
    return _check_frame(frame, kind, path)     # the same column checks as every other table


def subset_videos(path, subset):
    """The videos of `subset` (case-insensitive) in an ActivityNet ground-truth file, with or
    without annotations: the evaluation set, so detections elsewhere are not counted."""
    database = _load_json(path).get("database", {})
    wanted = str(subset).lower()
    return [str(v) for v, info in database.items()
            if isinstance(info, dict) and str(info.get("subset", "")).lower() == wanted]


def read_table(path, kind, subset=None):
    """Any table `onpoint evaluate` takes: ActivityNet JSON here, everything else via load_table.

    `subset` applies to ActivityNet ground truth only (its videos carry their subset)."""
    if kind in LAYOUT_KEYS and is_activitynet(path):
        return read_activitynet(path, kind, subset=subset)
    return load_table(path, kind)


def results_json(proposals, videos=None, version="onpoint"):
    """Proposals (video_id, label, start, end, score[, gen_time]) -> the detection layout (a dict).

    `videos` lists videos to include even with no detection (an empty list each), so a reader can
    tell "processed, nothing found" from "not processed". Rows come out grouped by video: equal
    scores rank in table order in the evaluator, so only tied scores can rank differently."""
    results = {str(v): [] for v in (videos or [])}
    has_gen = "gen_time" in proposals.columns
    for row in proposals.itertuples(index=False):
        entry = {"label": str(row.label), "score": float(row.score), "segment": [float(row.start), float(row.end)]}
        if has_gen:
            entry["gen_time"] = float(row.gen_time)
        results.setdefault(str(row.video_id), []).append(entry)
    return {"version": version, "results": results, "external_data": {}}


def database_json(segments, videos):
    """Ground-truth segments + a videos table (video_id, subset, duration) -> the database layout."""
    by_video = {v: g for v, g in segments.groupby("video_id")}
    database = {}
    for row in videos.itertuples(index=False):
        group = by_video.get(row.video_id)
        annotations = [] if group is None else [
            {"label": str(s.label), "segment": [float(s.start), float(s.end)]} for s in group.itertuples(index=False)]
        database[str(row.video_id)] = {"subset": str(row.subset), "duration": float(row.duration),
                                       "annotations": annotations}
    return {"database": database}


__all__ = ["database_json", "is_activitynet", "read_activitynet", "read_table", "results_json", "subset_videos"]
