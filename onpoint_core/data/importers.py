"""Import public feature/annotation layouts (docs/formats.md) into the canonical dataset folder.

`import_layout(layout, ROOT, OUT)` reads one layout under ROOT and writes OUT with `DatasetWriter`
(validated, atomic: on any error OUT is left exactly as it was, or absent). Layouts and file names:

hrpro   THUMOS'14 as shipped with HR-Pro (teacher features, I3D, 25/16 = 1.5625 steps/s), and the other
        datasets HR-Pro publishes in the same layout (GTEA, BEOID)
          ROOT/gt_full.json                       annotations (`annotations=PATH` for another name)
          ROOT/split_train.txt, ROOT/split_test.txt  the videos to import (200 / 210) and their subsets:
                                                  as in HR-Pro's loader the split files decide; a JSON
                                                  `subset` that disagrees is only counted and warned about
          ROOT/point_labels/point_gaussian.csv    LACP points (or ROOT/point_gaussian.csv)
          ROOT/Ambiguous_test.txt                 optional; becomes OUT/ambiguous.parquet
          ROOT/features/{train,test}/<video>.npy  T x 2048 (rgb then flow)
oat     THUMOS'14 as used by OAT / MATR (student features, two-stream TSN, 4 steps/s)
          ROOT/thumos14_v2.json                   annotations (subset train|test, Validation|Test accepted)
          ROOT/thumos_all_feature_val_V3.pickle   {video: {'rgb': T x 2048, 'flow': T x 2048}} (train videos)
          ROOT/thumos_all_feature_test_V3.pickle  same for the test videos
          ROOT/split_train.txt, ROOT/split_test.txt  optional; without them the three THUMOS test videos
                                                  HR-Pro excludes (270, 1292, 1496) are left out
          ROOT/Ambiguous_test.txt                 optional, as for hrpro
        SECURITY: unpickling runs code. Only the two pickle files named above (or the paths passed as
        `train_pickle` / `test_pickle`) are ever opened; import pickles only from a source you trust.
hat     EGTEA as used by HAT, and any dataset in the same `database` JSON layout (HOI4D-O, ...)
          ROOT/egtea_annotations_split{N}.json    (`split=N`, default 1; or `annotations=PATH`); subsets
                                                  train|test, and validation|val imported as `val`
          ROOT/I3D/<video>.npz with 'rgb' and 'flow' (T x 1024 each, 2 steps/s), or <video>.npy (T x D);
          `features_dir=` points elsewhere, `step_rate=` sets another rate ("auto": the median rate).

Choices (docs/method.md 1 and 2):
- Features are concatenated rgb then flow (meta.json `streams: 2`: first half appearance).
- Classes are the labels of the whole annotation file, sorted alphabetically (THUMOS: 20, EGTEA: 22),
  so every import of one dataset gets the same class order whatever subset of videos has features.
- Point time in seconds = LACP frame / the video's fps from gt_full.json.
- A training video subset `val` is carved out of the training videos with `choose_validation`
  (`val_fraction`, `seed`); models are selected on it, never on test.
- Each feature file's length is checked against the video's duration x the layout's nominal step rate
  (hrpro 25/16, oat 4.0, hat 2.0; `step_rate="auto"` uses the median of n_steps / duration over the
  videos instead, so one wrong file still stands out): it may differ by `duration_tolerance` (a fraction,
  default 5%) or 2 steps, whichever is larger. The nominal rate is only a check: everything downstream
  converts with the video's own n_steps / duration.
- Segments that run past the video end are clipped to it; the 8 THUMOS segments that lie entirely past
  the end (video_validation_0000364, _0000856, video_test_0000814, _0001081) become zero-length
  segments at the end, so the known counts (3007 / 3311) hold and an evaluator counts them as missed,
  as the official evaluation does (no detection inside the video can match them).

Feature roles (THUMOS: the teacher reads HR-Pro's I3D, the student OAT's TSN). `features_for`:
"both" (default) writes features/ for both and replaces OUT; "student" / "teacher" merges into an
existing OUT that holds the other role's features: the result has features/ (student) and
teacher_features/ (teacher), videos.parquet with n_steps and teacher_n_steps. The merge keeps the
videos present in both imports (the others are reported), requires the same classes, subsets and
durations (within the tolerance), takes the annotation tables (durations, segments, points, ambiguous)
from the import that carries points (the teacher's when both or neither do) and re-carves `val`, so
either import order gives the same folder. Existing feature files are hard-linked, not copied.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import OnPointError, fail
from ..io import DuplicateKey, clean_stale, unique_keys
from ..progress import progress as progress_bar
from .dataset import (AMBIGUOUS_TABLE, POINT_COLUMNS, SEGMENT_COLUMNS, STUDENT_FEATURES, SUBSETS, TEACHER_FEATURES,
                      DatasetWriter, check_features, check_replaceable, check_video_id, choose_validation,
                      is_dataset_folder, load_dataset)

log = logging.getLogger(__name__)

LAYOUTS = ("hrpro", "oat", "hat")
FEATURES_FOR = ("both", "student", "teacher")
STEP_RATES = {"hrpro": 25.0 / 16.0, "oat": 4.0, "hat": 2.0}
# THUMOS'14 test videos HR-Pro's split_test.txt leaves out (wrong or empty annotations).
BLOCKED_THUMOS = ("video_test_0000270", "video_test_0001292", "video_test_0001496")
AMBIGUOUS_FILE = AMBIGUOUS_TABLE
"""OUT/ambiguous.parquet: `video_id, start, end` (seconds), THUMOS'14's Ambiguous_test.txt for the imported
videos. These are not ground truth and never count as misses. HR-Pro's evaluation (inherited from
W-TALC's `filter_segments`) drops every detection that overlaps an ambiguous segment of the same video
(any shared I3D snippet, i.e. intersection > 0) before computing AP; an evaluator that wants numbers
comparable with HR-Pro's does the same, and states whether it did."""

