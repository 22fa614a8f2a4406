"""params.yaml: read once, validated into typed per-section objects, cut per stage.

Why this shape: a user who sets a key with `dvc exp run -S key=value` must change the run, and a
stage must rerun only for the keys it reads. So
  * no key overrides another: three selectors (`dataset`, `teacher`, `recipe`) pick blocks, and a
    section with recipes keeps every key either in its shared part or in every recipe block,
    never both (checked);
  * `STAGE_KEYS` lists, per stage, the key paths it reads; dvc.yaml declares the same paths
    (tests/test_params_layout.py), and a stage's typed objects are built from those paths only,
    so a stage cannot read a key it does not declare;
  * the whole file is validated before any stage works: unknown keys (with the nearest valid
    key), wrong types and cross-key rules fail with `params.yaml: <key>: <problem>`.

The dataclasses below are the only place that says which keys exist; values live in
params.yaml only (no defaults here).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import yaml

from .errors import OnPointError

IMPORTED_ROOT = "data/imported/"   # where imported datasets live; the dataset stage depends on it
TEACHERS = ("hrpro", "tsaspc")
# the runs of the paper's comparison (docs/method.md 7); student/variants.py defines what each one does
RUN_NAMES = ("onpoint", "teacher_oat", "distillation_free", "fully_supervised", "no_cass_anticipation",
             "no_calibration", "no_point_supervision")


class ParamsError(OnPointError):
    """A wrong value in params.yaml; the message names the key."""


def _bad(path, key, problem):
    raise ParamsError(f"{path}: {key}: {problem}")


# --------------------------------------------------------------------------------------------
# Typed sections. Field metadata "check" names a rule of `_CHECKS`.

def _f(check=None, **default):
    """A field with an optional named check; `default=None` only for keys that may be absent."""
    return dataclasses.field(metadata={"check": check} if check else {}, **default)


_CHECKS = {
    "positive": (lambda v: v > 0, "must be > 0"),
    "nonneg": (lambda v: v >= 0, "must be >= 0"),
    "unit": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    "unit_open": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "fraction": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
}


class Section:
    """Base of the typed sections: built from a mapping, refusing what it does not know."""

    def as_dict(self):
        """Plain types (lists, dicts, numbers): for checkpoints, YAML and JSON."""
        return _plain(dataclasses.asdict(self))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class PointsCfg(Section):
    source: Literal["gaussian", "dataset"]
    noise_seconds: float = _f("nonneg")                     # the point-noise study: std of a shift, s
    noise_seed: int = _f()
    seed: Optional[int] = _f(default=None)                  # gaussian only (absent otherwise)
    sigma_fraction: Optional[float] = _f("fraction", default=None)

    def check(self, path, at):
        if self.source == "gaussian":
            for name in ("seed", "sigma_fraction"):
                if getattr(self, name) is None:
                    _bad(path, at(name), "missing (needed by source: gaussian)")
        else:
            for name in ("seed", "sigma_fraction"):
                if getattr(self, name) is not None:
                    _bad(path, at(name), "is not read with source: dataset (the dataset's own points); remove it")


@dataclass(frozen=True)
class GeneratorCfg(Section):
    profile: Literal["sparse", "dense"]
    seed: int
    val_fraction: float = _f("unit_open")
    num_classes: int = _f("positive")
    num_train_videos: int = _f("positive")
    num_test_videos: int = _f("positive")
    steps_per_second: float = _f("positive")
    video_seconds: tuple[float, float] = _f()
    instances_per_minute: float = _f("positive")
    action_seconds_median: float = _f("positive")
    action_seconds_sigma: float = _f("positive")
    action_seconds_range: tuple[float, float] = _f()
    min_gap_seconds: float = _f("nonneg")
    stream_dim: int = _f("positive")
    evidence: float = _f("nonneg")
    ramp_seconds: float = _f("nonneg")
    phase_contrast: float = _f("nonneg")
    instance_variation: float = _f("nonneg")
    confusable_pairs: int = _f("nonneg")
    confusable_similarity: float = _f("unit_open")
    context: float = _f("nonneg")
    clutter_per_minute: float = _f("nonneg")
    hard_negatives_per_minute: float = _f("nonneg")
    noise: float = _f("nonneg")
    smoothness: float = _f("unit_open")

    def check(self, path, at):
        for name in ("video_seconds", "action_seconds_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                _bad(path, at(name), f"must be [low, high] with 0 < low <= high, got {[low, high]}")
        if self.action_seconds_range[1] >= self.video_seconds[0]:
            _bad(path, at("action_seconds_range"), "longest action must be shorter than the shortest video")
        if 2 * self.confusable_pairs > self.num_classes:
            _bad(path, at("confusable_pairs"), f"must be at most num_classes/2 = {self.num_classes // 2}")


@dataclass(frozen=True)
class DatasetCfg(Section):
    source: str
    points: PointsCfg
    window: int = _f("positive")
    num_anchors: int = _f("positive")
    anchors: tuple[int, ...] = _f("positive")
    anticipation: int = _f("positive")
    gamma: float = _f("nonneg")
    train_stride: int = _f("positive")
    generator: Optional[GeneratorCfg] = _f()

    def check(self, path, at):
        anchors = list(self.anchors)
        if not anchors:
            _bad(path, at("anchors"), "must be a non-empty list of anchor lengths (steps)")
        for i, length in enumerate(anchors):
            if length > self.window:
                _bad(path, at("anchors") + f"[{i}]", f"anchor length {length} is longer than the window {at('window')}={self.window}")
        if sorted(set(anchors)) != anchors:
            _bad(path, at("anchors"), f"must be strictly increasing, got {anchors}")
        if len(anchors) != self.num_anchors:
            _bad(path, at("num_anchors"), f"is {self.num_anchors} but {at('anchors')} lists {len(anchors)} anchor lengths")
        synthetic = self.source == "synthetic"
        if synthetic and self.generator is None:
            _bad(path, at("generator"), "missing (needed by source: synthetic)")
        if not synthetic and self.generator is not None:
            _bad(path, at("generator"), "is read only with source: synthetic; set it to null")
        if not synthetic and not str(self.source).startswith(IMPORTED_ROOT):
            _bad(path, at("source"), f"must be 'synthetic' or a folder under {IMPORTED_ROOT} (the dataset "
                                        f"stage tracks that folder), got {self.source!r}")


@dataclass(frozen=True)
class HRProLossWeights(Section):
    point: float = _f("nonneg")
    background: float = _f("nonneg")
    contrast: float = _f("nonneg")


@dataclass(frozen=True)
class HRProTrain(Section):
    """What HR-Pro training and its network read (`hrpro.train` + `hrpro.recipes.<recipe>`)."""

    seed: int
    lr: float = _f("positive")
    weight_decay: float = _f("nonneg")
    videos_per_iteration: int = _f("positive")
    heads: int = _f("positive")
    layers: int = _f("positive")
    ffn_dim: int = _f("positive")
    ffn_dropout: float = _f("unit_open")
    classifier_dropout: float = _f("unit_open")
    prototype_momentum: float = _f("unit")
    temperature: float = _f("positive")
    bkg_seed_threshold: float = _f("unit")
    action_seed_threshold: float = _f("unit")
    loss_weights: HRProLossWeights = _f()
    instance_refinement: bool = _f()
    iterations: int = _f("positive")
    embed_dim: int = _f("positive")
    attention_dropout: float = _f("unit_open")
    sub_batches: int = _f("positive")
    max_train_steps: Optional[int] = _f("positive")

    def check(self, path, at):
        if self.instance_refinement:
            _bad(path, at("instance_refinement"), "HR-Pro's instance-level stage is not implemented in "
                                                     "this teacher; set it to false")
        if self.embed_dim % self.heads:
            _bad(path, at("embed_dim"), f"{self.embed_dim} must be divisible by {at('heads')}={self.heads}")


@dataclass(frozen=True)
class HRProProposals(Section):
    cas_thresholds: tuple[float, float, float] = _f()
    actionness_thresholds: tuple[float, float, float] = _f()
    upsample: int = _f("positive")
    oic_outer: float = _f("nonneg")

    def check(self, path, at):
        for name in ("cas_thresholds", "actionness_thresholds"):
            start, stop, step = getattr(self, name)
            if step <= 0 or stop < start:
                _bad(path, at(name), f"must be [start, stop, step] with step > 0 and stop >= start, "
                                            f"got {list(getattr(self, name))}")


@dataclass(frozen=True)
class HRProDetect(Section):
    predict_batch: int = _f("positive")
    video_topk_divisor: int = _f("positive")
    video_class_ratio: Union[float, Literal["auto"]] = _f()
    nms_sigma: Optional[float] = _f("positive")
    nms_iou: float = _f("unit")
    max_detections: Optional[int] = _f("positive")

    def check(self, path, at):
        ratio = self.video_class_ratio
        if ratio != "auto" and not 0 <= ratio <= 1:
            _bad(path, at("video_class_ratio"), f"must be 'auto' or a number in [0, 1], got {ratio!r}")


@dataclass(frozen=True)
class HRProPseudo(Section):
    reliable_min_score: Optional[float] = _f()
    max_fraction_of_video: float = _f("fraction")
    min_point_coverage: float = _f("unit")


@dataclass(frozen=True)
class TSASPCLossWeights(Section):
    smoothing: float = _f("nonneg")
    confidence: float = _f("nonneg")
    cluster: float = _f("nonneg")


@dataclass(frozen=True)
class TSASPCTrain(Section):
    """What TSASPC training and its network read (`tsaspc.train` + `tsaspc.recipes.<recipe>`)."""

    seed: int
    stages: int = _f("positive")
    layers: int = _f("positive")
    feature_maps: int = _f("positive")
    batch_size: int = _f("positive")
    lr: float = _f("positive")
    input_dropout: float = _f("unit_open")
    dropout: float = _f("unit_open")
    loss_weights: TSASPCLossWeights = _f()
    smoothing_clamp: float = _f("positive")
    background_stamps: bool = _f()
    background_gap_factor: float = _f("positive")
    epochs: int = _f("positive")
    feature_dim: int = _f("positive")
    growth_epochs: int = _f("nonneg")

    def check(self, path, at):
        if self.growth_epochs > self.epochs:
            _bad(path, at("growth_epochs"), f"{self.growth_epochs} is after the last epoch ({at('epochs')}={self.epochs})")


@dataclass(frozen=True)
class TSASPCProposals(Section):
    pass


@dataclass(frozen=True)
class TSASPCDetect(Section):
    predict_batch: int = _f("positive")


@dataclass(frozen=True)
class TSASPCPseudo(Section):
    segments: Literal["point_anchored", "runs"]
    min_point_coverage: float = _f("unit")


@dataclass(frozen=True)
class StudentLossWeights(Section):
    alpha: float = _f("nonneg")
    beta: float = _f("nonneg")
    delta: float = _f("nonneg")
    regression: float = _f("nonneg")


@dataclass(frozen=True)
class StudentCfg(Section):
    """What student training reads (`student` shared keys + `student.recipes.<recipe>`)."""

    run: str
    seed: int
    encoder_layers: int = _f("positive")
    encoder_heads: int = _f("positive")
    decoder_heads: int = _f("positive")
    loss_weights: StudentLossWeights = _f()
    weight_decay: float = _f("nonneg")
    epochs: int = _f("positive")
    patience: Optional[int] = _f("positive")
    lr_decays: int = _f("nonneg")
    lr_gamma: float = _f("positive")
    processes: int = _f("positive")
    checkpoints_per_epoch: int = _f("nonneg")
    d_model: int = _f("positive")
    ffn_dim: int = _f("positive")
    decoder_layers: int = _f("positive")
    dropout: float = _f("unit_open")
    position_dropout: float = _f("unit_open")
    lr: float = _f("positive")
    batch_size: int = _f("positive")
    lr_step: int = _f("positive")

    def check(self, path, at):
        if self.run not in RUN_NAMES:
            _bad(path, at("run"), f"unknown run {self.run!r} (known: {', '.join(RUN_NAMES)})")
        if self.d_model % self.encoder_heads or self.d_model % self.decoder_heads:
            _bad(path, at("d_model"), f"{self.d_model} must be divisible by {at('encoder_heads')} and {at('decoder_heads')}")
        if self.d_model % 4:
            _bad(path, at("d_model"), f"{self.d_model} must be divisible by 4 (the anticipation head uses D/4)")
        if self.batch_size % self.processes:
            _bad(path, at("batch_size"), f"{self.batch_size} is not divisible by {at('processes')}={self.processes}")


PRECISIONS = ("fp32", "fp16", "bf16", "int8")   # of inference (online.engine; fp16 CUDA only, int8 CPU only)


@dataclass(frozen=True)
class OnlineCfg(Section):
    score_threshold: float = _f("unit")
    nms_iou: float = _f("unit")
    tiou_floor_seconds: float = _f("positive")
    stream_batch: int = _f("positive")
    precision: Literal[PRECISIONS]


TEACHER_SECTIONS = {
    "hrpro": {"train": HRProTrain, "proposals": HRProProposals, "detect": HRProDetect, "pseudo": HRProPseudo},
    "tsaspc": {"train": TSASPCTrain, "proposals": TSASPCProposals, "detect": TSASPCDetect, "pseudo": TSASPCPseudo},
}


# --------------------------------------------------------------------------------------------
# Building a section from a mapping, with the key named in every error.

def _type_name(tp):
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value, tp, path, key, check):
    """`value` as type `tp`, or a ParamsError naming `key`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, path, key, check)
            except ParamsError as exc:
                errors.append(exc)
        raise errors[-1]
    if origin is Literal:
        if value not in args:
            _bad(path, key, f"must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            _bad(path, key, f"must be a list, got {value!r}")
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            _bad(path, key, f"must be a list of {len(items)} values, got {value!r}")
        return tuple(_convert(v, t, path, f"{key}[{i}]", check) for i, (v, t) in enumerate(zip(value, items)))
    if isinstance(tp, type) and issubclass(tp, Section):
        return build(tp, value, path, key)
    if tp is bool:
        if not isinstance(value, bool):
            _bad(path, key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _bad(path, key, f"must be an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _bad(path, key, f"must be a number, got {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            _bad(path, key, f"must be a string, got {value!r}")
    if check:
        ok, message = _CHECKS[check]
        if not ok(value):
            _bad(path, key, f"{message}, got {value!r}")
    return value


def build(cls, raw, path, key, origins=None):
    """A `cls` section from mapping `raw` (key = its params path; origins: leaf -> params path)."""
    origins = origins or {}
    if not isinstance(raw, dict):
        _bad(path, key, f"must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in raw:
        if name not in fields:
            near = difflib.get_close_matches(str(name), list(fields), n=1)
            hint = f"; did you mean {key}.{near[0]}?" if near else f" (known: {', '.join(fields) or 'none'})"
            _bad(path, origins.get(name, f"{key}.{name}"), f"unknown key{hint}")
    values = {}
    for name, field in fields.items():
        where = origins.get(name, f"{key}.{name}")
        if name not in raw:
            if field.default is dataclasses.MISSING:
                _bad(path, where, "missing")
            values[name] = None
            continue
        sub = {k[len(name) + 1:]: v for k, v in origins.items() if k.startswith(name + ".")}
        tp = hints[name]
        if isinstance(tp, type) and issubclass(tp, Section):
            values[name] = build(tp, raw[name], path, where if not sub else f"{key}.{name}", sub)
        else:
            values[name] = _convert(raw[name], tp, path, where, field.metadata.get("check"))
    section = cls(**values)
    if hasattr(section, "check"):
        section.check(path, lambda name: origins.get(name, f"{key}.{name}"))
    return section


# --------------------------------------------------------------------------------------------
# Recipes: a section's shared part plus one recipe block, whose leaves never overlap.

def _leaves(tree, prefix=""):
    out = {}
    for name, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def _deep_merge(base, extra):
    out = copy.deepcopy(base)
    for name, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(name), dict):
            out[name] = _deep_merge(out[name], value)
        else:
            out[name] = copy.deepcopy(value)
    return out


def _check_recipes(shared, recipes, path, key, recipes_key):
    """Every recipe block has the same leaves, and none of them is also a shared leaf."""
    if not isinstance(recipes, dict) or not recipes:
        _bad(path, recipes_key, "must be a mapping of recipe name -> block")
    shared_leaves = set(_leaves(shared))
    first_name, first = None, None
    for name, block in recipes.items():
        if not isinstance(block, dict):
            _bad(path, f"{recipes_key}.{name}", "must be a mapping")
        leaves = set(_leaves(block))
        for leaf in sorted(leaves & shared_leaves):
            _bad(path, f"{key}.{leaf}", f"is also set by {recipes_key}.{name}.{leaf}; a key lives in the shared "
                                        "part or in every recipe block, not both")
        if first is None:
            first_name, first = name, leaves
        elif leaves != first:
            missing = sorted(first - leaves) or sorted(leaves - first)
            _bad(path, f"{recipes_key}.{name}", f"has other keys than {recipes_key}.{first_name} "
                                                f"(differs in: {', '.join(missing)})")


def _with_recipe(shared, recipes, recipe, key, recipes_key):
    """The merged mapping and, per leaf, the params path that set it."""
    block = recipes[recipe]
    origins = {leaf: f"{recipes_key}.{recipe}.{leaf}" for leaf in _leaves(block)}
    origins.update({leaf: f"{key}.{leaf}" for leaf in _leaves(shared)})
    return _deep_merge(shared, block), origins


# --------------------------------------------------------------------------------------------
# Which keys each stage reads ({dataset}, {teacher}, {recipe}: the selectors' values).

STUDENT_SHARED = ("run", "seed", "encoder_heads", "decoder_heads", "loss_weights",
                  "weight_decay", "patience", "lr_decays", "lr_gamma", "processes", "checkpoints_per_epoch")
# the online decode settings the val selection streams with (the same as online_eval's)
SELECTION_KEYS = ("score_threshold", "nms_iou", "tiou_floor_seconds")
STUDENT_DATA = ("window", "num_anchors", "anchors", "anticipation", "gamma", "train_stride")

STAGE_KEYS = {
    "dataset": ("dataset", "datasets.{dataset}.source", "datasets.{dataset}.generator"),
    "points": ("datasets.{dataset}.points",),
    "teacher_train": ("teacher", "recipe", "{teacher}.train", "{teacher}.recipes.{recipe}"),
    "teacher_cache": ("{teacher}.proposals", "{teacher}.detect"),
    "pseudo_segments": ("{teacher}.proposals", "{teacher}.pseudo"),
    "student_train": ("dataset", "recipe", *(f"datasets.{{dataset}}.{k}" for k in STUDENT_DATA),
                      *(f"student.{k}" for k in STUDENT_SHARED), "student.recipes.{recipe}",
                      *(f"online.{k}" for k in SELECTION_KEYS)),
    "online_eval": ("online",),
}
STAGES = tuple(STAGE_KEYS)


def stage_key_paths(raw, stage):
    """The params paths `stage` reads under the current selectors."""
    if stage not in STAGE_KEYS:
        raise ParamsError(f"unknown stage {stage!r} (known: {', '.join(STAGES)})")
    values = {name: raw[name] for name in ("dataset", "teacher", "recipe")}
    return [template.format(**values) for template in STAGE_KEYS[stage]]


def _get(raw, dotted):
    node = raw
    for part in dotted.split("."):
        node = node[part]
    return node


def _put(tree, dotted, value):
    parts = dotted.split(".")
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
    tree[parts[-1]] = copy.deepcopy(value)


def stage_view(raw, stage):
    """The nested mapping of exactly the keys `stage` reads (what `onpoint params` prints)."""
    view = {}
    for dotted in stage_key_paths(raw, stage):
        _put(view, dotted, _get(raw, dotted))
    return view


# --------------------------------------------------------------------------------------------
# The resolved configuration.

@dataclass(frozen=True)
class Params:
    """Everything the stages read, validated; built by `load_params`.

    dataset_name / teacher / recipe: the selectors; data: the active dataset entry; the teacher's
    four sections; student (shared + recipe); online.
    """

    dataset_name: str
    teacher: str
    recipe: str
    data: DatasetCfg
    teacher_train: Section
    teacher_proposals: Section
    teacher_detect: Section
    teacher_pseudo: Section
    student: StudentCfg
    online: OnlineCfg


def read_params_file(path="params.yaml"):
    """params.yaml as a dict, or a ParamsError naming the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found (run from the repository root)") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        _bad(path, "(top level)", "expected a mapping")
    return raw


TOP_LEVEL = ("dataset", "teacher", "recipe", "datasets", "hrpro", "tsaspc", "student", "online")


def _check_top_level(raw, path):
    for name in raw:
        if name not in TOP_LEVEL:
            near = difflib.get_close_matches(str(name), TOP_LEVEL, n=1)
            _bad(path, name, "unknown key" + (f"; did you mean {near[0]}?" if near else
                                              f" (known: {', '.join(TOP_LEVEL)})"))
    for name in TOP_LEVEL:
        if name not in raw:
            _bad(path, name, "missing")
    if not isinstance(raw["datasets"], dict) or not raw["datasets"]:
        _bad(path, "datasets", "must be a mapping of dataset name -> entry")
    if raw["dataset"] not in raw["datasets"]:
        _bad(path, "dataset", f"unknown dataset {raw['dataset']!r} (known: {', '.join(raw['datasets'])})")
    if raw["teacher"] not in TEACHERS:
        _bad(path, "teacher", f"unknown teacher {raw['teacher']!r} (known: {', '.join(TEACHERS)})")


def _teacher_sections(raw, kind, recipe, path):
    """The four typed sections of one teacher under `recipe`."""
    section = raw[kind]
    if not isinstance(section, dict):
        _bad(path, kind, "must be a mapping")
    known = ("train", "recipes", "proposals", "detect", "pseudo")
    for name in section:
        if name not in known:
            near = difflib.get_close_matches(str(name), known, n=1)
            _bad(path, f"{kind}.{name}", "unknown key" + (f"; did you mean {kind}.{near[0]}?" if near else ""))
    for name in known:
        if name not in section:
            _bad(path, f"{kind}.{name}", "missing")
    _check_recipes(section["train"], section["recipes"], path, f"{kind}.train", f"{kind}.recipes")
    classes = TEACHER_SECTIONS[kind]
    merged, origins = _with_recipe(section["train"], section["recipes"], recipe, f"{kind}.train", f"{kind}.recipes")
    out = {"train": build(classes["train"], merged, path, f"{kind}.train", origins)}
    for name in ("proposals", "detect", "pseudo"):
        out[name] = build(classes[name], section[name] or {}, path, f"{kind}.{name}")
    return out


def _student(raw, recipe, path):
    section = raw["student"]
    if not isinstance(section, dict) or "recipes" not in section:
        _bad(path, "student.recipes", "missing")
    shared = {k: v for k, v in section.items() if k != "recipes"}
    _check_recipes(shared, section["recipes"], path, "student", "student.recipes")
    merged, origins = _with_recipe(shared, section["recipes"], recipe, "student", "student.recipes")
    return build(StudentCfg, merged, path, "student", origins)


def _recipes_of(raw):
    names = set(raw["student"].get("recipes") or {}) if isinstance(raw.get("student"), dict) else set()
    for kind in TEACHERS:
        if isinstance(raw.get(kind), dict):
            names &= set(raw[kind].get("recipes") or {})
    return sorted(names)


def resolve_params(raw, path="params.yaml"):
    """Validate a params dict (as read from YAML): every dataset entry, every recipe of both
    teachers and of the student, and the selection. Returns the active `Params`."""
    path = Path(path)
    if not isinstance(raw, dict):
        _bad(path, "(top level)", "expected a mapping")
    _check_top_level(raw, path)
    recipes = _recipes_of(raw)
    if raw["recipe"] not in recipes:
        _bad(path, "recipe", f"unknown recipe {raw['recipe']!r} (known: the blocks every section has: "
                             f"{', '.join(recipes) or 'none'})")
    entries = {name: build(DatasetCfg, entry, path, f"datasets.{name}") for name, entry in raw["datasets"].items()}
    teachers = {(kind, r): _teacher_sections(raw, kind, r, path) for kind in TEACHERS for r in recipes}
    students = {r: _student(raw, r, path) for r in recipes}
    online = build(OnlineCfg, raw["online"], path, "online")
    chosen = teachers[(raw["teacher"], raw["recipe"])]
    return Params(raw["dataset"], raw["teacher"], raw["recipe"], entries[raw["dataset"]], chosen["train"],
                  chosen["proposals"], chosen["detect"], chosen["pseudo"], students[raw["recipe"]], online)


def load_params(path="params.yaml", **selectors):
    """Read and validate params.yaml; the active `Params`, or the one chosen by `selectors`
    (dataset=, teacher=, recipe=: benchmarks and probes that need another selection)."""
    raw = read_params_file(path)
    raw.update({k: v for k, v in selectors.items() if v is not None})
    return resolve_params(raw, path)


def _student_data(p):
    return {k: getattr(p.data, k) for k in STUDENT_DATA}


# What each stage's script receives: built from the fields its STAGE_KEYS cover, nothing else.
STAGE_OBJECTS = {
    "dataset": lambda p: {"dataset_name": p.dataset_name, "source": p.data.source, "generator": p.data.generator},
    "points": lambda p: {"points": p.data.points},
    "teacher_train": lambda p: {"teacher": p.teacher, "recipe": p.recipe, "train": p.teacher_train},
    "teacher_cache": lambda p: {"proposals": p.teacher_proposals, "detect": p.teacher_detect},
    "pseudo_segments": lambda p: {"proposals": p.teacher_proposals, "pseudo": p.teacher_pseudo},
    "student_train": lambda p: {"dataset_name": p.dataset_name, "recipe": p.recipe, "data": StudentData(**_student_data(p)),
                                "student": p.student,
                                "selection": SelectionDecode(**{k: getattr(p.online, k) for k in SELECTION_KEYS})},
    "online_eval": lambda p: {"online": p.online},
}


@dataclass(frozen=True)
class StudentData(Section):
    """The dataset entry's keys the student reads."""

    window: int
    num_anchors: int
    anchors: tuple[int, ...]
    anticipation: int
    gamma: float
    train_stride: int


@dataclass(frozen=True)
class SelectionDecode(Section):
    """The `online` decode settings student_train streams the val videos with to pick its epoch."""

    score_threshold: float
    nms_iou: float
    tiou_floor_seconds: float


@dataclass(frozen=True)
class StageParams:
    """The typed objects of one stage (attributes: see STAGE_OBJECTS) and its view."""

    stage: str
    objects: dict
    view: dict

    def __getattr__(self, name):
        objects = object.__getattribute__(self, "objects")
        if name in objects:
            return objects[name]
        raise AttributeError(f"stage {self.stage!r} does not read {name!r} (it reads: {', '.join(objects)})")

    def as_yaml(self):
        return _stage_yaml(self.stage, self.view)


def load_stage(stage, path="params.yaml"):
    """What `stage` reads. The whole file is validated first (a bad key anywhere stops every
    stage before it works); the stage gets only the objects its declared keys make."""
    raw = read_params_file(path)
    params = resolve_params(raw, path)
    return StageParams(stage, STAGE_OBJECTS[stage](params), stage_view(raw, stage))


def generator_for_profile(raw, profile, path="params.yaml"):
    """The `generator` of the first synthetic dataset entry with this profile (for `onpoint synth`)."""
    resolve_params(raw, path)
    for name, entry in raw["datasets"].items():
        generator = entry.get("generator")
        if entry.get("source") == "synthetic" and isinstance(generator, dict) and generator.get("profile") == profile:
            return build(GeneratorCfg, generator, path, f"datasets.{name}.generator")
    _bad(path, "datasets", f"no synthetic dataset entry has a generator of profile {profile!r}")


def _stage_yaml(stage, view):
    """One stage's resolved keys as YAML under a `# stage NAME` header (`onpoint params`, stage logs)."""
    return f"# stage {stage}\n" + yaml.safe_dump(view, sort_keys=False, default_flow_style=None)


def describe(raw, stages=STAGES):
    """YAML text of the resolved keys of `stages` (one document per stage)."""
    return "\n".join(_stage_yaml(stage, stage_view(raw, stage)) for stage in stages)
