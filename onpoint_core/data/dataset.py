"""The canonical dataset folder that every stage after the first reads.

Layout (docs/formats.md):
  videos.parquet            video_id, subset (train|val|test), duration (s), n_steps
                            [+ teacher_n_steps when a second feature set is present]
  segments.parquet          video_id, label, start, end        (seconds, ground truth)
  points.parquet            video_id, label, time              (seconds; optional: shipped points, e.g. LACP)
  ambiguous.parquet         video_id, start, end               (seconds; optional: THUMOS'14 ambiguous stretches)
  classes.json              {"classes": [...]}                 (fixed order = class index)
  meta.json                 feature_dim, streams, teacher_feature_dim, source, ...
  features/<id>.npy         float32, n_steps x feature_dim            (the student's features)
  teacher_features/<id>.npy float32, teacher_n_steps x teacher_dim    (optional; the teacher's)

Seconds <-> steps always go through `n_steps / duration` of the video (docs/method.md 1).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import OnPointError, fail
from ..io import atomic_dir, clean_stale, save_npy, write_json, write_parquet

SUBSETS = ("train", "val", "test")
VIDEO_COLUMNS = ["video_id", "subset", "duration", "n_steps"]
SEGMENT_COLUMNS = ["video_id", "label", "start", "end"]
POINT_COLUMNS = ["video_id", "label", "time"]
STUDENT_FEATURES = "features"
TEACHER_FEATURES = "teacher_features"
AMBIGUOUS_TABLE = "ambiguous.parquet"
# `<id>.npy` and its temporary `.<id>.npy.tmp-<8 chars>` must fit the usual 255-byte file name limit
MAX_VIDEO_ID_BYTES = 200


def check_video_id(path, video_id):
    """Refuse a video id that is not one plain file name: it becomes `features/<id>.npy`.

    An id like `../../x` or `/abs/x` would write outside the dataset folder; a leading dot would
    hide the file; a very long id fails deep inside the file system with a traceback.
    """
    if not isinstance(video_id, str) or not video_id:
        fail(path, f"video id {video_id!r} is not a non-empty string")
    shown = video_id if len(video_id) <= 120 else video_id[:57] + "..."
    if "/" in video_id or "\\" in video_id or video_id.startswith(".") or "\0" in video_id:
        fail(path, "video id is not usable as a file name (contains a path separator or starts with '.')", shown)
    if any(ord(ch) < 32 for ch in video_id):
        fail(path, "video id contains a control character", shown)
    if len(video_id.encode("utf-8")) > MAX_VIDEO_ID_BYTES:
        fail(path, f"video id is {len(video_id.encode('utf-8'))} bytes long; at most {MAX_VIDEO_ID_BYTES} "
                   f"fit in a file name", shown)


def is_dataset_folder(path):
    """Whether `path` holds a canonical dataset folder (the only kind of folder a writer may replace)."""
    path = Path(path)
    return (path / "classes.json").is_file() and (path / "videos.parquet").is_file()


def check_replaceable(out):
    """Refuse an `out` that is a file, or a non-empty folder that is not a dataset: it would be deleted."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        fail(out, "output exists and is not a folder")
    if not is_dataset_folder(out) and any(out.iterdir()):
        fail(out, "output folder exists, is not empty and is not a canonical dataset folder; "
                  "refusing to replace it")


def check_features(array, path, video_id, feature_dim=None):
    """Return `array` as a float32 2-D array, or raise naming the file and the problem."""
    array = np.asarray(array)
    if array.ndim != 2:
        fail(path, f"features must be 2-D (n_steps x dim), got shape {array.shape}", video_id)
    if array.shape[0] == 0:
        fail(path, "feature file has no steps", video_id)
    if feature_dim is not None and array.shape[1] != feature_dim:
        fail(path, f"feature dimension {array.shape[1]} differs from the dataset's {feature_dim}", video_id)
    if not np.issubdtype(array.dtype, np.number):
        fail(path, f"features have non-numeric dtype {array.dtype}", video_id)
    if not np.isfinite(array).all():
        bad = int(np.argwhere(~np.isfinite(array))[0][0])
        fail(path, f"features contain NaN or inf (first at step {bad})", video_id)
    return np.ascontiguousarray(array, dtype=np.float32)


