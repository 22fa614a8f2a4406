"""The embedded synthetic benchmark: features with the statistics that make online TAL hard.

No real features can be downloaded on the development machines, so the default pipeline runs on
features generated here. What is modelled, and why (README, "What the synthetic benchmark models"):

* two streams like TSN/I3D: an *appearance* half (what is in the scene) and a *motion* half (what
  happens now). Appearance carries the class context of the whole video, so it cannot localise
  on its own; motion carries the action's temporal pattern.
* phase structure: an instance's motion goes onset -> body -> offset, three different patterns,
  so a point in the body (where Gaussian points fall) says nothing about where the action starts
  or ends; only the onset/offset evidence around the boundaries does.
* boundary ramps: evidence fades in and out over `ramp_seconds`, so boundaries are soft.
* instance variation: each instance scales its evidence (log-normal) and perturbs its patterns.
* confusable class pairs share most of their appearance and body motion and differ in onset and
  offset only: classification needs temporal context.
* clutter: background bursts that look like no class; hard negatives: fragments of a class
  pattern (its appearance without motion, or an onset that never completes) that are not actions.
* temporally correlated noise (AR(1)), because real snippet features are smooth in time.
* timing: log-normal action durations clipped into the anchor range, Poisson instance counts,
  sparse (THUMOS-like) or dense back-to-back (EGTEA-like) profiles; or the timing of a real
  annotation file (`synthesize_from_annotations`).
Everything is deterministic from the seed; each video gets its own generator derived from
(seed, video index), so one video's features do not depend on how many others are generated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import OnPointError, fail
from ..io import DuplicateKey, unique_keys
from ..progress import progress as progress_bar
from .dataset import DatasetWriter, check_video_id, choose_validation

PHASE_WIDTH = 0.25  # onset and offset each take this share of an instance; the body the rest


class ClassPatterns:
    """The fixed 'world' of a benchmark: per-class appearance and phase-wise motion patterns."""

    def __init__(self, num_classes, dim, phase_contrast, confusable_pairs, similarity, rng):
        def unit(n):
            vec = rng.standard_normal((n, dim))
            return vec / np.linalg.norm(vec, axis=-1, keepdims=True)

        def blend(base, other, weight):
            mixed = (1 - weight) * base + weight * other
            return mixed / np.linalg.norm(mixed, axis=-1, keepdims=True)

        self.appearance = unit(num_classes)
        body = unit(num_classes)
        # Confusable pairs: the second class of a pair shares most of the first's appearance and body.
        for a, b in _confusable_pairs(confusable_pairs):
            mix = np.sqrt(1 - similarity ** 2)
            self.appearance[b] = _normalise(similarity * self.appearance[a] + mix * self.appearance[b])
            body[b] = _normalise(similarity * body[a] + mix * body[b])
        self.motion = np.stack([blend(body, unit(num_classes), phase_contrast), body,
                                blend(body, unit(num_classes), phase_contrast)], axis=1)  # C x 3 x dim
        self.scenes = unit(8)              # generic scene appearance shared by all videos
        self.clutter = unit(6)             # background patterns that belong to no class
        self.confusable = _confusable_pairs(confusable_pairs)


def _normalise(vec):
    return vec / np.linalg.norm(vec)


def _ar1_noise(rng, steps, dim, scale, rho):
    """Stationary AR(1) Gaussian noise: smooth in time like real snippet features."""
    innovations = rng.standard_normal((steps, dim)) * scale * np.sqrt(1 - rho ** 2)
    noise = np.empty_like(innovations)
    noise[0] = rng.standard_normal(dim) * scale
    for t in range(1, steps):  # one vector op per step; steps are in the hundreds
        noise[t] = rho * noise[t - 1] + innovations[t]
    return noise


def _envelope(centres, start, end, ramp):
    """Evidence envelope: 1 well inside [start, end), 0.5 at the boundaries, 0 a ramp/2 outside."""
    inside = np.minimum(centres - start, end - centres)
    if ramp <= 0:
        return (inside > 0).astype(np.float64)
    return np.clip(0.5 + inside / ramp, 0.0, 1.0)


def _phase_weights(centres, start, end):
    """Weights of onset, body and offset motion along an instance (rows sum to 1)."""
    u = np.clip((centres - start) / max(end - start, 1e-6), 0.0, 1.0)
    onset = np.clip(1 - u / PHASE_WIDTH, 0, 1)
    offset = np.clip(1 - (1 - u) / PHASE_WIDTH, 0, 1)
    body = 1 - np.maximum(onset, offset)
    weights = np.stack([onset, body, offset], axis=1)
    return weights / weights.sum(axis=1, keepdims=True)


def synthesize_video(rng, patterns, syn, duration, instances, context_classes):
    """Features (n_steps x 2*stream_dim, float32) of one video with the given action instances.

    `instances`: rows (class index, start s, end s). Background events (clutter, hard negatives)
    are placed in the gaps between instances.
    """
    sps, dim = syn["steps_per_second"], syn["stream_dim"]
    steps = max(1, int(round(duration * sps)))
    centres = (np.arange(steps) + 0.5) * duration / steps   # step centres in seconds (n_steps / duration)
    appearance = np.zeros((steps, dim))
    motion = np.zeros((steps, dim))

    # Scene: a mix of generic scenes plus the class context of the video (weak, whole video).
    scene = rng.dirichlet(np.ones(len(patterns.scenes))) @ patterns.scenes
    appearance += 0.5 * scene
    for c in context_classes:
        appearance += syn["context"] * patterns.appearance[c]

    ramp = syn["ramp_seconds"]
    variation = syn["instance_variation"]
    for c, start, end in instances:
        c = int(c)
        env = _envelope(centres, start, end, ramp)
        active = env > 0
        if not active.any():
            continue
        amp = syn["evidence"] * rng.lognormal(0.0, 0.3)
        app = patterns.appearance[c] + variation * rng.standard_normal(dim) / np.sqrt(dim)
        mot = patterns.motion[c] + variation * rng.standard_normal((3, dim)) / np.sqrt(dim)
        weights = _phase_weights(centres[active], start, end)
        appearance[active] += amp * env[active, None] * app
        motion[active] += amp * env[active, None] * (weights @ mot)

    gaps = _gaps(instances, duration)
    minutes = duration / 60.0
    for _ in range(rng.poisson(syn["clutter_per_minute"] * minutes)):
        span = _place(rng, gaps, rng.uniform(1.0, 5.0))
        if span is None:
            continue
        env = _envelope(centres, *span, ramp)
        pattern = patterns.clutter[rng.integers(len(patterns.clutter))]
        amp = syn["evidence"] * rng.uniform(0.5, 1.0)
        appearance += amp * env[:, None] * pattern
        motion += amp * env[:, None] * np.roll(pattern, dim // 2)
    for _ in range(rng.poisson(syn["hard_negatives_per_minute"] * minutes)):
        span = _place(rng, gaps, rng.uniform(1.0, 3.0))
        if span is None or not len(context_classes):
            continue
        c = int(rng.choice(context_classes))
        env = _envelope(centres, *span, ramp)
        amp = syn["evidence"] * rng.uniform(0.5, 0.9)
        if rng.random() < 0.5:   # the class's appearance without its motion
            appearance += amp * env[:, None] * patterns.appearance[c]
        else:                    # an onset that never completes
            motion += amp * env[:, None] * patterns.motion[c, 0]

    # `noise` is the noise std along any direction, in units of a class pattern's norm (1).
    appearance += _ar1_noise(rng, steps, dim, syn["noise"], syn["smoothness"])
    motion += _ar1_noise(rng, steps, dim, syn["noise"], syn["smoothness"])
    return np.concatenate([appearance, motion], axis=1).astype(np.float32)


def _gaps(instances, duration):
    """Free intervals between instances (seconds), where background events may go."""
    gaps, cursor = [], 0.0
    for _, start, end in sorted(instances, key=lambda row: row[1]):
        if start - cursor > 0:
            gaps.append((cursor, start))
        cursor = max(cursor, end)
    if duration - cursor > 0:
        gaps.append((cursor, duration))
    return gaps


def _place(rng, gaps, length):
    """A random span of `length` s inside one of the gaps (with a margin), or None if none fits."""
    fitting = [(a, b) for a, b in gaps if b - a >= length + 1.0]
    if not fitting:
        return None
    a, b = fitting[rng.integers(len(fitting))]
    start = rng.uniform(a + 0.5, b - 0.5 - length)
    return start, start + length


def sample_instances(rng, syn, duration, classes):
    """Timing of one video's instances: Poisson count, log-normal durations, random gaps."""
    lo, hi = syn["action_seconds_range"]
    count = max(1, rng.poisson(syn["instances_per_minute"] * duration / 60.0))
    lengths = np.clip(rng.lognormal(np.log(syn["action_seconds_median"]), syn["action_seconds_sigma"], count), lo, hi)
    min_gap = syn["min_gap_seconds"]
    while len(lengths) > 1 and lengths.sum() + min_gap * (len(lengths) + 1) > duration:
        lengths = lengths[:-1]
    free = duration - lengths.sum() - min_gap * (len(lengths) + 1)
    gaps = min_gap + free * rng.dirichlet(np.ones(len(lengths) + 1))
    starts = np.cumsum(gaps[:-1]) + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    labels = rng.choice(classes, size=len(lengths))
    return [(int(c), float(s), float(s + l)) for c, s, l in zip(labels, starts, lengths)]


