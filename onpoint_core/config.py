"""params.yaml: loading, validation with messages that name the key, and per-dataset overrides.

`load_params()` returns the effective configuration of the active dataset:
  cfg["dataset"]        the active dataset's name
  cfg["data"]           its `datasets.<name>` entry (W, anchors, teacher, ...) plus `name`
  cfg["synthetic"]      the synthetic block of its profile (synthetic sources only) plus seed, val_fraction
  cfg["points"], cfg["hrpro"], cfg["tsaspc"], cfg["student"]
                        shared sections with the dataset's `overrides` applied
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .errors import OnPointError

TEACHERS = ("hrpro", "tsaspc")
POINT_SOURCES = ("gaussian", "dataset")
PROFILES = ("sparse", "dense")
SHARED_SECTIONS = ("points", "hrpro", "tsaspc", "student", "online")
IMPORTED_ROOT = "data/imported/"   # where imported datasets live; the dataset stage depends on it


class ParamsError(OnPointError):
    """A wrong value in params.yaml; the message names the key."""


def _bad(path, key, problem):
    raise ParamsError(f"{path}: {key}: {problem}")


def _merge(base, override, path, key):
    out = copy.deepcopy(base)
    for name, value in (override or {}).items():
        if name not in out:
            _bad(path, f"{key}.{name}", f"unknown key (known: {', '.join(sorted(out))})")
        if isinstance(out[name], dict) and isinstance(value, dict):
            out[name] = _merge(out[name], value, path, f"{key}.{name}")
        else:
            out[name] = value
    return out


def read_params_file(path="params.yaml"):
    """params.yaml as a dict, or a ParamsError naming the file."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found (run from the repository root)") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from None


def load_params(path="params.yaml", dataset=None):
    """Read, validate and resolve params.yaml for the active (or the named) dataset."""
    return resolve_params(read_params_file(path), Path(path), dataset)


def synthetic_profile(raw, profile, path="params.yaml", key=None):
    """The validated knobs of one synthetic profile, with the shared seed and val_fraction."""
    synthetic = (raw or {}).get("synthetic") or _bad(path, "synthetic", "missing (needed by synthetic datasets)")
    if profile not in PROFILES or profile not in synthetic:
        _bad(path, key or "profile", f"unknown synthetic profile {profile!r} (known: {', '.join(PROFILES)})")
    syn = {**synthetic[profile], "profile": profile,
           "seed": synthetic.get("seed", 0), "val_fraction": synthetic.get("val_fraction", 0.1)}
    _check_synthetic(syn, path, f"synthetic.{profile}")
    return syn


def resolve_params(raw, path="params.yaml", dataset=None):
    """Validate a params dict (as read from YAML) and return the effective configuration."""
    if not isinstance(raw, dict):
        _bad(path, "(top level)", "expected a mapping")
    for section in ("dataset", "datasets", *SHARED_SECTIONS):
        if section not in raw:
            _bad(path, section, "missing")
    datasets = raw["datasets"]
    name = dataset or raw["dataset"]
    if name not in datasets:
        _bad(path, "dataset", f"unknown dataset {name!r} (known: {', '.join(datasets)})")
    entry = dict(datasets[name])
    key = f"datasets.{name}"
    _check_dataset_entry(entry, path, key)
    cfg = {"dataset": name, "data": {**entry, "name": name}}
    for section in SHARED_SECTIONS:
        cfg[section] = copy.deepcopy(raw[section])
    overrides = entry.get("overrides") or {}
    for section, values in overrides.items():
        if section not in SHARED_SECTIONS:
            _bad(path, f"{key}.overrides.{section}", f"unknown section (known: {', '.join(SHARED_SECTIONS)})")
        cfg[section] = _merge(cfg[section], values, path, f"{key}.overrides.{section}")
    if entry["source"] == "synthetic":
        cfg["synthetic"] = synthetic_profile(raw, entry.get("profile"), path, f"{key}.profile")
    elif not str(entry["source"]).startswith(IMPORTED_ROOT):
        _bad(path, f"{key}.source", f"must be 'synthetic' or a folder under {IMPORTED_ROOT} (the dataset "
                                    f"stage tracks that folder), got {entry['source']!r}")
    _check_teachers(cfg, path)
    return cfg


def _positive_int(value, path, key):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        _bad(path, key, f"must be a positive integer, got {value!r}")


def _positive(value, path, key):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        _bad(path, key, f"must be a positive number, got {value!r}")