@dataclass
class Dataset:
    """A loaded canonical dataset folder. Tables are in memory; features are read on demand."""

    root: Path
    videos: pd.DataFrame
    segments: pd.DataFrame
    points: pd.DataFrame | None
    classes: list[str]
    meta: dict = field(default_factory=dict)
    ambiguous: pd.DataFrame | None = None     # THUMOS'14 ambiguous segments (video_id, start, end), if imported

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def has_teacher_features(self):
        return (self.root / TEACHER_FEATURES).is_dir()

    def video_ids(self, *subsets):
        """Video ids of the given subsets (all when none given), in table order."""
        frame = self.videos if not subsets else self.videos[self.videos.subset.isin(subsets)]
        return frame.video_id.tolist()

    def video(self, video_id):
        """The videos.parquet row of one video, as a dict."""
        return self._by_id.loc[video_id].to_dict() | {"video_id": video_id}

    def features(self, video_id, mmap=False):
        """Student features of one video (n_steps x feature_dim, float32)."""
        return np.load(self.root / STUDENT_FEATURES / f"{video_id}.npy", mmap_mode="r" if mmap else None)

    def teacher_features(self, video_id, mmap=False):
        """Teacher features: the second feature set when present, else the student's."""
        folder = TEACHER_FEATURES if self.has_teacher_features else STUDENT_FEATURES
        return np.load(self.root / folder / f"{video_id}.npy", mmap_mode="r" if mmap else None)

    def n_steps(self, video_id, teacher=False):
        row = self._by_id.loc[video_id]
        if teacher and self.has_teacher_features:
            return int(row["teacher_n_steps"])
        return int(row["n_steps"])

    def label_index(self, labels):
        """Map class names to indices in the fixed class order."""
        lookup = {name: i for i, name in enumerate(self.classes)}
        return np.array([lookup[name] for name in labels], dtype=np.int64)

    def segments_of(self, video_id):
        return self.segments[self.segments.video_id == video_id]

    @property
    def _by_id(self):
        cached = self.__dict__.get("_by_id_cache")
        if cached is None:
            cached = self.videos.set_index("video_id")
            self.__dict__["_by_id_cache"] = cached
        return cached


def _read_table(path, columns, required=True):
    if not path.exists():
        if required:
            fail(path, "missing (is this a canonical dataset folder? see `onpoint import --help`)")
        return None
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        fail(path, f"not a readable Parquet file ({exc.__class__.__name__}: {exc})")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        fail(path, f"missing columns {missing}; expected {columns}")
    return frame


def load_dataset(root, check_files=True):
    """Load and validate a canonical dataset folder; raise OnPointError naming the file on any problem."""
    root = Path(root)
    if not root.is_dir():
        fail(root, "dataset folder does not exist")
    classes_path = root / "classes.json"
    try:
        classes = json.loads(classes_path.read_text())["classes"]
    except FileNotFoundError:
        fail(classes_path, "missing class list")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        fail(classes_path, f"malformed class list ({exc})")
    meta_path = root / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        fail(meta_path, "missing (it names the feature width the networks are built for)")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        fail(meta_path, f"malformed JSON ({exc})")
    except OSError as exc:
        fail(meta_path, f"not readable ({exc.__class__.__name__})")
    width = meta.get("feature_dim") if isinstance(meta, dict) else None
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        fail(meta_path, "needs \"feature_dim\": the width of the feature vectors (a positive integer)")
    videos = _read_table(root / "videos.parquet", VIDEO_COLUMNS)
    segments = _read_table(root / "segments.parquet", SEGMENT_COLUMNS)
    points = _read_table(root / "points.parquet", POINT_COLUMNS, required=False)
    ambiguous = _read_table(root / AMBIGUOUS_TABLE, ["video_id", "start", "end"], required=False)
    dataset = Dataset(root, videos, segments, points, list(classes), meta, ambiguous)
    validate_tables(dataset)
    if dataset.has_teacher_features and "teacher_n_steps" not in videos.columns:
        fail(root / "videos.parquet", "teacher_features/ exists but the teacher_n_steps column is missing")
    if check_files:
        check_feature_files(dataset, deep=False)
    return dataset


def check_feature_files(dataset, deep=True):
    """Every video has its feature files; `deep` also loads them (shape, dtype, NaN/inf, n_steps)."""
    folders = [(STUDENT_FEATURES, "n_steps", "feature_dim")]
    if dataset.has_teacher_features:
        folders.append((TEACHER_FEATURES, "teacher_n_steps", "teacher_feature_dim"))
    for folder, steps_column, dim_key in folders:
        for row in dataset.videos.itertuples():
            path = dataset.root / folder / f"{row.video_id}.npy"
            if not path.exists():
                fail(path, "feature file missing", row.video_id)
            if not deep:
                continue
            try:
                array = np.load(path, mmap_mode="r")
            except ValueError as exc:
                fail(path, f"not a readable .npy file ({exc})", row.video_id)
            check_features(array, path, row.video_id, dataset.meta.get(dim_key))
            if array.shape[0] != getattr(row, steps_column):
                fail(path, f"{array.shape[0]} steps, but videos.parquet says {steps_column}="
                           f"{getattr(row, steps_column)}", row.video_id)