def _video_classes(rng, syn, num_classes):
    """Which classes occur in one video: one or two for sparse, many for dense profiles."""
    if syn["profile"] == "dense":
        k = min(num_classes, max(2, num_classes // 2))
    else:
        k = 1 if rng.random() < 0.7 else 2
    first = int(rng.integers(num_classes))
    chosen = [first]
    pairs = _confusable_pairs(_pair_count(syn, num_classes))
    pair = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    if k >= 2 and first in pair and rng.random() < 0.5:
        chosen.append(pair[first])   # confusable classes co-occur, as related sports do in THUMOS
    others = [c for c in range(num_classes) if c not in chosen]
    rng.shuffle(others)
    chosen += others[: k - len(chosen)]
    return np.array(sorted(chosen))


def _confusable_pairs(count):
    """Classes (0, 1), (2, 3), ... form the confusable pairs."""
    return [(2 * k, 2 * k + 1) for k in range(count)]


def _pair_count(syn, num_classes):
    """Confusable pairs that fit: an annotation file may have fewer classes than 2 x the profile's pairs."""
    return min(int(syn["confusable_pairs"]), num_classes // 2)


def class_names(num_classes):
    return [f"action_{i:02d}" for i in range(num_classes)]


def _world(syn, num_classes):
    rng = np.random.default_rng([syn["seed"], 0])
    return ClassPatterns(num_classes, syn["stream_dim"], syn["phase_contrast"],
                         _pair_count(syn, num_classes), syn["confusable_similarity"], rng)


def generate_synthetic(syn, out, progress=True):
    """Generate the benchmark described by one `synthetic` profile into a canonical dataset folder."""
    num_classes = syn["num_classes"]
    names = class_names(num_classes)
    patterns = _world(syn, num_classes)
    n_train, n_test = syn["num_train_videos"], syn["num_test_videos"]
    ids = [f"syn_train_{i:04d}" for i in range(n_train)] + [f"syn_test_{i:04d}" for i in range(n_test)]
    val = choose_validation(ids[:n_train], syn["val_fraction"], syn["seed"])
    segments = []
    meta = {"source": "synthetic", "profile": syn["profile"], "streams": 2,
            "steps_per_second": syn["steps_per_second"], "seed": syn["seed"]}
    with DatasetWriter(out, names, meta) as writer:
        for index, video_id in enumerate(progress_bar(ids, desc="synthetic videos", unit="video", disable=not progress)):
            rng = np.random.default_rng([syn["seed"], 1, index])
            duration = float(np.round(rng.uniform(*syn["video_seconds"]), 2))
            classes = _video_classes(rng, syn, num_classes)
            instances = sample_instances(rng, syn, duration, classes)
            features = synthesize_video(rng, patterns, syn, duration, instances, classes)
            subset = "test" if index >= n_train else ("val" if video_id in val else "train")
            writer.add_video(video_id, subset, duration, features)
            segments += [(video_id, names[c], s, e) for c, s, e in instances]
        writer.set_segments(pd.DataFrame(segments, columns=["video_id", "label", "start", "end"]))
    return {"videos": len(ids), "instances": len(segments)}


SUBSET_NAMES = {"train": "train", "training": "train", "validation": "train", "val": "train",
                "test": "test", "testing": "test"}


def _read_database(annotation_file):
    """The `database` mapping of an annotation JSON; a video listed twice is refused, naming both."""
    try:
        database = json.loads(annotation_file.read_text(), object_pairs_hook=unique_keys)["database"]
    except FileNotFoundError:
        fail(annotation_file, "annotation file not found")
    except DuplicateKey as exc:
        fail(annotation_file, exc.describe())
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        fail(annotation_file, f"not a `database` annotation JSON ({exc.__class__.__name__}: {exc})")
    if not isinstance(database, dict):
        fail(annotation_file, f"not a `database` annotation JSON ('database' is a {type(database).__name__}, "
                              f"expected an object video id -> entry)")
    return database


def _entry_of(annotation_file, video_id, entry):
    """(subset, duration, fps, segment rows) of one entry, checked: each problem is one line naming the video."""
    check_video_id(annotation_file, video_id)
    if not isinstance(entry, dict):
        fail(annotation_file, f"entry is not an object (got {type(entry).__name__})", video_id)
    subset = SUBSET_NAMES.get(str(entry.get("subset", "")).lower())
    if subset is None:
        fail(annotation_file, f"unknown subset {entry.get('subset')!r}", video_id)
    rows = []
    try:
        duration = float(entry["duration"])
        if not np.isfinite(duration) or not duration > 0:
            fail(annotation_file, f"duration must be a positive number of seconds, got {entry['duration']!r}", video_id)
        for ann in entry.get("annotations", []):
            start, end = map(float, ann["segment"])
            rows.append((video_id, str(ann["label"]), max(0.0, start), min(duration, end)))
    except (KeyError, TypeError, ValueError) as exc:
        fail(annotation_file, f"malformed entry ({exc.__class__.__name__}: {exc})", video_id)
    return subset, duration, entry.get("fps"), rows


def synthesize_from_annotations(annotation_file, syn, out, points_csv=None, progress=True):
    """Annotation-driven mode: synthetic features along the real segments of a `database` JSON file.

    Works with the THUMOS'14 (gt_full.json, thumos14_v2.json) and EGTEA/HOI4D (HAT) layouts; the
    THUMOS 'Validation' subset is its training set. `points_csv`: LACP points (HR-Pro layout), kept.
    Video ids become file names, so they are checked as `onpoint import` checks them.
    """
    annotation_file = Path(annotation_file)
    database = _read_database(annotation_file)
    rows, videos = [], []
    for video_id, entry in database.items():
        subset, duration, fps, own = _entry_of(annotation_file, video_id, entry)
        rows += own
        videos.append((video_id, subset, duration, fps))
    segments = pd.DataFrame(rows, columns=["video_id", "label", "start", "end"])
    segments = segments[np.isfinite(segments.start) & np.isfinite(segments.end) & (segments.end > segments.start)]
    if segments.empty:
        fail(annotation_file, "no annotated segment of positive length: nothing to take classes and timing from")
    names = sorted(segments.label.unique())
    lookup = {name: i for i, name in enumerate(names)}
    patterns = _world(syn, len(names))
    val = choose_validation([v for v, s, _, _ in videos if s == "train"], syn["val_fraction"], syn["seed"])
    points = _lacp_points(points_csv, {v: fps for v, _, _, fps in videos}) if points_csv else None
    meta = {"source": f"synthetic features along {annotation_file.name}", "streams": 2,
            "steps_per_second": syn["steps_per_second"], "seed": syn["seed"]}
    by_video = {v: g for v, g in segments.groupby("video_id")}
    with DatasetWriter(out, names, meta) as writer:
        for index, (video_id, subset, duration, _) in enumerate(progress_bar(videos, desc="synthetic videos", unit="video", disable=not progress)):
            rng = np.random.default_rng([syn["seed"], 2, index])
            own = by_video.get(video_id)
            instances = [] if own is None else [(lookup[l], s, e) for l, s, e in own[["label", "start", "end"]].itertuples(index=False)]
            context = np.unique([c for c, _, _ in instances]).astype(int)
            features = synthesize_video(rng, patterns, syn, duration, instances, context)
            writer.add_video(video_id, "val" if video_id in val else subset, duration, features)
        writer.set_segments(segments)
        if points is not None:
            writer.set_points(points[points.video_id.isin(database)])
    return {"videos": len(videos), "instances": len(segments)}


def _lacp_points(path, fps_of):
    """LACP points (HR-Pro's point_gaussian.csv) in seconds: frame / the video's fps."""
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except (FileNotFoundError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        fail(path, f"cannot read points CSV ({exc.__class__.__name__}: {exc})")
    missing = {"class", "video_id", "point"} - set(table.columns)
    if missing:
        fail(path, f"missing columns {sorted(missing)}")
    table = table.astype({"video_id": str, "class": str})
    fps = pd.to_numeric(table.video_id.map(fps_of), errors="coerce")
    if not (fps > 0).all():
        raise OnPointError(f"{path}: video {table.video_id[~(fps > 0)].iloc[0]}: no positive fps in the annotation file")
    frames = pd.to_numeric(table.point, errors="coerce")
    if frames.isna().any():
        raise OnPointError(f"{path}: video {table.video_id[frames.isna()].iloc[0]}: point "
                           f"{table.point[frames.isna()].iloc[0]!r} is not a frame number")
    return pd.DataFrame({"video_id": table.video_id, "label": table["class"], "time": frames / fps})