# THUMOS'14 trains on its "Validation" videos; a generic `database` file's "validation" is a held-out split.
THUMOS_SUBSETS = {"validation": "train", "train": "train", "training": "train", "test": "test", "testing": "test"}
DATABASE_SUBSETS = {"train": "train", "training": "train", "test": "test", "testing": "test",
                    "val": "val", "validation": "val"}
MIN_STEP_SLACK = 2          # feature length may always differ from duration x rate by this many steps
MIN_DURATION_SLACK = 1.0    # seconds two annotation files may always disagree on a video's duration


# --------------------------------------------------------------------------------------------------
# What one import reads, before anything is written


@dataclass
class _Annotations:
    """One annotation source, restricted to the videos the split files (or blocklist) allow."""

    path: Path
    layout: str
    videos: dict                         # video_id -> {"subset": train|val|test, "duration": s, "fps"}
    segments: pd.DataFrame               # SEGMENT_COLUMNS, seconds, clipped into the video
    classes: list
    points: pd.DataFrame | None = None   # POINT_COLUMNS
    ambiguous: pd.DataFrame | None = None
    explicit_val: bool = False           # the file names its own validation videos: no carving
    report: dict = field(default_factory=dict)


class _FeatureSource:
    """Where one video's features live; `load` returns an unvalidated T x D array."""

    def where(self, video_id):
        raise NotImplementedError

    def has(self, video_id):
        raise NotImplementedError

    def load(self, video_id):
        raise NotImplementedError


class _NpyFolders(_FeatureSource):
    """HR-Pro: features/train/<id>.npy for training videos, features/test/<id>.npy for test videos."""

    def __init__(self, folders):
        self.folders = folders          # video_id -> folder

    def where(self, video_id):
        return self.folders[video_id] / f"{video_id}.npy"

    def has(self, video_id):
        return self.where(video_id).is_file()

    def load(self, video_id):
        return _load_npy(self.where(video_id), video_id)


class _StreamFiles(_FeatureSource):
    """HAT: <folder>/<id>.npz holding 'rgb' and 'flow', or <folder>/<id>.npy holding one T x D array."""

    def __init__(self, folder, tolerance):
        self.folder, self.tolerance = Path(folder), tolerance
        self.mismatched = []

    def where(self, video_id):
        npz = self.folder / f"{video_id}.npz"
        return npz if npz.is_file() or not (self.folder / f"{video_id}.npy").is_file() else self.folder / f"{video_id}.npy"

    def has(self, video_id):
        return self.where(video_id).is_file()

    def load(self, video_id):
        path = self.where(video_id)
        if path.suffix == ".npy":
            return _load_npy(path, video_id)
        try:
            with np.load(path, allow_pickle=False) as archive:
                missing = [k for k in ("rgb", "flow") if k not in archive.files]
                if missing:
                    fail(path, f"npz lacks {missing} (has {archive.files}); expected 'rgb' and 'flow'", video_id)
                rgb, flow = archive["rgb"], archive["flow"]
        except OnPointError:
            raise
        except Exception as exc:  # zipfile/ValueError/OSError for a damaged archive
            fail(path, f"not a readable .npz file ({exc.__class__.__name__}: {exc})", video_id)
        return _concat_streams(rgb, flow, path, video_id, self.tolerance, self.mismatched)