def validate_tables(dataset):
    """Check the tables agree with each other: subsets, durations, labels, times inside videos."""
    root, videos = dataset.root, dataset.videos
    vpath = root / "videos.parquet"
    for video_id in videos.video_id:          # a hand-made folder too: ids become file names downstream
        check_video_id(vpath, video_id)
    if videos.video_id.duplicated().any():
        fail(vpath, f"duplicate video ids: {videos.video_id[videos.video_id.duplicated()].tolist()[:5]}")
    bad_subset = videos[~videos.subset.isin(SUBSETS)]
    if len(bad_subset):
        row = bad_subset.iloc[0]
        fail(vpath, f"subset {row.subset!r} is not one of {SUBSETS}", row.video_id)
    bad = videos[~(videos.duration > 0) | ~(videos.n_steps > 0)]
    if len(bad):
        fail(vpath, "duration and n_steps must be positive", bad.iloc[0].video_id)
    durations = dict(zip(videos.video_id, videos.duration))
    known = set(dataset.classes)
    for name, frame, cols in (("segments.parquet", dataset.segments, ("start", "end")),
                              ("points.parquet", dataset.points, ("time", "time"))):
        if frame is None:
            continue
        path = root / name
        unknown_video = frame[~frame.video_id.isin(durations)]
        if len(unknown_video):
            fail(path, "video not listed in videos.parquet", unknown_video.iloc[0].video_id)
        unknown = frame[~frame.label.isin(known)]
        if len(unknown):
            row = unknown.iloc[0]
            fail(path, f"unknown class {row.label!r} (not in classes.json)", row.video_id)
        lo, hi = frame[cols[0]].to_numpy(float), frame[cols[1]].to_numpy(float)
        dur = frame.video_id.map(durations).to_numpy(float)
        outside = ~np.isfinite(lo) | ~np.isfinite(hi) | (lo < -1e-6) | (hi > dur + 1e-6) | (hi < lo)
        if outside.any():
            row = frame[outside].iloc[0]
            what = "segment" if name.startswith("segments") else "point"
            fail(path, f"{what} [{row[cols[0]]}, {row[cols[1]]}] lies outside the video "
                       f"(duration {durations[row.video_id]})", row.video_id)