def _check_dataset_entry(entry, path, key):
    for field in ("source", "teacher", "window", "num_anchors", "anchors", "anticipation", "gamma", "points"):
        if field not in entry:
            _bad(path, f"{key}.{field}", "missing")
    if entry["teacher"] not in TEACHERS:
        _bad(path, f"{key}.teacher", f"unknown teacher {entry['teacher']!r} (known: {', '.join(TEACHERS)})")
    if entry["points"] not in POINT_SOURCES:
        _bad(path, f"{key}.points", f"unknown point source {entry['points']!r} (known: {', '.join(POINT_SOURCES)})")
    _positive_int(entry["window"], path, f"{key}.window")
    _positive_int(entry["anticipation"], path, f"{key}.anticipation")
    _positive_int(entry["num_anchors"], path, f"{key}.num_anchors")
    anchors = entry["anchors"]
    if not isinstance(anchors, list) or not anchors:
        _bad(path, f"{key}.anchors", "must be a non-empty list of anchor lengths (steps)")
    for i, length in enumerate(anchors):
        _positive_int(length, path, f"{key}.anchors[{i}]")
        if length > entry["window"]:
            _bad(path, f"{key}.anchors[{i}]", f"anchor length {length} is longer than the window W={entry['window']}")
    if sorted(anchors) != anchors or len(set(anchors)) != len(anchors):
        _bad(path, f"{key}.anchors", f"must be strictly increasing, got {anchors}")
    if len(anchors) != entry["num_anchors"]:
        _bad(path, f"{key}.num_anchors", f"is {entry['num_anchors']} but {len(anchors)} anchor lengths are listed")
    if isinstance(entry["gamma"], bool) or not isinstance(entry["gamma"], (int, float)) or entry["gamma"] < 0:
        _bad(path, f"{key}.gamma", f"must be a number >= 0, got {entry['gamma']!r}")


def _check_synthetic(syn, path, key):
    for field in ("num_classes", "num_train_videos", "num_test_videos", "stream_dim"):
        _positive_int(syn.get(field), path, f"{key}.{field}")
    for field in ("steps_per_second", "action_seconds_median", "action_seconds_sigma", "instances_per_minute"):
        _positive(syn.get(field), path, f"{key}.{field}")
    for field in ("video_seconds", "action_seconds_range"):
        pair = syn.get(field)
        if not (isinstance(pair, list) and len(pair) == 2 and 0 < pair[0] <= pair[1]):
            _bad(path, f"{key}.{field}", f"must be [low, high] with 0 < low <= high, got {pair!r}")
    if syn["action_seconds_range"][1] >= syn["video_seconds"][0]:
        _bad(path, f"{key}.action_seconds_range", "longest action must be shorter than the shortest video")
    for field in ("noise", "context", "evidence", "instance_variation", "phase_contrast",
                  "clutter_per_minute", "hard_negatives_per_minute", "ramp_seconds", "min_gap_seconds"):
        value = syn.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            _bad(path, f"{key}.{field}", f"must be a number >= 0, got {value!r}")
    for field in ("smoothness", "confusable_similarity"):
        value = syn.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            _bad(path, f"{key}.{field}", f"must be in [0, 1), got {value!r}")
    if not isinstance(syn.get("confusable_pairs"), int) or not 0 <= 2 * syn["confusable_pairs"] <= syn["num_classes"]:
        _bad(path, f"{key}.confusable_pairs", f"must be an integer in [0, num_classes/2], got {syn.get('confusable_pairs')!r}")
    if not 0 <= syn["val_fraction"] < 1:
        _bad(path, "synthetic.val_fraction", f"must be in [0, 1), got {syn['val_fraction']!r}")


def _check_teachers(cfg, path):
    hr = cfg["hrpro"]
    for field in ("iterations", "videos_per_iteration", "embed_dim", "heads"):
        _positive_int(hr.get(field), path, f"hrpro.{field}")
    _positive(hr.get("lr"), path, "hrpro.lr")
    ts = cfg["tsaspc"]
    for field in ("stages", "layers", "feature_maps", "feature_dim", "batch_size", "epochs"):
        _positive_int(ts.get(field), path, f"tsaspc.{field}")
    _positive(ts.get("lr"), path, "tsaspc.lr")
    st = cfg["student"]
    for field in ("d_model", "encoder_layers", "encoder_heads", "decoder_layers", "decoder_heads", "batch_size", "epochs"):
        _positive_int(st.get(field), path, f"student.{field}")
    for field in ("ffn_dim", "lr_step", "train_stride", "processes"):
        _positive_int(st.get(field), path, f"student.{field}")
    if st["d_model"] % st["encoder_heads"] or st["d_model"] % st["decoder_heads"]:
        _bad(path, "student.d_model", f"{st['d_model']} must be divisible by the encoder and decoder head counts")
    if st["d_model"] % 4:
        _bad(path, "student.d_model", f"{st['d_model']} must be divisible by 4 (the anticipation head uses D/4)")
    from .student.variants import RUNS   # the run table lives with the student

    if st.get("run") not in RUNS:
        _bad(path, "student.run", f"unknown run {st.get('run')!r} (known: {', '.join(RUNS)})")
    for field in ("alpha", "beta", "delta", "regression"):
        value = (st.get("loss_weights") or {}).get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            _bad(path, f"student.loss_weights.{field}", f"must be a number >= 0, got {value!r}")
    on = cfg["online"]
    for field in ("score_threshold", "nms_iou"):
        value = on.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            _bad(path, f"online.{field}", f"must be in [0, 1], got {value!r}")
    _positive_int(on.get("stream_batch"), path, "online.stream_batch")