class _Pickles(_FeatureSource):
    """OAT: one pickle per split, {video: {'rgb': T x D, 'flow': T x D}}. Loaded lazily, one at a time."""

    def __init__(self, by_subset, tolerance):
        self.by_subset = by_subset      # "train"/"test" -> pickle path
        self.subset_of = {}
        self.tolerance = tolerance
        self.mismatched = []
        self._tables = {}               # both stay loaded (as in OAT itself): each is unpickled once

    def _table(self, subset):
        path = self.by_subset[subset]
        if path not in self._tables:
            if not path.is_file():
                fail(path, f"feature pickle for the {subset} videos not found (pass its path explicitly)")
            try:
                with open(path, "rb") as handle:
                    table = pickle.load(handle)  # noqa: S301 - only the documented / user-named files
            except Exception as exc:
                fail(path, f"not a readable pickle ({exc.__class__.__name__}: {exc})")
            if not isinstance(table, dict):
                fail(path, f"expected a dict {{video: {{'rgb', 'flow'}}}}, got {type(table).__name__}")
            self._tables[path] = table
        return self._tables[path]

    def where(self, video_id):
        return self.by_subset[self.subset_of[video_id]]

    def has(self, video_id):
        return video_id in self._table(self.subset_of[video_id])

    def load(self, video_id):
        path = self.where(video_id)
        entry = self._table(self.subset_of[video_id])[video_id]
        if not isinstance(entry, dict) or "rgb" not in entry or "flow" not in entry:
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            fail(path, f"entry must be a dict with 'rgb' and 'flow', got {keys}", video_id)
        return _concat_streams(entry["rgb"], entry["flow"], path, video_id, self.tolerance, self.mismatched)


def _load_npy(path, video_id):
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        fail(path, f"not a readable .npy file ({exc.__class__.__name__}: {exc})", video_id)


def _concat_streams(rgb, flow, path, video_id, tolerance, mismatched):
    """rgb then flow along the feature axis; streams a step or two apart are cut to the shorter."""
    rgb, flow = np.asarray(rgb), np.asarray(flow)
    for name, array in (("rgb", rgb), ("flow", flow)):
        if array.ndim != 2:
            fail(path, f"'{name}' must be 2-D (n_steps x dim), got shape {array.shape}", video_id)
    n, m = rgb.shape[0], flow.shape[0]
    if n != m:
        if abs(n - m) > max(MIN_STEP_SLACK, tolerance * max(n, m)):
            fail(path, f"'rgb' has {n} steps but 'flow' has {m}", video_id)
        mismatched.append(video_id)
        n = min(n, m)
    return np.concatenate([rgb[:n], flow[:n]], axis=1)


# --------------------------------------------------------------------------------------------------
# Annotation readers


def _read_json(path):
    path = Path(path)
    if not path.is_file():
        fail(path, "annotation file not found")
    try:
        data = json.loads(path.read_text(), object_pairs_hook=unique_keys)
    except DuplicateKey as exc:
        fail(path, exc.describe())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        fail(path, f"not valid JSON ({exc})")
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        fail(path, "expected a JSON object with a 'database' mapping video -> entry")
    return data["database"]


def _read_split(path):
    path = Path(path)
    if not path.is_file():
        fail(path, "split file not found")
    ids = path.read_text().split()
    if not ids:
        fail(path, "split file lists no videos")
    if len(set(ids)) != len(ids):
        log.warning("%s: %d duplicate video ids ignored", path, len(ids) - len(set(ids)))
    return list(dict.fromkeys(ids))


def subset_names_with(base, mapping):
    """The layout's subset names (lower case) with the user's `NAME=train|val|test` mapping on top."""
    names = dict(base)
    for name, subset in (mapping or {}).items():
        if subset not in SUBSETS:
            raise OnPointError(f"subset mapping {name}={subset}: the target must be one of {', '.join(SUBSETS)}")
        names[str(name).lower()] = subset
    return names


def _subset_of(path, video_id, raw, subset_names, keep, report):
    """train|val|test of one video: the split files decide when present (as in HR-Pro's own loader,
    which never reads the JSON's subset); the JSON's name then only raises a counted warning."""
    mapped = subset_names.get(raw.lower())
    report["subsets_in_file"][raw] += 1
    if keep is None:
        if mapped is None:
            fail(path, f"unknown subset {raw!r} (expected one of {sorted(set(subset_names))}; map other names "
                       f"with --subset-map NAME=train|val|test)", video_id)
        return mapped
    if mapped is None or ("test" if mapped == "test" else "train") != keep[video_id]:
        report["subset_disagrees_with_split"].append(video_id)
    return keep[video_id]