class DatasetWriter:
    """Build a canonical dataset folder in a temporary folder and rename it into place on success.

    >>> with DatasetWriter(out, classes, meta) as writer:
    ...     writer.add_video("v1", "train", 60.0, features)
    ...     writer.set_segments(segments_frame)
    """

    def __init__(self, out, classes, meta=None):
        self.out = Path(out)
        self.classes = list(classes)
        self.meta = dict(meta or {})
        self._rows = []
        self.segments = pd.DataFrame(columns=SEGMENT_COLUMNS)
        self.points = None
        self._ctx = None
        self.tmp = None
        self.feature_dim = None
        self.teacher_feature_dim = None
        self._extra = {}

    def __enter__(self):
        clean_stale(self.out)
        check_replaceable(self.out)
        self._ctx = atomic_dir(self.out)
        self.tmp = self._ctx.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        """Finish the folder; an error while finishing removes the temporary folder and propagates.

        (Returning the inner context's result would swallow it: with no exception in the `with`
        body, a falsy return means "nothing to re-raise", and OUT would silently not be written.)
        """
        if exc_type is None:
            try:
                self._finish()
            except BaseException as error:
                self._ctx.__exit__(type(error), error, error.__traceback__)
                raise
        return self._ctx.__exit__(exc_type, exc, tb)

    def add_video(self, video_id, subset, duration, features, teacher_features=None, source=None):
        """Store one video's features: an array (validated, saved) or a canonical .npy path (hard-linked).

        A path must be a file of an already imported canonical folder (it was validated then), so
        only its header is read. The id and duration are checked first: the id becomes a file name.
        """
        check_video_id(self.out, video_id)
        if not np.isfinite(float(duration)) or not float(duration) > 0:
            fail(self.out, f"duration must be a positive number of seconds, got {duration}", video_id)
        row = {"video_id": video_id, "subset": subset, "duration": float(duration),
               "n_steps": self._store(STUDENT_FEATURES, video_id, features, "feature_dim", source)}
        if teacher_features is not None:
            row["teacher_n_steps"] = self._store(TEACHER_FEATURES, video_id, teacher_features,
                                                 "teacher_feature_dim", source)
        self._rows.append(row)

    def _store(self, folder, video_id, item, dim_attr, source):
        (self.tmp / folder).mkdir(exist_ok=True)
        target = self.tmp / folder / f"{video_id}.npy"
        expected = getattr(self, dim_attr)
        if isinstance(item, Path):
            array = np.load(item, mmap_mode="r")
            if array.ndim != 2 or array.dtype != np.float32 or (expected is not None and array.shape[1] != expected):
                fail(item, f"canonical feature file has shape {array.shape} / dtype {array.dtype}; expected "
                           f"float32 n_steps x {expected or 'dim'}", video_id)
            link_or_copy(item, target)
        else:
            array = check_features(item, source or f"features of {video_id}", video_id, expected)
            save_npy(target, array)
        setattr(self, dim_attr, int(array.shape[1]))
        return int(array.shape[0])

    def add_table(self, name, frame):
        """An extra table of the folder (e.g. ambiguous.parquet), written with the others."""
        self._extra[name] = frame.reset_index(drop=True)

    def set_segments(self, frame):
        self.segments = frame[SEGMENT_COLUMNS].reset_index(drop=True)

    def set_points(self, frame):
        self.points = None if frame is None else frame[POINT_COLUMNS].reset_index(drop=True)

    def _finish(self):
        videos = pd.DataFrame(self._rows)
        if videos.empty:
            raise OnPointError(f"{self.out}: no videos to write")
        meta = {"feature_dim": self.feature_dim, **self.meta}
        if self.teacher_feature_dim is not None:
            meta["teacher_feature_dim"] = self.teacher_feature_dim
        segments = self.segments.astype({"start": float, "end": float})
        write_parquet(self.tmp / "videos.parquet", videos)
        write_parquet(self.tmp / "segments.parquet", segments)
        if self.points is not None:
            write_parquet(self.tmp / "points.parquet", self.points.astype({"time": float}))
        for name, frame in self._extra.items():
            write_parquet(self.tmp / name, frame)
        write_json(self.tmp / "classes.json", {"classes": self.classes})
        write_json(self.tmp / "meta.json", meta)
        # messages name the folder the user asked for, not the temporary one
        validate_tables(Dataset(self.out, videos, segments, self.points, self.classes, meta))


def link_or_copy(src, dst):
    """Hard-link `src` to `dst` when on one filesystem (large feature files), else copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def choose_validation(train_ids, fraction, seed):
    """A seeded `fraction` of the training videos, held out as subset 'val' for model selection.

    Checkpoints and thresholds are chosen on these, never on the test split.
    """
    train_ids = sorted(train_ids)
    n_val = int(round(len(train_ids) * fraction))
    if n_val <= 0:
        return set()
    rng = np.random.default_rng(seed)
    return set(rng.choice(train_ids, size=n_val, replace=False).tolist())


def copy_dataset(src, out):
    """Validate an imported dataset folder and place it at `out` (features hard-linked when possible)."""
    dataset = load_dataset(src)
    check_feature_files(dataset, deep=True)
    with atomic_dir(out) as tmp:
        for entry in Path(src).iterdir():
            target = tmp / entry.name
            if entry.is_dir():
                target.mkdir()
                for file in entry.iterdir():
                    link_or_copy(file, target / file.name)
            else:
                shutil.copyfile(entry, target)
    return dataset


def dataset_summary(dataset):
    """Counts a person checks first: videos per subset, instances, steps, feature sizes, disk size."""
    videos = dataset.videos
    size = sum(f.stat().st_size for f in dataset.root.rglob("*") if f.is_file())
    per_subset = videos.groupby("subset").size().to_dict()
    seg_len = dataset.segments.end - dataset.segments.start
    return {
        "num_classes": dataset.num_classes,
        "videos": {s: int(per_subset.get(s, 0)) for s in SUBSETS},
        "instances": int(len(dataset.segments)),
        "instances_per_video": float(len(dataset.segments) / max(len(videos), 1)),
        "total_steps": int(videos.n_steps.sum()),
        "video_seconds_mean": float(videos.duration.mean()),
        "action_seconds_mean": float(seg_len.mean()) if len(seg_len) else 0.0,
        "action_coverage": float(seg_len.sum() / videos.duration.sum()),
        "feature_dim": int(dataset.meta.get("feature_dim", 0)),
        "teacher_feature_dim": int(dataset.meta.get("teacher_feature_dim", dataset.meta.get("feature_dim", 0))),
        "size_mb": round(size / 2 ** 20, 2),
    }