def _parse_database(path, database, subset_names, keep=None):
    """Entries of a `database` JSON: subsets normalised, segments clipped into the video.

    `keep`: video_id -> subset the split files give; videos outside it are not imported, and the
    split decides the subset of the others.
    Returns (videos, segments, classes, ambiguous rows, report).
    """
    report = {"subsets_renamed": Counter(), "subsets_in_file": Counter(), "subset_disagrees_with_split": [],
              "not_in_split": [], "no_annotations": [], "segments_clipped": 0, "segments_outside_video": 0}
    videos, rows, ambiguous, labels = {}, [], [], set()
    for video_id, entry in database.items():
        if not isinstance(entry, dict):
            fail(path, f"entry is not an object (got {type(entry).__name__})", video_id)
        raw = str(entry.get("subset", ""))
        try:
            duration = float(entry["duration"])
            fps = float(entry["fps"]) if entry.get("fps") is not None else None
            anns = entry.get("annotations", [])
            segs = [(str(a["label"]), float(a["segment"][0]), float(a["segment"][1])) for a in anns]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            fail(path, f"malformed entry ({exc.__class__.__name__}: {exc}); expected duration and "
                       f"annotations [{{segment: [start, end], label}}]", video_id)
        labels.update(label for label, _, _ in segs if label.lower() != "ambiguous")
        if keep is not None and video_id not in keep:
            report["not_in_split"].append(video_id)
            continue
        check_video_id(path, video_id)
        subset = _subset_of(path, video_id, raw, subset_names, keep, report)
        if not duration > 0 or not np.isfinite(duration):
            fail(path, f"duration must be positive, got {duration}", video_id)
        if raw != subset:
            report["subsets_renamed"][f"{raw}->{subset}"] += 1
        videos[video_id] = {"subset": subset, "duration": duration, "fps": fps}
        if not segs:
            report["no_annotations"].append(video_id)
        for label, start, end in segs:
            if not (np.isfinite(start) and np.isfinite(end)) or end < start:
                fail(path, f"segment [{start}, {end}] of {label!r} is not an interval", video_id)
            if label.lower() == "ambiguous":      # some THUMOS files carry these as a label
                ambiguous.append((video_id, min(max(start, 0.0), duration), min(end, duration)))
                continue
            if start < 0 or end > duration:
                report["segments_clipped"] += 1
                report["segments_outside_video"] += start >= duration
            start, end = min(max(start, 0.0), duration), min(max(end, 0.0), duration)
            rows.append((video_id, label, start, end))
    if keep is not None:
        absent = [v for v in keep if v not in database]
        if absent:
            fail(path, "listed in the split file but absent from the annotation file", absent[0])
    segments = pd.DataFrame(rows, columns=SEGMENT_COLUMNS)
    return videos, segments, sorted(labels), ambiguous, report


def _read_lacp_points(path, videos, database, classes):
    """LACP points (point_gaussian.csv: class, video_id, point in frames at the video's native fps)."""
    path = Path(path)
    if not path.is_file():
        fail(path, "points CSV not found (HR-Pro ships it as point_labels/point_gaussian.csv; "
                   "pass points=False to import without points)")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        fail(path, f"cannot read points CSV ({exc.__class__.__name__}: {exc})")
    missing = [c for c in ("class", "video_id", "point") if c not in table.columns]
    if missing:
        fail(path, f"missing columns {missing}; expected class, video_id, point (frames)")
    table = table.astype({"video_id": str, "class": str})
    frames = pd.to_numeric(table["point"], errors="coerce")
    if frames.isna().any():
        fail(path, f"point {table['point'][frames.isna()].iloc[0]!r} is not a frame number",
             table.video_id[frames.isna()].iloc[0])
    unknown_video = ~table.video_id.isin(database)
    if unknown_video.any():
        fail(path, "video not in the annotation file", table.video_id[unknown_video].iloc[0])
    unknown = ~table["class"].isin(classes)
    if unknown.any():
        row = table[unknown].iloc[0]
        fail(path, f"unknown class {row['class']!r} (the annotation file has {len(classes)} classes)", row.video_id)
    fps = table.video_id.map(lambda v: database[v].get("fps"))
    no_fps = fps.isna()
    if no_fps.any():
        fail(path, "the annotation file gives no fps for this video, so its point frames cannot be "
                   "converted to seconds", table.video_id[no_fps].iloc[0])
    fps = fps.astype(float).to_numpy()
    time = frames.to_numpy(float) / fps
    duration = table.video_id.map(lambda v: float(database[v]["duration"])).to_numpy()
    outside = (time < 0) | (time > duration + 1e-6)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        fail(path, f"point at frame {frames.iloc[i]:g} = {time[i]:.2f} s lies outside the video "
                   f"(duration {duration[i]:g} s)", table.video_id.iloc[i])
    points = pd.DataFrame({"video_id": table.video_id, "label": table["class"], "time": time})
    kept = points.video_id.isin(videos).to_numpy()
    # HR-Pro's own snippet index int(point * 25 / (fps * 16)): two points of one video on one snippet
    # collide there; both are kept here (in seconds) and counted.
    snippet = pd.DataFrame({"video_id": table.video_id[kept],
                            "snippet": np.floor(frames.to_numpy(float) * 25.0 / (fps * 16.0))[kept]})
    collisions = int(len(snippet) - len(snippet.drop_duplicates()))
    return points[kept].reset_index(drop=True), collisions, int((~kept).sum())


def _read_ambiguous(path, videos):
    path = Path(path)
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            video_id, start, end = parts[0], float(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            fail(path, f"line {number}: expected 'video start end' (seconds), got {line!r}")
        if video_id in videos:
            duration = videos[video_id]["duration"]
            rows.append((video_id, min(max(start, 0.0), duration), min(max(end, 0.0), duration)))
    return rows


def _split_keep(root, required):
    """video_id -> 'train'|'test' from split_train.txt / split_test.txt, or None when absent and optional."""
    train, test = root / "split_train.txt", root / "split_test.txt"
    if not required and not train.exists() and not test.exists():
        return None
    keep = {v: "train" for v in _read_split(train)}
    for video_id in _read_split(test):
        if video_id in keep:
            fail(test, "listed in both split_train.txt and split_test.txt", video_id)
        keep[video_id] = "test"
    return keep


def _hrpro(root, annotations, points, names):
    gt = Path(annotations) if annotations else root / "gt_full.json"
    database = _read_json(gt)
    keep = _split_keep(root, required=True)
    videos, segments, classes, amb_rows, report = _parse_database(gt, database, names, keep)
    ann = _Annotations(gt, "hrpro", videos, segments, classes, report=report)
    if points is not False:
        if points is None:
            points = root / "point_labels" / "point_gaussian.csv"
            if not points.is_file() and (root / "point_gaussian.csv").is_file():
                points = root / "point_gaussian.csv"
        ann.points, report["point_collisions"], report["points_dropped"] = _read_lacp_points(
            points, videos, database, classes)
    amb_file = root / "Ambiguous_test.txt"
    amb_rows += _read_ambiguous(amb_file, videos) if amb_file.is_file() else []
    ann.ambiguous = pd.DataFrame(amb_rows, columns=["video_id", "start", "end"])
    folders = {v: root / "features" / ("test" if info["subset"] == "test" else "train") for v, info in videos.items()}
    return ann, _NpyFolders(folders)


def _blocklist_keep(path, database, names):
    """Without split files: every video of the file but the three THUMOS test videos HR-Pro excludes."""
    keep = {}
    for video_id, entry in database.items():
        if video_id in BLOCKED_THUMOS or not isinstance(entry, dict):
            continue          # a non-object entry is refused by _parse_database
        raw = str(entry.get("subset", ""))
        if raw.lower() not in names:
            fail(path, f"unknown subset {raw!r} (expected one of {sorted(set(names))}; map other names with "
                       f"--subset-map NAME=train|test)", video_id)
        keep[video_id] = "test" if names[raw.lower()] == "test" else "train"
    return keep


def _oat(root, annotations, train_pickle, test_pickle, tolerance, names):
    path = Path(annotations) if annotations else root / "thumos14_v2.json"
    database = _read_json(path)
    keep = _split_keep(root, required=False)
    if keep is None:
        keep = _blocklist_keep(path, database, names)
    videos, segments, classes, amb_rows, report = _parse_database(path, database, names, keep)
    ann = _Annotations(path, "oat", videos, segments, classes, report=report)
    amb_file = root / "Ambiguous_test.txt"
    amb_rows += _read_ambiguous(amb_file, videos) if amb_file.is_file() else []
    ann.ambiguous = pd.DataFrame(amb_rows, columns=["video_id", "start", "end"])
    features = _Pickles({"train": Path(train_pickle) if train_pickle else root / "thumos_all_feature_val_V3.pickle",
                         "test": Path(test_pickle) if test_pickle else root / "thumos_all_feature_test_V3.pickle"},
                        tolerance)
    features.subset_of = {v: info["subset"] for v, info in videos.items()}
    return ann, features


def _hat(root, annotations, split, features_dir, tolerance, names):
    path = Path(annotations) if annotations else root / f"egtea_annotations_split{split}.json"
    database = _read_json(path)
    videos, segments, classes, amb_rows, report = _parse_database(path, database, names)
    ann = _Annotations(path, "hat", videos, segments, classes, report=report,
                       explicit_val=any(info["subset"] == "val" for info in videos.values()))
    if amb_rows:
        ann.ambiguous = pd.DataFrame(amb_rows, columns=["video_id", "start", "end"])
    return ann, _StreamFiles(Path(features_dir) if features_dir else root / "I3D", tolerance)


# --------------------------------------------------------------------------------------------------
# The other side of a merge: an existing canonical folder


@dataclass
class _Existing:
    dataset: object       # Dataset
    folder: str           # the feature folder that serves `role`
    role: str             # "student" | "teacher"
    info: dict            # its meta.json description
    carved_val: bool

    def annotations(self):
        ds = self.dataset
        videos = {r.video_id: {"subset": r.subset, "duration": float(r.duration), "fps": None}
                  for r in ds.videos.itertuples(index=False)}
        amb_path = ds.root / AMBIGUOUS_FILE
        ambiguous = pd.read_parquet(amb_path) if amb_path.is_file() else None
        return _Annotations(Path(ds.meta.get("annotations", ds.root)), ds.meta.get("source", "existing"),
                            videos, ds.segments[SEGMENT_COLUMNS], list(ds.classes),
                            None if ds.points is None else ds.points[POINT_COLUMNS], ambiguous,
                            explicit_val=not self.carved_val)


def _existing(out, features_for):
    """What to merge with: None to write OUT from scratch (replacing a dataset that is there)."""
    check_replaceable(out)
    if not is_dataset_folder(out):
        return None
    if features_for == "both":
        log.warning("%s: replacing the existing dataset (features_for='both')", out)
        return None
    dataset = load_dataset(out)
    meta = dataset.meta
    other = "teacher" if features_for == "student" else "student"
    carved = bool(meta.get("val", {}).get("carved", True))
    if dataset.has_teacher_features:
        folder = TEACHER_FEATURES if other == "teacher" else STUDENT_FEATURES
        info = meta.get("teacher_features" if other == "teacher" else "features", {})
        return _Existing(dataset, folder, other, info, carved)
    role = meta.get("features", {}).get("imported_for", "both")
    if role in (other, "both"):
        return _Existing(dataset, STUDENT_FEATURES, other, meta.get("features", {}), carved)
    log.warning("%s: replacing the existing %s features (it holds no %s features to keep)", out, role, other)
    return None


# --------------------------------------------------------------------------------------------------
# Writing


def _validated(features, video_id, duration, rate, tolerance, dim):
    """Load one video's features and check them: finite, 2-D, same dim as the others, right length."""
    path = features.where(video_id)
    array = check_features(features.load(video_id), path, video_id, dim)
    if rate is not None:
        expected = duration * rate
        slack = max(MIN_STEP_SLACK, tolerance * expected)
        if abs(array.shape[0] - expected) > slack:
            fail(path, f"{array.shape[0]} feature steps, but duration {duration:g} s x {rate:g} steps/s = "
                       f"{expected:.1f} (tolerance {tolerance:g} = {slack:.1f} steps): features of another "
                       f"video or another rate? (step_rate / duration_tolerance change the check)", video_id)
    return array


def _auto_rate(features, ids, videos):
    """Median n_steps / duration over the videos: the rate when the layout's is unknown."""
    rates = []
    for video_id in ids:
        array = features.load(video_id)
        if getattr(array, "ndim", 0) == 2:
            rates.append(array.shape[0] / videos[video_id]["duration"])
    if not rates:
        return None
    return float(np.median(rates))


def import_layout(layout, root, out, *, features_for="both", val_fraction=0.1, seed=0, annotations=None,
                  duration_tolerance=0.05, progress=True, points=None, split=1, features_dir=None,
                  train_pickle=None, test_pickle=None, step_rate=None, subset_map=None):
    """Read a public layout under `root` into the canonical dataset folder `out`; return summary counts.

    layout        "hrpro" | "oat" | "hat" (file names: this module's docstring).
    features_for  "both" | "student" | "teacher": see the module docstring (merging two imports).
    val_fraction, seed   the `val` videos carved out of the training videos (choose_validation).
    annotations   the annotation JSON instead of the layout's default name.
    duration_tolerance   allowed relative mismatch of feature length vs duration x step rate (and of
                  durations between two merged imports; floors: 2 steps, 1 s).
    points        hrpro: the LACP CSV instead of the default location; False: import without points.
    split         hat: which egtea_annotations_split{N}.json.    features_dir  hat: instead of ROOT/I3D.
    train_pickle, test_pickle   oat: the feature pickles (the only pickles ever opened; unpickling
                  runs code, so name only files from a source you trust).
    step_rate     nominal steps/s for the length check instead of the layout's; "auto": median over
                  the videos.
    subset_map    {name in the file: train|val|test}, for subset names the layout does not know or
                  reads otherwise (hat reads 'Validation' as val). With split files (hrpro, and oat
                  when present) the split files decide and the file's subset is only a warning.

    Every problem with the input raises OnPointError naming the file, the video and the problem,
    and leaves `out` as it was (absent, or the existing dataset when merging).
    """
    if layout not in LAYOUTS:
        raise OnPointError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if features_for not in FEATURES_FOR:
        raise OnPointError(f"features_for must be one of {', '.join(FEATURES_FOR)}, got {features_for!r}")
    if not 0 <= val_fraction < 1:
        raise OnPointError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not duration_tolerance >= 0:
        raise OnPointError(f"duration_tolerance must be >= 0, got {duration_tolerance}")
    root, out = Path(root), Path(out)
    if not root.is_dir():
        fail(root, "layout root folder not found")
    misplaced = {"points": (points, "hrpro"), "train_pickle": (train_pickle, "oat"),
                 "test_pickle": (test_pickle, "oat"), "features_dir": (features_dir, "hat")}
    for name, (value, owner) in misplaced.items():
        if value not in (None, False) and layout != owner:
            raise OnPointError(f"{name} applies to the {owner} layout only, not {layout}")

    names = subset_names_with(DATABASE_SUBSETS if layout == "hat" else THUMOS_SUBSETS, subset_map)
    if layout == "hrpro":
        ann, features = _hrpro(root, annotations, points, names)
    elif layout == "oat":
        ann, features = _oat(root, annotations, train_pickle, test_pickle, duration_tolerance, names)
    else:
        ann, features = _hat(root, annotations, split, features_dir, duration_tolerance, names)
    report = ann.report

    ids = sorted(ann.videos)
    missing = [v for v in progress_bar(ids, desc=f"{layout}: finding features", unit="video", disable=not progress, leave=False)
               if not features.has(v)]
    if missing:
        log.warning("%s: %d of %d videos have no features and are skipped (first: %s)",
                    layout, len(missing), len(ids), ", ".join(missing[:3]))
    report["no_features"] = missing
    skipped = set(missing)
    ids = [v for v in ids if v not in skipped]
    if not ids:
        fail(root, f"none of the {len(ann.videos)} videos of {ann.path.name} has a feature file "
                   f"(looked in {features.where(sorted(ann.videos)[0]) if ann.videos else root})")

    rate = STEP_RATES[layout] if step_rate is None else step_rate
    if rate == "auto":
        rate = _auto_rate(features, ids, ann.videos)
    else:
        try:
            rate = float(rate)
        except (TypeError, ValueError):
            rate = -1.0
        if not rate > 0:
            raise OnPointError(f"step_rate must be a positive number of steps per second or 'auto', got {step_rate!r}")

    clean_stale(out)           # a killed earlier import: its temporary folder goes, a moved-aside OUT comes back
    existing = _existing(out, features_for)
    role = features_for
    plan = _merge_plan(ann, ids, existing, role, duration_tolerance) if existing else None
    tables = plan["tables"] if plan else ann
    final_ids = plan["ids"] if plan else ids
    subsets = _subsets(tables, final_ids, val_fraction, seed)
    _check_both_splits(tables.path, subsets, report)

    info = {"layout": layout, "root": str(root.absolute()), "imported_for": role,
            "steps_per_second": rate, "streams": ["rgb", "flow"]}
    meta = {"source": tables.layout, "annotations": str(Path(tables.path).absolute()), "streams": 2,
            "val": {"carved": not tables.explicit_val, "fraction": val_fraction, "seed": seed}}
    if plan:
        kept_info = dict(existing.info, imported_for=existing.role)
        student_info, teacher_info = (info, kept_info) if role == "student" else (kept_info, info)
        meta |= {"features": student_info, "teacher_features": teacher_info,
                 "steps_per_second": student_info.get("steps_per_second"),
                 "teacher_steps_per_second": teacher_info.get("steps_per_second")}
    else:
        meta |= {"features": info, "steps_per_second": rate}

    dim = None
    with DatasetWriter(out, ann.classes, meta) as writer:
        for video_id in progress_bar(final_ids, desc=f"{layout}: importing features", unit="video", disable=not progress):
            array = _validated(features, video_id, ann.videos[video_id]["duration"], rate,
                               duration_tolerance, dim)
            dim = array.shape[1]
            duration = tables.videos[video_id]["duration"]
            if plan is None:
                writer.add_video(video_id, subsets[video_id], duration, array)
                continue
            other = existing.dataset.root / existing.folder / f"{video_id}.npy"
            student, teacher = (array, other) if role == "student" else (other, array)
            writer.add_video(video_id, subsets[video_id], duration, student, teacher)
        keep = set(final_ids)
        writer.set_segments(tables.segments[tables.segments.video_id.isin(keep)])
        if tables.points is not None:
            writer.set_points(tables.points[tables.points.video_id.isin(keep)])
        if tables.ambiguous is not None:
            writer.add_table(AMBIGUOUS_FILE, tables.ambiguous[tables.ambiguous.video_id.isin(keep)])
        summary = _summary(layout, out, role, writer, tables, keep, subsets, report, features, plan)
        writer.meta["import"] = {k: (len(v) if isinstance(v, list) else v)
                                 for k, v in summary["skipped"].items()} | summary["warnings"]
    _log_warnings(layout, summary)
    return summary


def _check_both_splits(path, subsets, report):
    """An import without training or without test videos is an error: every later stage needs both.

    The usual cause is a subset name read differently than meant (an ActionFormer-style THUMOS
    file calls its training videos 'Validation', which the hat layout reads as val).
    """
    counts = Counter(subsets.values())
    for needed in ("train", "test"):
        if counts.get(needed):
            continue
        names = dict(report.get("subsets_in_file", {}))
        hint = ("; if these are the training videos, pass --subset-map Validation=train"
                if needed == "train" and counts.get("val") else "; map the file's names with --subset-map NAME=train|val|test")
        fail(path, f"the import would have no {needed} videos (train {counts.get('train', 0)}, val "
                   f"{counts.get('val', 0)}, test {counts.get('test', 0)}; subsets in the file: {names}){hint}")


def _merge_plan(ann, ids, existing, role, tolerance):
    """Videos and annotation tables of a merge with an existing folder; checks that both agree."""
    old = existing.annotations()
    ds = existing.dataset
    if list(old.classes) != list(ann.classes):
        fail(ann.path, f"classes {ann.classes} differ from those of the existing dataset {ds.root} "
                       f"({old.classes}); cannot merge")
    common = sorted(set(ids) & set(old.videos))
    if not common:
        fail(ann.path, f"no video in common with the existing dataset {ds.root}; cannot merge")
    for video_id in common:
        new, prev = ann.videos[video_id], old.videos[video_id]
        if (new["subset"] == "test") != (prev["subset"] == "test"):
            fail(ann.path, f"subset {new['subset']} disagrees with {prev['subset']} in {ds.root}", video_id)
        d1, d2 = new["duration"], prev["duration"]
        if abs(d1 - d2) > max(MIN_DURATION_SLACK, tolerance * max(d1, d2)):
            fail(ann.path, f"duration {d1:g} s disagrees with {d2:g} s in the existing dataset {ds.root} "
                           f"(tolerance {tolerance:g}); are these the same videos?", video_id)
    new_points, old_points = ann.points is not None, old.points is not None
    if new_points != old_points:
        tables = ann if new_points else old
    else:
        tables = ann if role == "teacher" else old
    dropped_new = sorted(set(ids) - set(common))
    dropped_old = sorted(set(old.videos) - set(common))
    if dropped_new or dropped_old:
        log.warning("merge: keeping the %d videos present in both imports; dropping %d only in this import "
                    "and %d only in %s", len(common), len(dropped_new), len(dropped_old), ds.root)
    return {"tables": tables, "ids": common, "dropped_new": dropped_new, "dropped_old": dropped_old,
            "existing": str(ds.root)}


def _subsets(tables, ids, val_fraction, seed):
    """train | val | test per video; val is carved from the training videos unless the file names it."""
    subsets = {v: tables.videos[v]["subset"] for v in ids}
    if tables.explicit_val:
        return subsets
    train = [v for v in ids if subsets[v] in ("train", "val")]
    val = choose_validation(train, val_fraction, seed)
    return {v: ("val" if v in val else ("train" if s in ("train", "val") else s)) for v, s in subsets.items()}


def _summary(layout, out, role, writer, tables, keep, subsets, report, features, plan):
    by_subset = Counter(subsets.values())
    seg_subset = tables.segments[tables.segments.video_id.isin(keep)].video_id.map(subsets)
    seg_counts = Counter(seg_subset)
    points = tables.points[tables.points.video_id.isin(keep)] if tables.points is not None else None
    ambiguous = tables.ambiguous[tables.ambiguous.video_id.isin(keep)] if tables.ambiguous is not None else None
    skipped = {"no_features": list(report.get("no_features", [])),
               "not_in_split": list(report.get("not_in_split", []))}
    if plan:
        skipped["merge_only_in_this_import"] = plan["dropped_new"]
        skipped["merge_only_in_existing"] = plan["dropped_old"]
    warnings = {
        "no_annotations": len([v for v in report.get("no_annotations", []) if v in keep]),
        "segments_clipped": int(report.get("segments_clipped", 0)),
        "segments_outside_video": int(report.get("segments_outside_video", 0)),
        "subsets_renamed": dict(report.get("subsets_renamed", {})),
        "subset_disagrees_with_split": len([v for v in report.get("subset_disagrees_with_split", []) if v in keep]),
        "point_collisions": int(report.get("point_collisions", 0)),
        "points_dropped": int(report.get("points_dropped", 0)),
        "stream_length_mismatch": len(getattr(features, "mismatched", [])),
    }
    return {
        "layout": layout, "out": str(out), "features_for": role, "merged": plan is not None,
        "videos": {s: int(by_subset.get(s, 0)) for s in ("train", "val", "test")},
        "segments": {s: int(seg_counts.get(s, 0)) for s in ("train", "val", "test")},
        "points": 0 if points is None else int(len(points)),
        "ambiguous": 0 if ambiguous is None else int(len(ambiguous)),
        "classes": len(writer.classes),
        "feature_dim": writer.feature_dim, "teacher_feature_dim": writer.teacher_feature_dim,
        "skipped": skipped, "warnings": warnings,
    }


def _log_warnings(layout, summary):
    w, s = summary["warnings"], summary["skipped"]
    if s["not_in_split"]:
        log.warning("%s: %d videos of the annotation file are not in the split files (or are THUMOS test "
                    "videos HR-Pro excludes) and were not imported: %s", layout, len(s["not_in_split"]),
                    ", ".join(s["not_in_split"][:5]))
    if w["no_annotations"]:
        log.warning("%s: %d videos have no annotations; kept as background-only videos", layout, w["no_annotations"])
    if w["segments_clipped"]:
        log.warning("%s: %d segments ran past the video end and were clipped (%d lie entirely past it and "
                    "are now zero-length at the end)", layout, w["segments_clipped"], w["segments_outside_video"])
    if w["point_collisions"]:
        log.warning("%s: %d points share HR-Pro's I3D snippet with another point of the same video "
                    "(kept, in seconds)", layout, w["point_collisions"])
    if w["points_dropped"]:
        log.warning("%s: %d points belong to videos that were not imported and were dropped", layout, w["points_dropped"])
    if w["stream_length_mismatch"]:
        log.warning("%s: %d videos had rgb and flow of slightly different lengths; cut to the shorter",
                    layout, w["stream_length_mismatch"])
    if w["subset_disagrees_with_split"]:
        log.warning("%s: %d videos have a subset in the annotation file that disagrees with the split files; "
                    "the split files decide (as in HR-Pro's own loader)", layout, w["subset_disagrees_with_split"])
    if w["subsets_renamed"]:
        log.info("%s: subset names normalised: %s", layout, w["subsets_renamed"])
